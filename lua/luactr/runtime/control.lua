-- luactr.runtime.control: what is done to containers that exist — stop, kill,
-- pause and unpause, wait, top, inspect, and the list of them.
--
-- Every function works from the container's state file (pid, pid_start,
-- status, cgroups) and its cgroup alone, never from who started it: the
-- container may be the child of an attached `luactr run` or of a
-- detached monitor, and either records its exit in the state. A
-- container is named by its name, its full id or a unique id prefix.
-- Failures raise luactr errors whose message begins with the verb
-- ("stop: no such container: web").
local cgroup = require "luactr.runtime.cgroup"
local container = require "luactr.runtime.containers"
local core = require "luactr.core"
local errors = require "luactr.errors"
local json = require "luactr.json"
local state = require "luactr.runtime.state"
local units = require "luactr.units"

local M = {}

local signals = core.sys.signals
local sleep, monotonic = core.sys.sleep, core.sys.monotonic

-- How long to wait for a container to die after SIGKILL, and for its
-- runner or monitor to record the exit once its process is gone.
local KILL_WAIT, RECORD_WAIT = 10, 10

local function fail(verb, fmt, ...)
  errors.fail("%s: " .. fmt, verb, ...)
end

local function open_store()
  return require("luactr.storage").open()
end

-- find(verb, what) -> store, id: raises "verb: no such container: what".
local function find(verb, what)
  local s = open_store()
  return s, errors.within(verb, container.find, s, what)
end

local function signal_or_fail(verb, v)
  local n = units.signal(v)
  if not n then fail(verb, "invalid signal: %s", tostring(v)) end
  return n
end

local alive, running, recorder_alive = state.alive, state.is_running, state.runner_alive

-- Sends `sig` to the container's PID 1, the process its state names
-- (pid and start time: a pid reused since is not hit). False when it has
-- ended already.
local function send(verb, st, sig)
  if not alive(st) then return false end
  local ok, err, errno = core.sys.signal(st.pid, st.pid_start, sig)
  if not ok and errno ~= core.sys.errno.ESRCH then
    fail(verb, "container %s: %s", st.id:sub(1, 12), err)
  end
  return ok or false
end

-- Waits up to `timeout` seconds (nil: for ever) for PID 1 to end.
local function ended(st, timeout)
  local deadline = timeout and timeout >= 0 and monotonic() + timeout
  while alive(st) do
    if deadline and monotonic() >= deadline then return false end
    sleep(0.02)
  end
  return true
end

-- Once PID 1 has ended: the state as its runner or monitor records it
-- (waiting for that one while it lives), or as a stale state reads. nil
-- when the container is gone (run --rm). A monitor's exit record
-- (state.exit_record, when there is one) is as good as the state.
local function recorded(s, id, st)
  local deadline = monotonic() + RECORD_WAIT
  local now = M.state(s, id)
  -- running, with its PID 1 gone: its recorder is at it (state.read)
  while now and running(now) and now.pid == st.pid and monotonic() < deadline do
    sleep(0.01)
    now = M.state(s, id)
  end
  return now
end

-- The container's cgroup, from its state; nil when it has none.
local function cgroup_of(st)
  return st.cgroups and cgroup.open(st.cgroups, st.cgroup_parents)
end

-- SIGKILL, Docker's way: to PID 1 (the kernel ends the rest of its pid
-- namespace), then thawed when paused (a frozen process dies only when
-- it runs again), then to whatever is left in its cgroup.
local function kill_hard(verb, st)
  send(verb, st, signals.KILL)
  local cg = cgroup_of(st)
  if cg then
    if st.paused then cg:thaw() end
    cg:kill()
  end
end

-- state(store, id) -> the container's state (luactr.runtime.state read:
-- status "paused" while its freezer holds it), with `paused` as a boolean.
function M.state(s, id)
  local st = state.read(s, id)
  if st then st.paused = state.is_paused(st) end
  return st
end

-- The state of a container that `verb` acts on: not a damaged one (rm
-- -f removes that).
local function sound_state(verb, s, id)
  local st = M.state(s, id)
  local why = container.damage(st)
  if why then fail(verb, "%s", why) end
  return st
end

-- The stop signal set for the container: the one recorded in its state,
-- else its image's StopSignal; nil when none is (SIGTERM then).
local function stop_signal(s, st)
  local v = st.stop_signal
  if not v and st.image_id then
    local ok, img = pcall(s.image, s, st.image_id)
    v = ok and img and img.config and img.config.StopSignal
  end
  return v and units.signal(v)
end

-- stop(what, [{ timeout=, signal= }]) -> state
-- Marks it stopping (a restart policy leaves it stopped), sends the stop
-- signal (its image's, or SIGTERM), waits `timeout` seconds (10; a
-- negative one: for ever) and then kills it. Returns its state once its
-- exit is recorded. A container that is not running is left as it is.
function M.stop(what, o)
  o = o or {}
  local timeout = o.timeout or 10
  if math.type(timeout) == nil then fail("stop", "timeout: expected a number") end
  local s, id = find("stop", what)
  -- pending while this stop works: if it is killed, it stops nothing
  container.mark_stopping(s, id, true)
  local st = sound_state("stop", s, id)
  if running(st) then
    local sig = o.signal and signal_or_fail("stop", o.signal) or stop_signal(s, st)
      or signals.TERM
    send("stop", st, sig)
    if not ended(st, timeout) then
      kill_hard("stop", st)
      if not ended(st, KILL_WAIT) then
        fail("stop", "container %s did not die after SIGKILL", id:sub(1, 12))
      end
    end
    st = recorded(s, id, st) or st
  end
  -- done: it stays stopped (unless it is gone, with --rm)
  local ok, err = pcall(container.mark_stopping, s, id)
  if not ok and core.fs.stat(s:container_dir(id)) then
    fail("stop", "%s", errors.is(err) and err.message or tostring(err))
  end
  return st
end

-- kill(what, [signal]) -> state
-- Sends `signal` (a name or number; SIGKILL by default) to its PID 1;
-- after SIGKILL, waits for it to die and for its exit to be recorded.
-- Docker's rule for restart policies: SIGKILL, its stop signal, or any
-- signal when it has none set marks it stopping (it is not restarted)
-- and thaws it when paused; another signal (SIGUSR1 to a container whose
-- stop signal is SIGQUIT) leaves both as they are.
function M.kill(what, signal)
  local sig = signal_or_fail("kill", signal or "KILL")
  local s, id = find("kill", what)
  local st = sound_state("kill", s, id)
  if not running(st) then fail("kill", "container %s is not running", what) end
  local set = stop_signal(s, st)
  local final = sig == signals.KILL or not set or sig == set
  if final then container.mark_stopping(s, id) end
  if sig ~= signals.KILL then
    send("kill", st, sig)
    local cg = final and st.paused and cgroup_of(st)
    if cg then cg:thaw() end
    return M.state(s, id)
  end
  kill_hard("kill", st)
  if not ended(st, KILL_WAIT) then
    fail("kill", "container %s did not die after SIGKILL", id:sub(1, 12))
  end
  return recorded(s, id, st) or st
end

-- pause(what) / unpause(what): its cgroup freezer (v1 freezer.state,
-- v2 cgroup.freeze), waiting for the kernel to say it is done.
local function freezer(verb, what, want_paused)
  local s, id = find(verb, what)
  local st = sound_state(verb, s, id)
  if not running(st) then fail(verb, "container %s is not running", what) end
  if want_paused and st.paused then fail(verb, "container %s is already paused", what) end
  if not want_paused and not st.paused then fail(verb, "container %s is not paused", what) end
  local cg = cgroup_of(st)
  if not (cg and cg.paths.freezer) then
    fail(verb, "container %s has no freezer cgroup", what)
  end
  local ok, err
  if want_paused then ok, err = cg:freeze() else ok, err = cg:thaw() end
  if not ok then
    if want_paused then cg:thaw() end  -- never left half frozen
    fail(verb, "%s", err)
  end
  return M.state(s, id)
end

function M.pause(what) return freezer("pause", what, true) end
function M.unpause(what) return freezer("unpause", what, false) end

-- wait(what) -> exit code | nil
-- Blocks until the container has exited (one being started: until it
-- has started and exited); its exit code, nil when none was recorded
-- (its runner died, or it was removed with --rm).
function M.wait(what)
  local s, id = find("wait", what)
  local st = sound_state("wait", s, id)
  while state.is_created(st) and recorder_alive(st) do
    sleep(0.02)
    st = M.state(s, id)
  end
  -- "stale" while its runner lives: it ended a moment ago, and the
  -- runner is about to record how
  if st and (running(st) or (st.stale and recorder_alive(st))) then
    ended(st, nil)
    st = recorded(s, id, st)
  end
  return st and not st.stale and st.exit_code or nil
end

-- The pids of the processes in a container's cgroup, as a set.
local function pids_of(st)
  local set = {}
  local cg = cgroup_of(st)
  for _, dir in ipairs(cg and cg:folders() or {}) do
    for _, pid in ipairs(core.cgroup.procs(dir) or {}) do set[pid] = true end
  end
  return set
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- top(what, [ps arguments]) -> { titles = { ... }, processes = { { ... } } }
-- Its processes, as `docker top` shows them: the host's ps (with
-- `args`, "-ef" by default) cut down to the rows of the pids in its
-- cgroup; the last column holds the rest of each line (the command).
function M.top(what, args)
  local s, id = find("top", what)
  local st = sound_state("top", s, id)
  if not running(st) then fail("top", "container %s is not running", what) end
  args = (args and #args > 0) and args or { "-ef" }
  local words = {}
  for i, a in ipairs(args) do words[i] = quote(a) end
  -- ps in an environment of its own: PS_FORMAT or PS_PERSONALITY in ours
  -- would change its columns, and a preloaded library is no business of it
  local p = io.popen(("env -i PATH=%s LC_ALL=C ps %s 2>&1"):format(
    quote(os.getenv("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"), table.concat(words, " ")))
  local text = p:read("a")
  local ok = p:close()
  if not ok then fail("top", "ps %s: %s", table.concat(args, " "), (text:gsub("\n+$", ""))) end
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  local titles = {}
  for w in (lines[1] or ""):gmatch("%S+") do titles[#titles + 1] = w end
  local at
  for i, t in ipairs(titles) do
    if t == "PID" then at = i end
  end
  if not at then fail("top", "no PID column in the output of ps %s", table.concat(args, " ")) end
  local pids = pids_of(st)
  local processes = {}
  for i = 2, #lines do
    local fields = {}
    for w in lines[i]:gmatch("%S+") do fields[#fields + 1] = w end
    if pids[math.tointeger(tonumber(fields[at]))] then
      local row = table.move(fields, 1, #titles - 1, 1, {})
      row[#titles] = table.concat(fields, " ", #titles)
      processes[#processes + 1] = row
    end
  end
  return { titles = titles, processes = processes }
end

local ZERO_TIME = "0001-01-01T00:00:00Z"

-- The user of a spec's process, as Docker's Config.User writes it.
local function user_of(process)
  local u = process and process.user
  if not u or (u.uid == 0 and u.gid == 0) then return "" end
  return ("%d:%d"):format(u.uid, u.gid)
end

-- describe(store, id) -> the container as `docker inspect` shows one:
-- Docker's field names, from its state and its saved OCI spec; and
-- luactr's own: Cgroups (controller -> folder, while it has a cgroup)
-- and Spec (the OCI runtime spec it runs, its config.json).
function M.describe(s, id)
  local st = M.state(s, id)
  if not st then errors.fail("no such container: %s", id) end
  local text = core.fs.read(s:container_dir(id) .. "/config.json")
  local spec = text and json.decode(text) or {}
  local process = spec.process or {}
  local argv = process.args or {}
  local graph = s:graph_data(id)
  return {
    Id = id,
    Name = st.name and "/" .. st.name or "",
    Created = st.created or ZERO_TIME,
    Path = argv[1] or "",
    Args = json.array(table.move(argv, 2, #argv, 1, {})),
    Image = st.image_id and "sha256:" .. st.image_id or "",
    State = {
      Status = st.status, Running = running(st), Paused = st.paused,
      Restarting = false, OOMKilled = st.OOMKilled or false, Dead = false,
      Pid = running(st) and st.pid or 0,
      ExitCode = st.exit_code or 0,
      Error = st.damaged and ("its state file is damaged: " .. st.damaged)
        or st.stale and "its runner ended before it could record the exit" or "",
      StartedAt = st.started or ZERO_TIME,
      FinishedAt = st.finished or ZERO_TIME,
    },
    Config = {
      Hostname = spec.hostname or "",
      User = user_of(spec.process),
      Env = json.array(process.env or {}),
      Cmd = json.array(argv),
      Image = st.image or "",
      WorkingDir = process.cwd or "",
      Tty = process.terminal or false,
    },
    Driver = s.driver,
    GraphDriver = { Name = s.driver, Data = graph },
    Cgroups = st.cgroups,
    Spec = text and spec or nil,
    Platform = "linux",
  }
end

-- inspect(what, [{ type = "container" | "image" }]) -> a container as
-- `docker inspect` shows one (see describe), or an image (its OCI image
-- config with .ref and .id): containers first, then images, as Docker
-- looks them up; `type` looks for one kind only.
function M.inspect(what, o)
  local kind = o and o.type
  if kind ~= nil and kind ~= "container" and kind ~= "image" then
    fail("inspect", "type: expected container or image, got %s", errors.quote(kind, "'"))
  end
  local s = open_store()
  if kind ~= "image" then
    local ok, id = pcall(container.find, s, what)
    if ok then return M.describe(s, id) end
    if not errors.is(id) then error(id, 0) end
    if kind == "container" or id.message:find("ambiguous", 1, true) then
      fail("inspect", "%s", id.message)
    end
  end
  local img = s:image(what)
  if img then return img end
  fail("inspect", "no such %s: %s", kind == "image" and "image" or "image or container",
    errors.quote(what))
end

-- containers() -> the states of every container of the default store,
-- once what killed runs left is cleaned (containers reap), as `ps` shows
-- them, newest first, with `paused`.
function M.containers()
  local list = container.reap(open_store())
  for _, st in ipairs(list) do st.paused = state.is_paused(st) end
  return list
end

-- {====== removing, logs and stats

-- rm(container, [{ force= }])
function M.rm(what, o)
  local store = open_store()
  container.remove(store, container.find(store, what), o and o.force)
end

-- logs(container, [{ tail=, since=, timestamps=, follow=, each= }]) ->
-- list of { time=, stream=, log= }; with o.each(record), each record
-- goes there as it comes instead (and o.follow waits for more while the
-- container runs).
function M.logs(what, o)
  local store = open_store()
  return require("luactr.runtime.logs").read(store, container.find(store, what), o or {})
end

-- stats(container, [previous]) -> { id=, name=, running=, cpu_percent=,
-- memory_usage=, memory_limit=, memory_percent=, pids=, block_read=,
-- block_write=, sample= }
-- What a container (name, id or id prefix) uses now, from its cgroup;
-- the CPU % is over the time since `previous` (an earlier result for the
-- same container), and nil without one. Sizes in bytes.
function M.stats(what, previous)
  local store = open_store()
  local id = container.find(store, what)
  local st = state.read(store, id)
  local r = { id = id, name = st.name, running = state.is_running(st) }
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

-- }======

return M
