-- luactr.container: containers made from images, and their state on disk.
--
-- A container is a folder in the store: rootfs/ (a writable snapshot of
-- its image's top layer), config.json (the OCI spec it runs) and
-- state.json (status, pid, exit code, times). There is no daemon: the
-- process that runs a container writes its state; any later command reads
-- it, and a "running" container whose process is gone is reported as
-- exited (its runner was killed) — and removed, when it was started with
-- --rm.
local cgroup = require "luactr.cgroup"
local core = require "luactr.core"
local errors = require "luactr.errors"

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

-- state(store, id) -> state table, stale "running" fixed to "exited".
function M.state(store, id)
  local st = store:read_state(id)
  if not st then return nil end
  if st.status == "running" and not alive(st) then
    st.status = "exited"
    st.stale = true
    store:unmount_container(id)  -- an overlay root outlives a killed runner
  end
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
-- is left alone. Then sweeps the empty luactr-* cgroups of runs that left
-- no state (--rootfs runs) beneath luactr's own (see cgroup.sweep).
function M.reap(store)
  for _, st in ipairs(M.list(store)) do
    local runner_alive = st.runner and st.runner_start
      and M.start_time(st.runner) == st.runner_start
    if st.status ~= "running" and not runner_alive then
      -- never killing here: processes in it make it a container that runs
      if st.cgroups and cgroup.open(st.cgroups):empty() and remove_cgroup(st) then
        st.cgroups, st.cgroup_parents = nil, nil
        store:write_state(st.id, st)
      end
      if st.autoremove then store:remove_container(st.id) end
    end
  end
  local layout = cgroup.detect()
  if layout then cgroup.sweep(layout) end
end

-- find(store, what) -> id: by name, full id or unique id prefix.
function M.find(store, what)
  local found
  for _, id in ipairs(store:containers()) do
    local st = store:read_state(id)
    if st and st.name == what then return id end
    if id:sub(1, #what) == what then
      if found then fail("container id prefix '%s' is ambiguous", what) end
      found = id
    end
  end
  if not found then fail("no such container: %s", what) end
  return found
end

-- create(store, o) -> id, rootfs
-- o: id, name, image (config with .ref, .id, .luactr.top), autoremove.
function M.create(store, o)
  -- under the store's lock, so that two runs cannot take the same name
  local lock <close> = store:lock()
  if o.name then
    if not o.name:match("^[%w][%w_.%-]*$") then fail("invalid container name '%s'", o.name) end
    for _, id in ipairs(store:containers()) do
      local st = store:read_state(id)
      if st and st.name == o.name then
        fail("the name '%s' is in use by container %s", o.name, id:sub(1, 12))
      end
    end
  end
  -- the container appears with its state (and name) at once
  return store:new_container(o.id, o.image.luactr and o.image.luactr.top, {
    id = o.id, name = o.name, image = o.image.ref, image_id = o.image.id,
    created = now_iso(), status = "created", autoremove = o.autoremove or nil,
    command = o.command,
    runner = core.sys.getpid(), runner_start = M.start_time(core.sys.getpid()),
  })
end

-- cgroup_made(store, id, cgroup): records the folders of its cgroup
-- (controller -> folder: `cgroups`, and the parent folders made for it:
-- `cgroup_parents`) before anything runs in it, so that a runner killed
-- at any moment leaves a cgroup that rm finds.
function M.cgroup_made(store, id, cg)
  local st = store:read_state(id)
  st.cgroups = cg.paths
  st.cgroup_parents = #cg.parents > 0 and cg.parents or nil
  store:write_state(id, st)
end

-- started(store, id, proc): records the running process.
function M.started(store, id, proc)
  local st = store:read_state(id)
  st.status, st.pid = "running", proc.pid
  st.pid_start = M.start_time(proc.pid)
  st.started = now_iso()
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

-- remove(store, id, force): refuses a running container unless forced
-- (then kills it first). One whose runner was killed before it could say
-- it runs is running all the same when processes are in its cgroup.
function M.remove(store, id, force)
  local st = M.state(store, id)
  if st and st.status ~= "running" and st.cgroups
     and not cgroup.open(st.cgroups):empty() then
    st.status = "running"
  end
  if st and st.status == "running" then
    if not force then
      fail("container %s is running: stop it first or use rm -f", id:sub(1, 12))
    end
    if st.pid then core.sys.kill(st.pid, 9) end
    if st.cgroups then cgroup.open(st.cgroups):kill() end  -- and all its processes
    for _ = 1, 200 do
      if not alive(st) then break end
      core.sys.sleep(0.01)
    end
  end
  -- a runner that was killed left the cgroup (its runner removes it)
  if st then
    local ok, err = remove_cgroup(st)
    if not ok then fail("remove container %s: %s", id:sub(1, 12), err) end
  end
  store:remove_container(id)
end

return M
