-- luactr.runtime.state: the state machine of a container, the one place
-- that knows what a status means.
--
-- A container's record is its state.json (luactr.storage read_state and
-- write_state). Its status is one of
--
--   created     made (its root, its record), nothing of it runs yet
--   running     its PID 1 runs
--   paused      its PID 1 runs, frozen by the cgroup freezer
--   restarting  its PID 1 ended; its monitor starts it again after the
--               back-off of its restart policy
--   exited      its PID 1 ended, and how is recorded (or, `stale`, is
--               not known: its runner was killed first)
--   damaged     its state file cannot be read (luactr.storage): shown,
--               and removable with rm -f, nothing else
--
-- and it moves along these transitions only (set() refuses any other):
--
--   created    -> running (started), exited (it never ran)
--   running    -> paused, exited, restarting
--   paused     -> running, exited
--   restarting -> running, exited
--   exited     -> running (start), restarting
--
-- Stopping is no status of its own: a running container with a stop
-- marker (luactr.runtime.containers mark_stopping). Removing neither: the
-- store takes a container's folder away in one rename.
--
-- There is no daemon, so the file may lag behind what is true; read()
-- gives the state as it is now, and that is what a crash leaves:
--   * a running one whose PID 1 is gone has exited: the code its monitor
--     recorded (exit.json), "restarting" while that monitor waits to start
--     it again, or stale when nobody recorded the end;
--   * one whose cgroup holds processes runs, whatever its file says: its
--     runner was killed before it recorded them (the cgroup is recorded
--     before anything runs in it);
--   * a created one whose runner is gone, having made its cgroup, exited
--     (stale): it never ran;
--   * a restarting one whose monitor is gone exited: it was not run again;
--   * the freezer, not the file, says whether it is paused.
local cgroup = require "luactr.runtime.cgroup"
local core = require "luactr.core"
local json = require "luactr.json"

local M = {}

M.CREATED, M.RUNNING, M.PAUSED = "created", "running", "paused"
M.RESTARTING, M.EXITED, M.DAMAGED = "restarting", "exited", "damaged"

-- The transitions: from -> { to = true }.
M.TRANSITIONS = {
  created = { running = true, exited = true },
  running = { paused = true, exited = true, restarting = true },
  paused = { running = true, exited = true },
  restarting = { running = true, exited = true },
  exited = { running = true, restarting = true },
  damaged = {},
}

-- set(st, to): moves state `st` to status `to`; a transition that is not
-- in the machine is a bug of the caller, and raises.
function M.set(st, to)
  local from = st.status
  if from ~= to and not (M.TRANSITIONS[from] and M.TRANSITIONS[from][to]) then
    error(("container %s: no transition from %s to %s"):format(
      tostring(st.id):sub(1, 12), tostring(from), tostring(to)), 2)
  end
  st.status = to
end

-- {====== predicates: every verb asks these

-- Does its PID 1 run (paused or not): is there a process to signal?
function M.is_running(st)
  return st ~= nil and (st.status == M.RUNNING or st.status == M.PAUSED)
end

-- Is something of it going on: running, paused, or about to be
-- restarted? (What rm without -f refuses, what ps lists without -a.)
function M.is_active(st)
  return M.is_running(st) or (st ~= nil and st.status == M.RESTARTING)
end

function M.is_paused(st) return st ~= nil and st.status == M.PAUSED end
function M.is_created(st) return st ~= nil and st.status == M.CREATED end
function M.is_restarting(st) return st ~= nil and st.status == M.RESTARTING end
function M.is_exited(st) return st ~= nil and st.status == M.EXITED end
function M.is_damaged(st) return st ~= nil and st.damaged ~= nil end

-- }======

-- {====== the processes a state names

-- The start time of a process (clock ticks since boot, /proc/PID/stat
-- field 22): with the pid it names one process, whatever pids are
-- reused. nil when it is gone, or a zombie.
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

-- Is its PID 1 (pid and start time) alive?
function M.alive(st)
  return st.pid ~= nil and st.pid_start ~= nil and M.start_time(st.pid) == st.pid_start
end

-- Is the process that runs it (an attached `luactr run`, or the monitor
-- of a detached one and its Lua successor) there? That one records how
-- it ends.
function M.runner_alive(st)
  return st.runner ~= nil and st.runner_start ~= nil
    and M.start_time(st.runner) == st.runner_start
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
  if M.alive(st) then return end
  local pid = pid_one(procs)
  if pid then
    st.pid, st.pid_start = pid, M.start_time(pid)
    st.started = st.started or st.created
  end
end

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
    if st.pid and not M.runner_alive(st) then
      local monitor = require("luactr.runtime.monitor").of(st.pid)
      if monitor then
        st.runner, st.runner_start, st.monitor = monitor, M.start_time(monitor), true
      end
    end
  end
  return st
end

-- }======

-- read(store, id) -> the state of container `id` as it is now (see the
-- top), or nil when there is no such container. Never writes.
function M.read(store, id)
  local st = store:read_state(id)
  if not st then return nil end
  if st.damaged then return salvage(store, st) end
  local running = M.is_running(st)
  -- not recorded running, and its cgroup holds processes (one that is
  -- recorded, with its PID 1 gone, has ended: the kernel ends the rest of
  -- its pid namespace). The common cases cost nothing: running, or no
  -- cgroup.
  local procs = not running and st.cgroups and cgroup_procs(st)
  if procs and #procs > 0 then
    st.status = M.RUNNING
    adopt(st, procs)
  elseif running and not M.alive(st) then
    local ex = st.monitor and M.exit_record(store, id)
    if (not ex or ex.restarting == nil) and M.runner_alive(st)
       and st.runner ~= core.sys.getpid() then
      -- its PID 1 has ended and the process that records the end (its
      -- monitor, which drains its output first and then decides on a
      -- restart, or the attached `luactr run`) is at it: until that is
      -- done, it has not exited yet
      return st
    end
    st.status = M.EXITED
    if ex then
      st.exit_code = ex.how == "signal" and 128 + ex.code or ex.code
      st.finished = ex.finished
      if ex.restarting and M.runner_alive(st) then st.status = M.RESTARTING end
    else
      st.stale = true
      store:unmount_container(id)  -- an overlay root outlives a killed runner
    end
  elseif M.is_created(st) and st.cgroups and not M.runner_alive(st) then
    st.status, st.stale = M.EXITED, true
  elseif M.is_restarting(st) and not M.runner_alive(st) then
    st.status = M.EXITED  -- its monitor was killed before it ran it again
  end
  if st.status == M.RUNNING and st.cgroups and st.cgroups.freezer
     and cgroup.frozen(st.cgroups.freezer) then
    st.status = M.PAUSED
  end
  return st
end

-- oci(st, bundle) -> the state in the OCI runtime's `state` shape:
-- ociVersion, id, status (creating, created, running, stopped; paused
-- as runc has it), pid, bundle, annotations.
function M.oci(st, bundle)
  local status = ({ created = "created", running = "running", paused = "paused",
    restarting = "stopped", exited = "stopped" })[st.status] or "stopped"
  return {
    ociVersion = "1.0.2", id = st.id, status = status,
    pid = M.is_running(st) and st.pid or 0,
    bundle = bundle, annotations = {},
  }
end

return M
