-- luactr: containers for Lua.
--
--   local luactr = require "luactr"
--   local ok, how, code = luactr.run{ rootfs = "/srv/rootfs",
--                                     cmd = { "sh", "-c", "echo hi" } }
--
-- Functions raise a luactr error (see luactr.errors) when luactr itself
-- fails; the container's own outcome is returned like os.execute's.
local core = require "luactr.core"
local check = require "luactr.check"
local errors = require "luactr.errors"
local spec = require "luactr.spec"
local users = require "luactr.users"

local M = {}

M.version = core.version

local run_options = check.record({
  rootfs = check.string,
  cmd = check.array(check.string),
  env = check.either(check.array(check.string), check.map(check.string)),
  hostname = check.string,
  workdir = check.string,
  user = check.either(check.string, check.integer),
  read_only = check.boolean,
  network = check.enum("none", "host"),
  init = check.boolean,
  tty = check.boolean,
  interactive = check.boolean,
}, { "rootfs", "cmd" })

-- A random id, Docker's way: 64 hex digits, shown by its first 12.
function M.new_id()
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(32)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- The tiny init (`init = true`) lives next to the native core.
local function init_program()
  return (core.path:gsub("[^/]*$", "init"))
end

local function host_hostname()
  local f = io.open("/proc/sys/kernel/hostname")
  local name = f and f:read("l")
  if f then f:close() end
  return name or "localhost"
end

-- Normalises validated options: env as an array, defaults filled in.
local function prepare(o)
  local n = {}
  for k, v in pairs(o) do n[k] = v end
  if o.env and #o.env == 0 and next(o.env) then
    local list = {}
    for k, v in pairs(o.env) do list[#list + 1] = k .. "=" .. v end
    table.sort(list)
    n.env = list
  end
  for i, kv in ipairs(n.env or {}) do
    if not kv:find("=", 1, true) then
      errors.raise(errors.FAILED, "run: env[%d]: expected KEY=VALUE, got '%s'", i, kv)
    end
  end
  if #n.cmd == 0 then errors.raise(errors.FAILED, "run: no command given") end
  if n.workdir and n.workdir:sub(1, 1) ~= "/" then
    errors.raise(errors.FAILED, "run: workdir must be an absolute path, got '%s'", n.workdir)
  end
  n.hostname = n.hostname or (n.network == "host" and host_hostname())
    or M.new_id():sub(1, 12)
  if n.tty then
    local rows, cols = core.pty.size(0)
    if not rows then rows, cols = core.pty.size(1) end
    if rows and rows > 0 then n.console_size = { rows, cols } end
  end
  return n
end

-- run(options) -> true|nil, "exit"|"signal", code
-- Runs a container to completion. Options: rootfs, cmd (required); env,
-- hostname, workdir, user, read_only, network ("none" | "host"), init,
-- tty, interactive.
function M.run(o)
  local msg = run_options(o, "run")
  if msg then errors.raise(errors.FAILED, "%s", msg) end
  o = prepare(o)
  local probe, why = io.open(o.rootfs)
  if not probe then errors.raise(errors.FAILED, "run: rootfs %s", why) end
  probe:close()
  local ok, user = pcall(users.resolve, o.rootfs, o.user)
  if not ok then
    if errors.is(user) then errors.raise(user.status, "run: %s", user.message) end
    error(user, 0)
  end
  local proc, err, errno, step = core.spawn(spec.build(o, user), {
    init = o.init and init_program() or nil,
    stdin = (o.interactive or o.tty) and "inherit" or "null",
    forward_signals = true,
  })
  if not proc then
    local status = errors.FAILED
    if step == "exec" then
      local e = core.sys.errno
      status = (errno == e.ENOENT or errno == e.ENOTDIR) and errors.NOT_FOUND
        or errors.CANNOT_EXEC
    end
    errors.raise(status, "run: %s", err)
  end
  local how, code = proc:wait{ relay = o.tty, input = o.tty and o.interactive, raw = o.tty }
  proc:close()
  if not how then errors.raise(errors.FAILED, "run: %s", code) end
  if how == "exit" and code == 0 then return true, how, code end
  return nil, how, code
end

return M
