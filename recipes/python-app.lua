-- python-app: a Debian bookworm base (made by the builder with
-- debootstrap), python3 installed by a step, and a small web server in
-- recipes/app/ run by an unprivileged user, deployed on port 8080.
--
--   luactr build --dry-run recipes/python-app.lua
local app = image "python-app" {
  from = debian "bookworm",
  run {
    sh = "apt-get update && apt-get install -y --no-install-recommends python3"
      .. " && rm -rf /var/lib/apt/lists/*",
    network = "host",
  },
  copy { "app/", "/app/", owner = "1000:1000", mode = "0644" },
  env { PYTHONUNBUFFERED = 1 },
  workdir "/app",
  user "1000:1000",
  entrypoint = { "python3" },
  cmd = { "/app/server.py" },
  expose = { 8000 },
  labels = { ["org.opencontainers.image.title"] = "python-app" },
  stop_signal = "SIGINT",  -- http.server stops cleanly on KeyboardInterrupt
}

deploy "python-app" {
  container "web" {
    image = app, replicas = 1, memory = "64M", pids_limit = 100, cpus = 0.5,
    ports = { "8080:8000" }, restart = "on-failure", env = { GREETING = "hello" },
  },
}
