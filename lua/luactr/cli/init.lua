-- luactr.cli: the command line, a client of require "luactr" and nothing
-- more: each verb (cli/<family>.lua) reads its flags (cli/flags.lua) and
-- calls the API, which holds the rules; what it prints is cli/output's.
-- Every failure prints "luactr: <what>: <why>" and exits 125 (126, 127
-- when the command cannot be run or found).
local errors = require "luactr.errors"

local M = {}

local USAGE = [[
Usage: luactr COMMAND [OPTIONS]
       luactr RECIPE.lua [IMAGE...]   build the recipe's images

Commands:
  run      Run a command in a new container (from an image or --rootfs)
  exec     Run a command in a running container
  build    Build the images of a recipe
  images   List images
  rmi      Remove images
  tag      Give an image another name
  history  Show the steps an image was built from
  inspect  Show an image or a container as JSON
  ps       List containers
  start    Start a stopped container (detached)
  restart  Stop and start a container
  logs     Show a container's log (-f follows it)
  attach   Connect to a detached container's terminal or stdio
  rm       Remove containers
  stop     Stop running containers (stop signal, then SIGKILL)
  kill     Send a signal to running containers (SIGKILL by default)
  pause    Freeze every process of containers
  unpause  Thaw paused containers
  wait     Wait until containers exit and print their exit codes
  top      Show the processes of a container
  stats    Show what running containers use (CPU, memory, I/O, pids)
  info     Show the store's driver, root and space
  version  Print luactr's version

Run 'luactr COMMAND --help' for more on a command.
]]

-- verb -> the module (luactr.cli.<family>) that has it
local VERBS = {
  run = "run", exec = "exec", build = "build",
  images = "images", rmi = "images", tag = "images", history = "images",
  inspect = "containers", ps = "containers", start = "containers", restart = "containers",
  logs = "containers", attach = "containers", rm = "containers", stop = "containers",
  kill = "containers", pause = "containers", unpause = "containers", wait = "containers",
  top = "containers", stats = "containers",
  info = "system", version = "system",
}

local function verb_function(verb)
  local family = VERBS[verb]
  return family and require("luactr.cli." .. family)[verb]
end

-- main(args) -> exit status. Never raises. A bug (an error that is not
-- luactr's) is said in one line; LUACTR_DEBUG=1 adds its traceback.
function M.main(args)
  local verb = args[1]
  if verb == nil then
    io.stderr:write(USAGE)
    return 125
  elseif verb == "help" or verb == "--help" or verb == "-h" then
    io.stdout:write(USAGE)
    return 0
  end
  local f = verb_function(verb)
  if not f and verb:match("%.lua$") then
    -- luactr RECIPE.lua: build it (and, once deployments exist, bring them up)
    f = verb_function("build")
    args = { "build", table.unpack(args) }
  end
  if not f then
    io.stderr:write(("luactr: unknown command %s (see 'luactr --help')\n")
      :format(errors.quote(verb, "'")))
    return 125
  end
  local ok, status = xpcall(f, function(e)
    if errors.is(e) then return e end
    if os.getenv("LUACTR_DEBUG") then return debug.traceback(tostring(e), 2) end
    return (tostring(e):match("^[^\n]*"))
  end, table.move(args, 2, #args, 1, {}))
  if ok then return status end
  if errors.is(status) then
    io.stderr:write("luactr: ", status.message, "\n")
    return status.status
  end
  io.stderr:write("luactr: internal error: ", tostring(status), "\n")
  return 125
end

return M
