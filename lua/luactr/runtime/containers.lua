-- luactr.runtime.containers: containers made from images, and their state on disk.
--
-- A container is a folder in the store: rootfs/ (a writable snapshot of
-- its image's top layer), config.json (the OCI spec it runs) and
-- state.json (status, pid, exit code, times). There is no daemon: the
-- process that runs a container writes its state; any later command reads
-- it, and a "running" container whose process is gone is reported as
-- exited (its runner was killed) — and removed, when it was started with
-- --rm. The cgroup is recorded before it is made, and a container whose
-- cgroup holds processes runs, whatever its file says: its runner may
-- have been killed before it could record them. A state file that is
-- damaged gives status "damaged" (luactr.storage): listed, removable with
-- rm -f, and no trouble for the others.
local cgroup = require "luactr.runtime.cgroup"
local core = require "luactr.core"
local errors = require "luactr.errors"
local json = require "luactr.json"

local M = {}

local fail = errors.fail

local function now_iso()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- The start time of a process (clock ticks since boot, /proc/PID/stat
-- field 22): with the pid it names one process, whatever pids are reused.
function M.start_time(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  if not s then return nil end  -- it ended between the open and the read
  local after = s:match("%) (.*)$")
  local fields = {}
  for w in (after or ""):gmatch("%S+") do fields[#fields + 1] = w end
  -- a zombie has ended: only its parent has not reaped it yet
  if fields[1] == "Z" or fields[1] == "X" then return nil end
  return tonumber(fields[20])
end

local function alive(state)
  return state.pid and state.pid_start and M.start_time(state.pid) == state.pid_start
end

-- The processes in the cgroup a state records: one folder read (they are
-- in all of its folders); nil when none of them is there.
local function cgroup_procs(st)
  for _, dir in pairs(st.cgroups) do
    local procs = core.cgroup.procs(dir)
    if procs then return procs end
  end
end

-- Of the processes of a container's cgroup, its PID 1: the one that is 1
-- in a pid namespace of its own (the last of /proc/PID/status NSpid).
local function pid_one(procs)
  for _, pid in ipairs(procs) do
    local ns = (core.fs.read("/proc/" .. pid .. "/status") or ""):match("\nNSpid:([^\n]*)")
    if ns and ns:match("%d%s+1%s*$") then return pid end
  end
end

-- Takes as the container's PID 1 the one in its cgroup, when the state
-- does not name it (its runner was killed before it recorded it).
local function adopt(st, procs)
  if alive(st) then return end
  local pid = pid_one(procs)
  if pid then
    st.pid, st.pid_start = pid, M.start_time(pid)
    st.started = st.started or st.created
  end
end

-- exit_record(store, id) -> what a detached container's monitor wrote
-- when it ended (exit.json: how, code, finished; `restarting` and
-- `restarts` once its restart policy decided, see luactr.runtime.monitor),
-- or nil.
function M.exit_record(store, id)
  local text = core.fs.read(store:container_dir(id) .. "/exit.json")
  local ex = text and json.decode(text)
  if type(ex) ~= "table" or (ex.how ~= "exit" and ex.how ~= "signal")
     or math.type(ex.code) ~= "integer" then
    return nil  -- none, or damaged: the end is not known
  end
  return ex
end

-- runner_alive(st) -> is the process that runs it (an attached `luactr
-- run`, or the monitor of a detached one and its Lua successor) there?
local function runner_alive(st)
  return st.runner and st.runner_start and M.start_time(st.runner) == st.runner_start
end
M.runner_alive = runner_alive

-- What rm -f needs of a damaged state (see luactr.storage) to end what the
-- container left: its cgroup, found by its name when the state lost it
-- (beneath the parent its config.json names), and from that cgroup its
-- PID 1 and the monitor that is PID 1's parent. `live` when processes
-- are in its cgroup.
local function salvage(store, st)
  if not st.cgroups then
    local layout = cgroup.detect()
    local ok, spec = pcall(store.read_config, store, st.id)
    local path = ok and type(spec) == "table" and type(spec.linux) == "table"
      and spec.linux.cgroupsPath
    local parent = type(path) == "string" and path:match("^(.*)/[^/]*$") or nil
    st.cgroups = layout and cgroup.find(layout, st.id, st.cgroup_parent or parent)
  end
  local procs = st.cgroups and cgroup_procs(st)
  if procs and #procs > 0 then
    st.live = true
    adopt(st, procs)
    if st.pid and not runner_alive(st) then
      local monitor = require("luactr.runtime.monitor").of(st.pid)
      if monitor then st.runner, st.runner_start, st.monitor = monitor, M.start_time(monitor), true end
    end
  end
  return st
end

-- state(store, id) -> state table, as it is now: "running" when its
-- cgroup holds processes; a stale "running" fixed: "exited" with the
-- code its monitor recorded ("restarting" while the monitor waits to
-- start it again), or "exited" and stale when nobody recorded the end (a
-- "created" one too, once a runner that made its cgroup is gone);
-- "damaged" (see salvage). Never writes.
function M.state(store, id)
  local st = store:read_state(id)
  if not st then return nil end
  if st.damaged then return salvage(store, st) end
  local live = st.status == "running" or st.status == "paused"
  -- one that is not recorded running, whose cgroup holds processes: its
  -- runner was killed before it recorded them (one that is recorded, with
  -- its PID 1 gone, has ended: the kernel ends the rest of its pid
  -- namespace). The common cases cost nothing: running, or no cgroup.
  local procs = not live and st.cgroups and cgroup_procs(st)
  if procs and #procs > 0 then
    st.status = "running"
    adopt(st, procs)
  elseif live and not alive(st) then
    local ex = st.monitor and M.exit_record(store, id)
    if (not ex or ex.restarting == nil) and runner_alive(st)
       and st.runner ~= core.sys.getpid() then
      -- its PID 1 has ended and the process that records the end (its
      -- monitor, which drains its output first and then decides on a
      -- restart, or the attached `luactr run`) is at it: until that is
      -- done, it has not exited yet
      return st
    end
    st.status = "exited"
    if ex then
      st.exit_code = ex.how == "signal" and 128 + ex.code or ex.code
      st.finished = ex.finished
      if ex.restarting and runner_alive(st) then st.status = "restarting" end
    else
      st.stale = true
      store:unmount_container(id)  -- an overlay root outlives a killed runner
    end
  elseif st.status == "created" and st.cgroups and not runner_alive(st) then
    st.status, st.stale = "exited", true
  end
  -- the freezer, not the file, says whether it is paused (luactr.runtime.control)
  if st.status == "running" and st.cgroups and st.cgroups.freezer
     and cgroup.frozen(st.cgroups.freezer) then
    st.status = "paused"
  end
  return st
end

-- finish(store, id, [restarting]) -> state | nil: records the end of a
-- detached container (run by its monitor's successor, see luactr.runtime.monitor,
-- and by anyone who finds its monitor gone): exit code, OOMKilled, its
-- cgroup removed, its root unmounted; a --rm container is removed unless
-- it is about to be restarted. Nil when the container is gone.
function M.finish(store, id, restarting)
  local lock <close> = store:lock()
  local st = M.state(store, id)
  if not st then return nil end
  if st.damaged or st.status == "running" or st.status == "paused" then return st end
  if st.cgroups then
    local cg = cgroup.open(st.cgroups, st.cgroup_parents)
    st.OOMKilled = cg:oom_killed() or false
    if cg:empty() and cg:remove() then st.cgroups, st.cgroup_parents = nil, nil end
  end
  st.status, st.stale = "exited", nil
  st.pid, st.pid_start = nil, nil
  st.finished = st.finished or now_iso()
  store:unmount_container(id)
  if st.autoremove and not restarting then
    store:remove_container(id)
    return nil
  end
  store:write_state(id, st)
  return st
end

-- list(store) -> states of every container, newest first.
function M.list(store)
  local list = {}
  for _, id in ipairs(store:containers()) do
    local st = M.state(store, id)
    if st then list[#list + 1] = st end
  end
  table.sort(list, function(a, b) return (a.created or "") > (b.created or "") end)
  return list
end

-- Removes what is left of the cgroup recorded in a container's state.
local function remove_cgroup(st)
  if not st.cgroups then return true end
  return cgroup.open(st.cgroups, st.cgroup_parents):remove()
end

-- Removes --rm containers whose runner died before it could, and the
-- cgroups such runners left; one still being started (its runner alive)
-- is left alone, and so is one whose cgroup holds processes (it runs,
-- see state) and a damaged one (for rm -f). Then sweeps the cgroups of
-- killed --rootfs runs of this root (cgroup.sweep): only those this
-- store's records name are ever removed, never another store's. Works on
-- a full store: what it would write is left for a later time. Returns
-- the states of the containers that are left (M.list's).
function M.reap(store)
  local left = {}
  for _, st in ipairs(M.list(store)) do
    local gone = false
    if not st.damaged and st.status ~= "running" and not runner_alive(st) then
      -- never killing here: processes in it make it a container that runs
      if st.cgroups and cgroup.open(st.cgroups):empty() and remove_cgroup(st) then
        st.cgroups, st.cgroup_parents = nil, nil
        pcall(store.write_state, store, st.id, st)
      end
      if st.autoremove and not st.cgroups then
        gone = pcall(store.remove_container, store, st.id)
      end
    end
    if not gone then left[#left + 1] = st end
  end
  cgroup.sweep(cgroup.records(store.root))
  return left
end

-- find(store, what) -> id: by name, full id or unique id prefix. An
-- empty or blank `what` names none (it would be a prefix of every id).
function M.find(store, what)
  if type(what) ~= "string" or what:find("^%s*$") then
    fail("no such container: %s (give a name or an id)", errors.quote(what))
  end
  local found
  for _, id in ipairs(store:containers()) do
    local st = store:read_state(id)
    if st and st.name == what then return id end
    if id:sub(1, #what) == what then
      if found then fail("container id prefix '%s' is ambiguous", what) end
      found = id
    end
  end
  if not found then fail("no such container: %s", errors.quote(what)) end
  return found
end

-- create(store, o) -> id, rootfs
-- o: id, name, image (config with .ref, .id, .luactr.top), autoremove.
function M.create(store, o)
  -- under the store's lock, so that two runs cannot take the same name
  local lock <close> = store:lock()
  if o.name then
    if not o.name:match("^[%w][%w_.%-]*$") then
      fail("invalid container name %s", errors.quote(o.name, "'"))
    end
    for _, id in ipairs(store:containers()) do
      local st = store:read_state(id)
      if st and st.name == o.name then
        fail("the name '%s' is in use by container %s", o.name, id:sub(1, 12))
      end
    end
  end
  -- its image may have been removed (rmi) since it was looked up: layers
  -- are pruned under this lock only, so one that is here now stays
  local top = o.image.luactr and o.image.luactr.top
  if top and not store:has_layer(top) then fail("no such image: %s", errors.quote(o.image.ref)) end
  -- the container appears with its state (and name) at once
  return store:new_container(o.id, top, {
    id = o.id, name = o.name, image = o.image.ref, image_id = o.image.id,
    created = now_iso(), status = "created", autoremove = o.autoremove or nil,
    command = o.command,
    runner = core.sys.getpid(), runner_start = M.start_time(core.sys.getpid()),
  })
end

-- cgroup_made(store, id, paths, [parents]): records the folders of its
-- cgroup (controller -> folder: `cgroups`; cgroup.create's `planned`,
-- before they are made) and then the parent folders made for it
-- (`cgroup_parents`, when there are any), so that a runner killed at any
-- moment leaves no cgroup that rm and reap do not find. This process is
-- its runner from then on (a detached container's monitor to be).
function M.cgroup_made(store, id, paths, parents)
  local st = store:read_state(id)
  st.cgroups = paths
  st.cgroup_parents = parents and #parents > 0 and parents or nil
  local me = core.sys.getpid()
  if st.runner ~= me then st.runner, st.runner_start = me, M.start_time(me) end
  store:write_state(id, st)
end

-- started(store, id, proc, [o]): records the running process; with
-- o.monitor, the caller is (about to exec) its monitor, its runner, and
-- o.restarts says how often the monitor restarted it.
function M.started(store, id, proc, o)
  local st = store:read_state(id)
  st.status, st.pid = "running", proc.pid
  st.pid_start = M.start_time(proc.pid)
  st.started = now_iso()
  st.exit_code, st.finished, st.OOMKilled = nil, nil, nil
  if o and o.monitor then
    local me = core.sys.getpid()
    st.runner, st.runner_start, st.monitor = me, M.start_time(me), true
    st.restarts = o.restarts
  end
  store:write_state(id, st)
end

-- exited(store, id, how, code, [info]): records how it ended; `info`:
-- oom_killed (the OOM killer killed in its cgroup: OOMKilled, as
-- Docker's state says), cgroup (still there: kept in the state for rm).
function M.exited(store, id, how, code, info)
  local st = store:read_state(id)
  st.status = "exited"
  st.exit_code = how == "signal" and 128 + code or code
  st.OOMKilled = info and info.oom_killed or false
  st.finished = now_iso()
  st.pid, st.pid_start = nil, nil
  if not (info and info.cgroup) then st.cgroups, st.cgroup_parents = nil, nil end
  store:write_state(id, st)
end

-- mark_stopping(store, id, [pending]): leaves the file `stopping` in the
-- container's folder before it is signalled: whoever would restart it
-- (its monitor's restart policy, luactr.runtime.monitor) reads it and
-- leaves it stopped. Final (empty) unless `pending`: then it names this
-- process ("PID START") and counts only while it lives, so that a `stop`
-- killed before it was done stops nothing; the stop makes it final once
-- done (an empty file also ends a restart's back-off at once,
-- luactr-monitor.c). `start` removes it.
function M.mark_stopping(store, id, pending)
  local text = ""
  if pending then
    local me = core.sys.getpid()
    text = ("%d %d\n"):format(me, M.start_time(me))
  end
  store:write_record(("mark container %s stopping"):format(id:sub(1, 12)),
    store:container_dir(id) .. "/stopping", text)
end

-- stopping(store, id) -> does its `stopping` marker stop it (see
-- mark_stopping)? One left by a stop that was killed does not.
function M.stopping(store, id)
  local text = core.fs.read(store:container_dir(id) .. "/stopping")
  if not text then return false end
  local pid, start = text:match("^(%d+) (%d+)")
  return not pid or M.start_time(tonumber(pid)) == tonumber(start)
end

-- damage(st) -> why a command cannot act on the container of state
-- `st` (its state file is damaged), or nil.
function M.damage(st)
  if st and st.damaged then
    return ("container %s: its state file is damaged (%s): remove it with rm -f")
      :format(st.id:sub(1, 12), st.damaged)
  end
end

-- remove(store, id, force): refuses a running container unless forced
-- (then kills it first). One whose runner was killed before it could say
-- it runs is running all the same when processes are in its cgroup (see
-- state); so is a damaged one.
function M.remove(store, id, force)
  local st = M.state(store, id)
  local busy = st and (st.status == "running" or st.status == "paused"
    or st.status == "restarting" or st.live)
  if busy and not force then
    fail("container %s is %s: stop it first or use rm -f", id:sub(1, 12),
      st.live and "damaged and running" or st.status)
  end
  -- its monitor must not start it again, and goes with it
  local monitor = st and st.monitor and runner_alive(st)
  if monitor then
    M.mark_stopping(store, id)
    -- forced, or its container is gone already: the monitor has nothing
    -- left to record (its container dies with it: the parent-death signal)
    core.sys.signal(st.runner, st.runner_start, 9)
  end
  if busy then
    if alive(st) then core.sys.signal(st.pid, st.pid_start, 9) end
    if st.cgroups then
      local cg = cgroup.open(st.cgroups)
      -- thawed first: v1 frozen processes die of SIGKILL only once they run
      if st.status == "paused" or st.damaged then cg:thaw() end
      cg:kill()  -- and all its processes
    end
    for _ = 1, 200 do
      if not alive(st) then break end
      core.sys.sleep(0.01)
    end
  end
  for _ = 1, 500 do
    if not (monitor and runner_alive(st)) then break end
    core.sys.sleep(0.01)
  end
  local rundir = require("luactr.runtime.monitor").run_dir(store, id)
  core.fs.unlink(rundir .. "/sock")
  core.fs.rmdir(rundir)
  -- a runner that was killed left the cgroup (its runner removes it)
  if st then
    local ok, err = remove_cgroup(st)
    if not ok then fail("remove container %s: %s", id:sub(1, 12), err) end
  end
  store:remove_container(id)
end

return M
