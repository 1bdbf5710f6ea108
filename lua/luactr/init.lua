-- luactr: containers for Lua.
--
--   local luactr = require "luactr"
--   local ok, how, code = luactr.run{ rootfs = "/srv/rootfs",
--                                     cmd = { "sh", "-c", "echo hi" } }
--
-- Functions raise a luactr error (see luactr.errors) when luactr itself
-- fails; the container's own outcome is returned like os.execute's.
local core = require "luactr.core"
local cgroup = require "luactr.cgroup"
local check = require "luactr.check"
local errors = require "luactr.errors"
local seccomp = require "luactr.seccomp"
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
  -- limits (luactr.cgroup): sizes are bytes or "512k", "64m", "1g"
  memory = check.either(check.string, check.integer),
  memory_swap = check.either(check.string, check.integer),
  memory_reservation = check.either(check.string, check.integer),
  cpus = check.either(check.number, check.string),
  cpu_shares = check.integer,
  cpuset_cpus = check.string,
  cpuset_mems = check.string,
  pids_limit = check.integer,
  blkio_weight = check.integer,
  device_read_bps = check.array(check.string),
  device_write_bps = check.array(check.string),
  cgroup_parent = check.string,
  cap_add = check.array(check.string),
  cap_drop = check.array(check.string),
  privileged = check.boolean,
  security_opt = check.array(check.string),
  seccomp = check.either(check.string, check.table),
  no_new_privileges = check.boolean,
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

-- Docker's security_opt words ("seccomp=unconfined", "seccomp=FILE",
-- "no-new-privileges[=true|false]") become the options they stand for,
-- and a seccomp profile named by its file is read and checked.
local function confinement(n)
  local function set(key, value, opt)
    if n[key] ~= nil then
      errors.raise(errors.FAILED, "run: security-opt %s: %s is given twice", opt, key)
    end
    n[key] = value
  end
  for _, opt in ipairs(n.security_opt or {}) do
    local key, value = opt:match("^([^=:]+)[=:](.*)$")
    key = key or opt
    if key == "seccomp" and value and value ~= "" then
      set("seccomp", value, opt)
    elseif key == "no-new-privileges" and (value == nil or value == "true" or value == "false") then
      set("no_new_privileges", value ~= "false", opt)
    else
      errors.raise(errors.FAILED, "run: security-opt: unsupported option '%s'", opt)
    end
  end
  n.security_opt = nil
  if type(n.seccomp) == "string" and n.seccomp ~= "unconfined" then
    local profile, err = seccomp.load(n.seccomp)
    if not profile then errors.raise(errors.FAILED, "run: seccomp profile %s", err) end
    n.seccomp = profile
  elseif type(n.seccomp) == "table" then
    local msg = seccomp.check(n.seccomp, "run.seccomp")
    if msg then errors.raise(errors.FAILED, "%s", msg) end
  end
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
  confinement(n)
  n.id = n.id or M.new_id()  -- names its cgroup, and its host by default
  n.hostname = n.hostname or (n.network == "host" and host_hostname())
    or n.id:sub(1, 12)
  n.resources = cgroup.resources(n, "run")
  if n.tty then
    local rows, cols = core.pty.size(0)
    if not rows then rows, cols = core.pty.size(1) end
    if rows and rows > 0 then n.console_size = { rows, cols } end
  end
  return n
end

-- Makes the cgroup of prepared options `o` (luactr.cgroup), with its
-- limits; raises when it cannot.
local function make_cgroup(o)
  local layout, why = cgroup.detect()
  if not layout then errors.raise(errors.FAILED, "run: cgroup: %s", why) end
  local ok, cg = pcall(cgroup.create, layout, o.id, o.resources, { parent = o.cgroup_parent })
  if not ok then
    if errors.is(cg) then errors.raise(cg.status, "run: %s", cg.message) end
    error(cg, 0)
  end
  return cg
end

-- Spawns the container of prepared options `o` in its cgroup and waits
-- for it; returns how and code, and { oom_killed=, cgroup= (when its
-- removal failed) }. `made(cgroup)` is called once its cgroup is made,
-- `started(proc)` once it runs.
local function execute(o, started, made)
  local ok, user = pcall(users.resolve, o.rootfs, o.user)
  if not ok then
    if errors.is(user) then errors.raise(user.status, "run: %s", user.message) end
    error(user, 0)
  end
  local s = spec.build(o, user)
  -- its cgroup first: the container joins it before it runs anything
  local cg = make_cgroup(o)
  s.linux.resources = o.resources
  s.linux.cgroupsPath = (o.cgroup_parent and o.cgroup_parent:gsub("/*$", "/") or "")
    .. cgroup.name(o.id)
  local ok, how, code = pcall(function()
    if made then made(cg) end
    if o.store then o.store:write_config(o.id, s) end
    local proc, err, errno, step = core.spawn(s, {
      init = o.init and init_program() or nil,
      stdin = (o.interactive or o.tty) and "inherit" or "null",
      forward_signals = true,
      cgroups = cg:folders(),
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
    local h, c = proc:wait{ relay = o.tty, input = o.tty and o.interactive, raw = o.tty }
    proc:close()
    if not h then errors.raise(errors.FAILED, "run: %s", c) end
    return h, c
  end)
  -- what the container did to its memory cgroup, then the cgroup is gone
  -- (with any process left in it, if luactr itself failed)
  local info = { oom_killed = cg:oom_killed() }
  local removed, why = cg:remove()
  if not removed then
    info.cgroup = cg  -- still there: recorded, and removed by rm or a later sweep
    io.stderr:write("luactr: warning: ", why, "\n")
  end
  if not ok then error(how, 0) end
  return how, code, info
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
  local how, code, info
  ok, err = pcall(function()
    how, code, info = execute(n, function(proc) container.started(store, n.id, proc) end,
      function(cg) container.cgroup_made(store, n.id, cg) end)
  end)
  if o.rm then
    store:remove_container(n.id)  -- no state to record: it is gone
  else
    store:unmount_container(n.id)
    if ok then
      container.exited(store, n.id, how, code, info)
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
-- network ("none" | "host"), init, tty, interactive; confinement:
-- cap_add, cap_drop (capability names, or "ALL"), privileged,
-- security_opt (Docker's words), seccomp (a profile table in Docker's
-- format, a file holding one, or "unconfined"), no_new_privileges
-- (true by default); limits (the container's cgroup, see luactr.cgroup):
-- memory, memory_swap ("-1": unlimited), memory_reservation (sizes:
-- bytes or "512k", "64m", "1g"), cpus, cpu_shares, cpuset_cpus,
-- cpuset_mems, pids_limit, blkio_weight, device_read_bps and
-- device_write_bps ({ "/dev/sda:1mb" }), cgroup_parent; with an image
-- also name, rm, entrypoint.
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

-- stats(container, [previous]) -> { id=, name=, running=, cpu_percent=,
-- memory_usage=, memory_limit=, memory_percent=, pids=, block_read=,
-- block_write=, sample= }
-- What a container (name, id or id prefix) uses now, from its cgroup;
-- the CPU % is over the time since `previous` (an earlier result for the
-- same container), and nil without one. Sizes in bytes.
function M.stats(what, previous)
  local store = require("luactr.store").open()
  local container = require "luactr.container"
  local id = container.find(store, what)
  local st = container.state(store, id)
  local r = { id = id, name = st.name, running = st.status == "running" }
  if r.running and st.cgroups then
    local s = cgroup.open(st.cgroups):stats()
    r.sample = s
    r.cpu_percent = cgroup.cpu_percent(previous and previous.sample, s)
    r.memory_usage, r.memory_limit = s.memory_usage, s.memory_limit
    if s.memory_usage and s.memory_limit and s.memory_limit > 0 then
      r.memory_percent = s.memory_usage / s.memory_limit * 100
    end
    r.pids, r.block_read, r.block_write = s.pids, s.block_read, s.block_write
  end
  return r
end

return M
