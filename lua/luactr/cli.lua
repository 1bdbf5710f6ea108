-- luactr.cli: the command line, a thin layer over require "luactr".
--
-- Options are parsed and checked here, Docker's way: short flags may be
-- grouped (-it), values follow as the next word or after '=' (--env=K=V,
-- -eK=V), options end at the first word that is not one, or at "--".
-- Every failure prints "luactr: <what>: <why>" and exits 125.
local errors = require "luactr.errors"

local M = {}

local USAGE = [[
Usage: luactr COMMAND [OPTIONS]

Commands:
  run      Run a command in a new container
  version  Print luactr's version

Run 'luactr COMMAND --help' for more on a command.
]]

local RUN_USAGE = [[
Usage: luactr run [OPTIONS] --rootfs DIR [--] COMMAND [ARG...]

Run a command in a new container whose root is DIR.

Options:
      --rootfs DIR        the container's root filesystem (a folder)
  -e, --env KEY=VALUE     set an environment variable (KEY alone: take
                          it from luactr's own environment)
  -w, --workdir DIR       working directory inside the container
  -u, --user USER[:GROUP] user name or uid (and group name or gid)
  -h, --hostname NAME     the container's host name
      --read-only         mount the root filesystem read-only
      --network MODE      "none" (default: its own, with lo) or "host"
      --init              run a tiny init as PID 1 that reaps zombies
                          and forwards signals
  -i, --interactive       keep stdin open
  -t, --tty               allocate a pseudo-terminal
      --rm                remove the container when it exits (a --rootfs
                          container leaves nothing behind anyway)
      --help              print this help
]]

-- The options of each verb: long name -> { short=, arg=, key=, list= }.
local RUN_OPTIONS = {
  rootfs = { arg = true },
  env = { short = "e", arg = true, list = true },
  workdir = { short = "w", arg = true },
  user = { short = "u", arg = true },
  hostname = { short = "h", arg = true },
  ["read-only"] = { key = "read_only" },
  network = { arg = true },
  net = { arg = true, key = "network" },
  init = {},
  interactive = { short = "i" },
  tty = { short = "t" },
  rm = {},
  help = {},
}

local function fail(fmt, ...)
  errors.raise(errors.FAILED, fmt, ...)
end

-- parse(verb, spec, args) -> options, rest
-- Reads options from args[1..] until the first operand or "--".
function M.parse(verb, spec, args)
  local shorts = {}
  for long, o in pairs(spec) do
    if o.short then shorts[o.short] = long end
  end
  local opts, i = {}, 1
  local function set(long, value)
    local o = spec[long]
    local key = o.key or long
    if o.list then
      opts[key] = opts[key] or {}
      table.insert(opts[key], value)
    else
      opts[key] = value
    end
  end
  local function value_for(name, inline)
    if inline then return inline end
    i = i + 1
    if args[i] == nil then fail("%s: option %s needs a value", verb, name) end
    return args[i]
  end
  while i <= #args do
    local a = args[i]
    if a == "--" then
      i = i + 1
      break
    elseif a:sub(1, 2) == "--" then
      local name, inline = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local o = spec[name]
      if not o then fail("%s: unknown option --%s (see 'luactr %s --help')", verb, name, verb) end
      if o.arg then
        set(name, value_for("--" .. name, inline))
      elseif inline then
        fail("%s: option --%s takes no value", verb, name)
      else
        set(name, true)
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local j = 2
      while j <= #a do
        local c = a:sub(j, j)
        local long = shorts[c]
        if not long then fail("%s: unknown option -%s (see 'luactr %s --help')", verb, c, verb) end
        if spec[long].arg then
          local rest = a:sub(j + 1)
          set(long, value_for("-" .. c, rest ~= "" and rest or nil))
          break
        end
        set(long, true)
        j = j + 1
      end
    else
      break
    end
    i = i + 1
  end
  return opts, table.move(args, i, #args, 1, {})
end

-- Docker's -e: KEY=VALUE, or KEY alone to pass luactr's own value.
local function environment(list)
  local env = {}
  for _, kv in ipairs(list or {}) do
    if kv:find("=", 1, true) then
      env[#env + 1] = kv
    elseif kv ~= "" then
      local v = os.getenv(kv)
      if v then env[#env + 1] = kv .. "=" .. v end
    else
      fail("run: empty environment variable")
    end
  end
  return env
end

local verbs = {}

function verbs.run(args)
  local o, rest = M.parse("run", RUN_OPTIONS, args)
  if o.help then
    io.stdout:write(RUN_USAGE)
    return 0
  end
  if not o.rootfs then
    fail("run: images are not supported yet: give a root filesystem with --rootfs DIR")
  end
  if #rest == 0 then fail("run: no command given (luactr run --rootfs DIR -- COMMAND)") end
  local luactr = require "luactr"
  local ok, how, code = luactr.run{
    rootfs = o.rootfs, cmd = rest, env = environment(o.env),
    hostname = o.hostname, workdir = o.workdir, user = o.user,
    read_only = o.read_only, network = o.network, init = o.init,
    tty = o.tty, interactive = o.interactive,
  }
  if ok then return 0 end
  return how == "signal" and 128 + code or code
end

function verbs.version()
  io.stdout:write("luactr ", require("luactr.core").version, "\n")
  return 0
end

-- main(args) -> exit status. Never raises.
function M.main(args)
  local verb = args[1]
  if verb == nil or verb == "help" or verb == "--help" or verb == "-h" then
    io.stdout:write(USAGE)
    return verb == nil and 125 or 0
  end
  local f = verbs[verb]
  if not f then
    io.stderr:write(("luactr: unknown command '%s' (see 'luactr --help')\n"):format(verb))
    return 125
  end
  local ok, status = xpcall(f, function(e)
    if errors.is(e) then return e end
    return debug.traceback(tostring(e), 2)
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
