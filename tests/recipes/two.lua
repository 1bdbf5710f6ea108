-- an image on another defined later, by name; copies from this folder
image "app" {
  from = "base",
  copy { "files/", "single.txt", "/srv/", owner = 1000, mode = 420 },
  copy { "files", "/opt/" },
  cmd = "echo hi",
}

image "base" {
  from = "scratch",
  copy { "single.txt", "/single" },
}
