-- luactr.runtime.run: running a container, attached or detached, from an
-- image or a root filesystem folder; starting a stopped one again.
local core = require "luactr.core"
local cgroup = require "luactr.runtime.cgroup"
local devices = require "luactr.spec.devices"
local errors = require "luactr.errors"
local ids = require "luactr.ids"
local seccomp = require "luactr.spec.seccomp"
local options = require "luactr.spec.options"
local resources = require "luactr.spec.resources"
local spec = require "luactr.spec"
local users = require "luactr.spec.users"
local units = require "luactr.units"
local userns = require "luactr.runtime.userns"
-- The store, the state machine, the monitor and the attach client are
-- required where they are used: each module loaded is paid by every
-- start, and `run --rootfs` needs none of them.

local M = {}


-- A random id, Docker's way: 64 hex digits, shown by its first 12.
M.new_id = ids.new

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

-- prepare(o) -> n: validated run options made what luactr.spec build
-- takes: env as an array, security options as what they stand for, the
-- id, host name, cgroup resources and devices, the terminal's size.
-- Raises (status 125) when one is wrong.
function M.prepare(o)
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
  if n.userns == "remap" then
    if n.privileged then
      errors.raise(errors.FAILED, "run: --privileged and --userns=remap do not go together")
    end
    n.uid_mappings, n.gid_mappings = errors.within("run", userns.mappings)
  end
  n.id = n.id or ids.new()  -- names its cgroup, and its host by default
  n.hostname = n.hostname or (n.network == "host" and host_hostname())
    or n.id:sub(1, 12)
  n.resources = resources.of(n, "run")
  local nodes, rules, binds = devices.prepare(n, "run")
  if n.uid_mappings then
    -- the kernel refuses mknod in a user namespace: the host's nodes are
    -- bound in (the default ones too, by spawn), the cgroup rules stay
    n.device_binds = #binds > 0 and binds or nil
  else
    n.device_nodes = #nodes > 0 and nodes or nil
  end
  n.resources = n.resources or {}
  n.resources.devices = rules
  if n.tty then
    local rows, cols = core.pty.size(0)
    if not rows then rows, cols = core.pty.size(1) end
    if rows and rows > 0 then n.console_size = { rows, cols } end
  end
  return n
end

-- Makes the cgroup of prepared options `o` (luactr.runtime.cgroup), with its
-- limits, having given its folders to `planned`; raises when it cannot.
local function make_cgroup(o, planned)
  local layout, why = cgroup.detect()
  if not layout then errors.raise(errors.FAILED, "run: cgroup: %s", why) end
  return errors.within("run", cgroup.create, layout, o.id, o.resources,
    { parent = o.cgroup_parent, planned = planned })
end

-- core.spawn; for --userns=remap the files of the root filesystem get
-- owners that make sense inside (luactr.runtime.userns.spawn): a container's own
-- snapshot may be chowned for that, a --rootfs folder never.
local function spawn_container(o, s, opts)
  return userns.spawn(s, opts, o.own_snapshot and o.store:container_dir(o.id) or nil)
end

-- Spawns the container of prepared options `o` in its cgroup and waits
-- for it; returns how and code, and { oom_killed=, cgroup= (when its
-- removal failed) }. `made(paths, [parents])` records its cgroup's
-- folders before they are made (and then the parent folders made for
-- it, when there are any), `started(proc)` is called once it runs. A run
-- with no store to record it in (--rootfs) claims its cgroup instead (see
-- cgroup.claim), for the sweep of a later command if it is killed.
local function execute(o, started, made)
  local user = errors.within("run", users.resolve, o.rootfs, o.user)
  local s = spec.build(o, user)
  local claim <close> = not made and cgroup.claim(o.id, cgroup.records()) or nil
  -- its cgroup first: the container joins it before it runs anything
  local cg = make_cgroup(o, made or function(paths) claim:planned(paths) end)
  local ok, how, code = pcall(function()
    if made and #cg.parents > 0 then made(cg.paths, cg.parents) end
    if o.store then o.store:write_config(o.id, s) end
    local proc, err, errno, step = spawn_container(o, s, {
      init = o.init,
      stdin = (o.interactive or o.tty) and "inherit" or "null",
      forward_signals = true,
      cgroups = cg:folders(),
      seccomp_cache = seccomp.cache_dir(),  -- the filter an earlier run compiled
      make_cwd = true,  -- Docker's rule: a missing working directory is made
    })
    if not proc then errors.raise(errors.spawn(step, errno), "run: %s", err) end
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
    if claim then claim:release(true) end
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

-- Docker's restart policy words -> policy, retries
local function restart_policy(word)
  word = word or "no"
  local policy, n = word:match("^([%a-]+):?(%d*)$")
  if policy == "on-failure" then return policy, tonumber(n) or 0 end
  if n == "" and (policy == "no" or policy == "always" or policy == "unless-stopped") then
    return policy, 0
  end
  errors.raise(errors.FAILED,
    "run: restart: expected no, always, unless-stopped or on-failure[:N], got '%s'", word)
end

-- Docker's --log-opt max-size=10m,max-file=3 -> bytes, files
local function log_options(list)
  local max, files
  for _, item in ipairs(list or {}) do
    for kv in item:gmatch("[^,]+") do
      local k, v = kv:match("^([%w-]+)=(.*)$")
      if k == "max-size" then
        max = units.size(v)
        if not max or max <= 0 then
          errors.raise(errors.FAILED, "run: log-opt max-size: bad size '%s'", v)
        end
      elseif k == "max-file" then
        files = math.tointeger(tonumber(v))
        if not files or files < 1 then
          errors.raise(errors.FAILED, "run: log-opt max-file: expected a count, got '%s'", v)
        end
      else
        errors.raise(errors.FAILED, "run: log-opt: unsupported option '%s' (max-size, max-file)", kv)
      end
    end
  end
  if files and not max then errors.raise(errors.FAILED, "run: log-opt max-file needs max-size") end
  return max, files
end

-- start(container) -> true: starts a created or stopped container,
-- detached; one running already is left as it is (as Docker does).
function M.start(what)
  local store = require("luactr.storage").open()
  local container = require "luactr.runtime.containers"
  local id = container.find(store, what)
  local state = require "luactr.runtime.state"
  local st = state.read(store, id)
  local damaged = container.damage(st)
  if damaged then errors.raise(errors.FAILED, "start: %s", damaged) end
  if state.is_active(st) then
    return true
  end
  if not st.detached then
    errors.raise(errors.FAILED, "start: container %s was not run detached (-d)", what)
  end
  require("luactr.runtime.monitor").start(store, id)
  return true
end

-- The settings of a detached run (restart policy, log rotation), its
-- detach keys checked: all before anything is made for it.
local function detached_options(o)
  local d = {}
  d.restart, d.retries = restart_policy(o.restart)
  if d.restart ~= "no" and o.rm then
    errors.raise(errors.FAILED, "run: --restart and --rm do not go together")
  end
  d.log_max, d.log_files = log_options(o.log_opt)
  require("luactr.runtime.attach").detach_keys(o.detach_keys)
  return d
end

-- Runs prepared options `n` of image `img` as a detached container of
-- the store, with the settings `d` of detached_options: its spec and
-- settings saved, its monitor started. Returns a Container, or
-- (attached, -it) how and code as run does.
local function run_detached(store, n, o, img, d)
  local ok, err = pcall(function()
    local user = users.resolve(n.rootfs, n.user)
    local s = spec.build(n, user)
    store:write_config(n.id, s)
    local st = store:read_state(n.id)
    st.detached = {
      tty = n.tty or nil, interactive = n.interactive or nil, init = n.init or nil,
      restart = d.restart, retries = d.retries, log_max = d.log_max, log_files = d.log_files,
      wait_attach = not o.detach or nil,
    }
    st.cgroup_parent = n.cgroup_parent
    st.stop_signal = img.config and img.config.StopSignal or nil
    store:write_state(n.id, st)
    store:unmount_container(n.id)
    require("luactr.runtime.monitor").start(store, n.id)
  end)
  if not ok then
    if o.rm then store:remove_container(n.id) end
    errors.rethrow(err, "run")
  end
  local c = require("luactr.runtime.handle").of(n.id)
  if o.detach then return c end
  -- its monitor waits for us even past the container's end (run -it
  -- --rm of a command that ends at once): no state check here
  local how, code = require("luactr.runtime.attach").connect(store, store:read_state(n.id), { detach_keys = o.detach_keys })
  if how == "detached" then return c, "detached" end
  if code == 0 then return true, "exit", 0 end
  if code > 128 then return nil, "signal", code - 128 end
  return nil, "exit", code
end

local function run_image(o)
  local store = require("luactr.storage").open()
  local container = require "luactr.runtime.containers"
  container.reap(store)
  local img, damaged = store:image(o.image)
  if not img then
    errors.raise(errors.FAILED, "run: %s", damaged or "no such image: " .. errors.quote(o.image))
  end
  local n = from_image(o, img)
  n.id = ids.new()
  n = M.prepare(n)
  local detached = (o.detach or (o.tty and o.interactive)) and detached_options(o)
  local command = table.concat(n.cmd, " ")
  n.rootfs = errors.within("run", container.create, store, { id = n.id, name = o.name,
    image = img, autoremove = o.rm, command = command })
  if detached then return run_detached(store, n, o, img, detached) end
  n.store = store
  n.own_snapshot = true  -- its writable snapshot: chowned for a user namespace if need be
  local how, code, info
  local ok, err = pcall(function()
    how, code, info = execute(n, function(proc) container.started(store, n.id, proc) end,
      function(paths, parents) container.cgroup_made(store, n.id, paths, parents) end)
  end)
  if o.rm and not (info and info.cgroup) then
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
-- (true by default), userns ("remap": root is an unprivileged host uid
-- of luactr's subuid/subgid range, see luactr.runtime.userns; "host": none, the
-- default); limits (the container's cgroup, see luactr.runtime.cgroup):
-- memory, memory_swap ("-1": unlimited), memory_reservation (sizes:
-- bytes or "512k", "64m", "1g"), cpus, cpu_shares, cpuset_cpus,
-- cpuset_mems, pids_limit, blkio_weight, device_read_bps and
-- device_write_bps ({ "/dev/sda:1mb" }), cgroup_parent; with an image
-- also name, rm, entrypoint.
function M.run(o)
  local msg = options.check(o, "run")
  if msg then errors.raise(errors.FAILED, "%s", msg) end
  if (o.rootfs == nil) == (o.image == nil) then
    errors.raise(errors.FAILED, "run: give either rootfs or image")
  end
  if o.image then return run_image(o) end
  if o.name or o.entrypoint then
    errors.raise(errors.FAILED, "run: name and entrypoint need an image")
  end
  o = M.prepare(o)
  local probe, why = io.open(o.rootfs)
  if not probe then errors.raise(errors.FAILED, "run: rootfs %s", why) end
  probe:close()
  local how, code = execute(o)
  if how == "exit" and code == 0 then return true, how, code end
  return nil, how, code
end

return M
