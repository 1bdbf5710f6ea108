-- a misspelt field three lines below its image
image "hello" {
  from = "scratch",
  run "true",
  form = "busybox",
}
