-- luactr.cli.system: `info`, `version`.
local output = require "luactr.cli.output"

local M = {}

function M.info()
  local i = require("luactr").info()
  output.out("Driver: %s\nRoot: %s\nStore: %s (%s)\n", i.driver, i.root, i.store, i.filesystem)
  output.out("Space: %.1f MiB used, %.1f MiB free\n", i.used / 2 ^ 20, i.free / 2 ^ 20)
  output.out("Images: %d\nContainers: %d\n", i.images, i.containers)
  return 0
end

function M.version()
  io.stdout:write("luactr ", require("luactr").version, "\n")
  return 0
end

return M
