-- luactr.runtime.containers: containers in the store, and the records
-- of what happens to them.
--
-- A container is a folder in the store: rootfs/ (a writable snapshot of
-- its image's top layer), config.json (the OCI spec it runs) and
-- state.json (status, pid, exit code, times). There is no daemon: the
-- process that runs a container records what happens to it here (create,
-- cgroup_made, started, exited, finish), through the transitions of
-- luactr.runtime.state, which also says what the record means now.
local cgroup = require "luactr.runtime.cgroup"
local core = require "luactr.core"
local errors = require "luactr.errors"
local ids = require "luactr.ids"
local json = require "luactr.json"
local state = require "luactr.runtime.state"

local M = {}

local fail = errors.fail


local alive, runner_alive = state.alive, state.runner_alive

-- finish(store, id, [restarting]) -> state | nil: records the end of a
-- detached container (run by its monitor's successor, see luactr.runtime.monitor,
-- and by anyone who finds its monitor gone): exit code, OOMKilled, its
-- cgroup removed, its root unmounted; a --rm container is removed unless
-- it is about to be restarted (`restarting`: then it is recorded so).
-- Nil when the container is gone.
function M.finish(store, id, restarting)
  local lock <close> = store:lock()
  local st = state.read(store, id)
  if not st then return nil end
  if st.damaged or state.is_running(st) then return st end
  if st.cgroups then
    local cg = cgroup.open(st.cgroups, st.cgroup_parents)
    st.OOMKilled = cg:oom_killed() or false
    if cg:empty() and cg:remove() then st.cgroups, st.cgroup_parents = nil, nil end
  end
  -- one about to be restarted says so until it runs again: not exited
  -- for a moment between two runs
  local to = restarting and state.RESTARTING or state.EXITED
  if st.status ~= to then state.set(st, to) end
  st.stale = nil
  st.pid, st.pid_start = nil, nil
  st.finished = st.finished or ids.now()
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
    local st = state.read(store, id)
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
    if not st.damaged and not state.is_running(st) and not runner_alive(st) then
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
    created = ids.now(), status = state.CREATED, autoremove = o.autoremove or nil,
    command = o.command,
    runner = core.sys.getpid(), runner_start = state.start_time(core.sys.getpid()),
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
  if st.runner ~= me then st.runner, st.runner_start = me, state.start_time(me) end
  store:write_state(id, st)
end

-- started(store, id, proc, [o]): records the running process; with
-- o.monitor, the caller is (about to exec) its monitor, its runner, and
-- o.restarts says how often the monitor restarted it.
function M.started(store, id, proc, o)
  local st = store:read_state(id)
  state.set(st, state.RUNNING)
  st.pid = proc.pid
  st.pid_start = state.start_time(proc.pid)
  st.started = ids.now()
  st.exit_code, st.finished, st.OOMKilled = nil, nil, nil
  if o and o.monitor then
    local me = core.sys.getpid()
    st.runner, st.runner_start, st.monitor = me, state.start_time(me), true
    st.restarts = o.restarts
  end
  store:write_state(id, st)
end

-- exited(store, id, how, code, [info]): records how it ended; `info`:
-- oom_killed (the OOM killer killed in its cgroup: OOMKilled, as
-- Docker's state says), cgroup (still there: kept in the state for rm).
function M.exited(store, id, how, code, info)
  local st = store:read_state(id)
  state.set(st, state.EXITED)
  st.exit_code = how == "signal" and 128 + code or code
  st.OOMKilled = info and info.oom_killed or false
  st.finished = ids.now()
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
    text = ("%d %d\n"):format(me, state.start_time(me))
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
  return not pid or state.start_time(tonumber(pid)) == tonumber(start)
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
  local st = state.read(store, id)
  local busy = st and (state.is_active(st) or st.live)
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
      if state.is_paused(st) or st.damaged then cg:thaw() end
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
