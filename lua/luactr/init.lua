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
  image = check.string,
  name = check.string,
  rm = check.boolean,
  entrypoint = check.array(check.string),
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
})

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
  if not n.cmd or #n.cmd == 0 then errors.raise(errors.FAILED, "run: no command given") end
  if n.workdir and n.workdir:sub(1, 1) ~= "/" then
    errors.raise(errors.FAILED, "run: workdir must be an absolute path, got '%s'", n.workdir)
  end
  n.hostname = n.hostname or (n.network == "host" and host_hostname())
    or (n.id or M.new_id()):sub(1, 12)
  if n.tty then
    local rows, cols = core.pty.size(0)
    if not rows then rows, cols = core.pty.size(1) end
    if rows and rows > 0 then n.console_size = { rows, cols } end
  end
  return n
end

-- Spawns the container of prepared options `o` and waits for it.
-- `started(proc)` is called once it runs.
local function execute(o, started)
  local ok, user = pcall(users.resolve, o.rootfs, o.user)
  if not ok then
    if errors.is(user) then errors.raise(user.status, "run: %s", user.message) end
    error(user, 0)
  end
  local s = spec.build(o, user)
  if o.store then o.store:write_config(o.id, s) end
  local proc, err, errno, step = core.spawn(s, {
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
  if started then started(proc) end
  local how, code = proc:wait{ relay = o.tty, input = o.tty and o.interactive, raw = o.tty }
  proc:close()
  if not how then errors.raise(errors.FAILED, "run: %s", code) end
  return how, code
end

-- Docker's rules for an image's command: ENTRYPOINT, then the run's
-- command or else the image's CMD; the image's Env under the run's.
local function from_image(o, img)
  local c = img.config or {}
  local n = {}
  for k, v in pairs(o) do n[k] = v end
  local argv = {}
  for _, a in ipairs(o.entrypoint or c.Entrypoint or {}) do argv[#argv + 1] = a end
  local cmd = (o.cmd and #o.cmd > 0) and o.cmd or (not o.entrypoint and c.Cmd) or {}
  for _, a in ipairs(cmd) do argv[#argv + 1] = a end
  n.cmd = argv
  local env = {}
  for _, kv in ipairs(c.Env or {}) do env[#env + 1] = kv end
  if o.env and #o.env == 0 and next(o.env) then
    local keys = {}
    for k in pairs(o.env) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do env[#env + 1] = k .. "=" .. o.env[k] end
  else
    for _, kv in ipairs(o.env or {}) do env[#env + 1] = kv end
  end
  n.env = env
  if not o.workdir and c.WorkingDir and c.WorkingDir ~= "" then n.workdir = c.WorkingDir end
  if not o.user and c.User and c.User ~= "" then n.user = c.User end
  n.image, n.entrypoint = nil, nil
  return n
end

local function run_image(o)
  local store = require("luactr.store").open()
  local container = require "luactr.container"
  container.reap(store)
  local img = store:image(o.image)
  if not img then errors.raise(errors.FAILED, "run: no such image: %s", o.image) end
  local n = from_image(o, img)
  n.id = M.new_id()
  n = prepare(n)
  local command = table.concat(n.cmd, " ")
  local ok, err = pcall(function()
    n.rootfs = container.create(store, { id = n.id, name = o.name, image = img,
      autoremove = o.rm, command = command })
  end)
  if not ok then
    if errors.is(err) then errors.raise(err.status, "run: %s", err.message) end
    error(err, 0)
  end
  n.store = store
  local how, code
  ok, err = pcall(function()
    how, code = execute(n, function(proc) container.started(store, n.id, proc) end)
  end)
  if o.rm then
    store:remove_container(n.id)  -- no state to record: it is gone
  else
    store:unmount_container(n.id)
    if ok then
      container.exited(store, n.id, how, code)
    else
      container.exited(store, n.id, "exit", errors.is(err) and err.status or 125)
    end
  end
  if not ok then error(err, 0) end
  if how == "exit" and code == 0 then return true, how, code end
  return nil, how, code
end

-- run(options) -> true|nil, "exit"|"signal", code
-- Runs a container to completion. Options: rootfs (a folder) or image (a
-- name in the store), cmd; env, hostname, workdir, user, read_only,
-- network ("none" | "host"), init, tty, interactive; with an image also
-- name, rm, entrypoint.
function M.run(o)
  local msg = run_options(o, "run")
  if msg then errors.raise(errors.FAILED, "%s", msg) end
  if (o.rootfs == nil) == (o.image == nil) then
    errors.raise(errors.FAILED, "run: give either rootfs or image")
  end
  if o.image then return run_image(o) end
  if o.name or o.entrypoint then
    errors.raise(errors.FAILED, "run: name and entrypoint need an image")
  end
  o = prepare(o)
  local probe, why = io.open(o.rootfs)
  if not probe then errors.raise(errors.FAILED, "run: rootfs %s", why) end
  probe:close()
  local how, code = execute(o)
  if how == "exit" and code == 0 then return true, how, code end
  return nil, how, code
end

-- build(recipe path or plan, [{ no_cache=, only={names}, out=file }])
-- -> { [image name] = { id=, top= } }
function M.build(what, o)
  local plan = what
  if type(what) == "string" then plan = require("luactr.recipe").load(what) end
  return require("luactr.build").build(plan, o)
end

-- images() -> the store's images (OCI image configs with .ref and .id)
function M.images()
  return require("luactr.store").open():images()
end

return M
