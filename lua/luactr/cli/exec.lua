-- luactr.cli.exec: `luactr exec`.
local errors = require "luactr.errors"
local flags = require "luactr.cli.flags"

local M = {}

local fail = errors.fail

local EXEC_USAGE = [[
Usage: luactr exec [OPTIONS] CONTAINER COMMAND [ARG...]

Run a command in a running container: in its namespaces and cgroup, with
its capabilities, seccomp profile, no_new_privs, environment, user and
working directory, unless an option says otherwise.

Options:
  -e, --env KEY=VALUE     set an environment variable (KEY alone: take
                          it from luactr's own environment)
  -w, --workdir DIR       working directory inside the container
  -u, --user USER[:GROUP] user name or uid (and group name or gid)
  -i, --interactive       keep stdin open
  -t, --tty               allocate a pseudo-terminal
      --privileged        every capability (the seccomp profile stays)
      --help              print this help
]]

local OPTIONS = {
  env = { short = "e", arg = true, list = true },
  workdir = { short = "w", arg = true },
  user = { short = "u", arg = true },
  interactive = { short = "i" },
  tty = { short = "t" },
  privileged = {},
  help = {},
}

function M.exec(args)
  local o, rest = flags.parse("exec", OPTIONS, args)
  if o.help then
    io.stdout:write(EXEC_USAGE)
    return 0
  end
  local name = table.remove(rest, 1)
  if not name then fail("exec: give a container and a command") end
  if #rest == 0 then fail("exec: no command given") end
  local ok, how, code = require("luactr").exec{
    container = name, cmd = rest, env = flags.environment(o.env, "exec"),
    user = o.user, workdir = o.workdir, tty = o.tty,
    interactive = o.interactive, privileged = o.privileged,
  }
  if ok then return 0 end
  return how == "signal" and 128 + code or code
end

return M
