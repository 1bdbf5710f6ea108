-- hello: the smallest recipe that builds. A busybox image made from the
-- host's busybox-static (apt-get install busybox-static), and an image on
-- top of it with a file of this folder, a variable and a command.
--
--   luactr build --dry-run recipes/hello.lua
local base = image "busybox" {
  from = "scratch",
  copy { host = "/bin/busybox", to = "/bin/busybox" },
  run { "/bin/busybox", "--install", "-s", "/bin" },
  env { PATH = "/bin" },
}

image "hello" {
  from = base,
  env { GREETING = "hello" },
  copy { "files/", "/srv/" },
  workdir "/srv",
  run "echo built > /srv/built",
  user "1000:1000",
  label { ["org.opencontainers.image.title"] = "hello" },
  cmd = { "sh", "-c", "cat /srv/greeting.txt; echo $GREETING from $(hostname)" },
}
