-- The recipe `make bench` builds to time the image paths: a 6-step image
-- for the cached rebuild, and a 1 MB and a 1 GB image to show that a
-- container's start does not depend on its image's size.
local small = image "bench-small" {
  from = "scratch",
  copy { host = "/bin/busybox", to = "/bin/busybox" },
  run { "/bin/busybox", "--install", "-s", "/bin" },
  env { PATH = "/bin" },
  workdir "/srv",
  run "echo one > /srv/one",
  user "0:0",
}

image "bench-big" {
  from = small,
  run "dd if=/dev/zero of=/big bs=1M count=1024 2>/dev/null && sync",
}
