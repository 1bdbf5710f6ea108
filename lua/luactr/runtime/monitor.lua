-- luactr.runtime.monitor: detached containers, and the native monitor each has.
--
-- The handoff (DESIGN.md): the CLI forks; the child spawns the container
-- (so the container is its child), records it running, and execs the
-- static luactr-monitor with the container's pidfd and stdio fds. exec
-- keeps children, so the monitor is the container's parent and waits for
-- it, while its memory is only its own few pages. The CLI waits for the
-- monitor's "ok" (its attach socket listens) and returns.
--
-- When the container ends the monitor records how (exit.json) and execs
-- Lua once more (`handle`), which holds every rule of what follows: the
-- restart policy and its back-off (restart_delay), the rest of the end
-- (OOM, cgroup, --rm). For a restart it records the decision (`ps` says
-- Restarting), execs the monitor's back-off form, which waits natively
-- (a stop that is done cuts it short) and hands back, and then starts the
-- container again in place: the process that restarts it execs a new
-- monitor, so a restarted container's monitor keeps its pid throughout.
local cgroup = require "luactr.runtime.cgroup"
local container = require "luactr.runtime.containers"
local state = require "luactr.runtime.state"
local core = require "luactr.core"
local errors = require "luactr.errors"
local ids = require "luactr.ids"
local paths = require "luactr.paths"

local M = {}

local fail, must = errors.fail, errors.must
local sys, fs = core.sys, core.fs

-- run_dir(store, id) -> the container's folder for its monitor's socket:
-- LUACTR_RUNROOT/<id>, else <LUACTR_ROOT>/run/<id> when LUACTR_ROOT is
-- set, else /run/luactr/<id>.
function M.run_dir(store, id)
  return paths.run_base(store.root) .. "/" .. id
end

-- socket(store, id) -> the path of the container's attach socket
function M.socket(store, id)
  return M.run_dir(store, id) .. "/sock"
end

local function program()
  return (core.path:gsub("[^/]*$", "monitor"))
end

-- of(pid) -> the pid of the monitor whose container's PID 1 is `pid`
-- (its parent, running luactr-monitor), or nil.
function M.of(pid)
  local status = fs.read("/proc/" .. pid .. "/status") or ""
  local parent = tonumber(status:match("\nPPid:%s*(%d+)"))
  local exe = parent and fs.readlink("/proc/" .. parent .. "/exe")
  if exe and exe == fs.realpath(program()) then return parent end
end

-- The interpreter this process runs in, for the monitor to exec Lua again.
local function interpreter()
  local exe = fs.readlink("/proc/self/exe")
  if exe and exe:match("/lua[%d.]*$") then return exe end
  return "/usr/bin/lua5.4"
end

-- The monitor runs in "/": the module paths it hands on are made whole.
local function absolute(paths)
  local cwd = fs.realpath(".") or "/"
  return (paths:gsub("[^;]+", function(p)
    if p:sub(1, 1) ~= "/" then return cwd .. "/" .. p end
  end))
end

-- What the monitor runs with `lua -e` once the container ended; the
-- module paths go in the environment (this process is about to become
-- the monitor: its environment is the monitor's own).
local function handler_code(id)
  sys.setenv("LUA_PATH_5_4", absolute(package.path))
  sys.setenv("LUA_CPATH_5_4", absolute(package.cpath))
  return ("require'luactr.runtime.monitor'.handle'%s'"):format(id)
end

local function closeall(list)
  for _, fd in pairs(list) do sys.close(fd) end
end

-- Spawns the container of state `st` (id, detached settings) from its
-- saved spec, records it running and execs the monitor: the process
-- calling this becomes the monitor, or exits. `ready` is the fd to say
-- "ok" or "STATUS message" on; `restarts` how often it was restarted.
local function become_monitor(store, st, ready, restarts)
  local id, d = st.id, st.detached
  local s = must("read config", store:read_config(id) or nil, "no config.json")
  store:mount_container(id)
  local layout, why = cgroup.detect()
  if not layout then fail("cgroup: %s", why) end
  local cg = cgroup.create(layout, id, s.linux.resources, { parent = st.cgroup_parent,
    planned = function(paths) container.cgroup_made(store, id, paths) end })
  if #cg.parents > 0 then container.cgroup_made(store, id, cg.paths, cg.parents) end
  local mine, theirs = {}, {}
  local stdio
  if not d.tty then
    if d.interactive then theirs.stdin, mine.stdin = must("pipe", sys.pipe()) end
    mine.stdout, theirs.stdout = must("pipe", sys.pipe())
    mine.stderr, theirs.stderr = must("pipe", sys.pipe())
    stdio = { theirs.stdin or -1, theirs.stdout, theirs.stderr }
  end
  -- (luactr.runtime.userns: with --userns=remap, the root's owners)
  local proc, err, errno, step = require("luactr.runtime.userns").spawn(s, {
    init = d.init,
    stdio = stdio,
    die_with_parent = true,
    cgroups = cg:folders(),
    seccomp_cache = require("luactr.spec.seccomp").cache_dir(),  -- as run's
    make_cwd = true,  -- as run's
  }, store:container_dir(id))
  closeall(theirs)
  if not proc then
    local status = errors.spawn(step, errno)
    cg:remove()
    container.exited(store, id, "exit", status)
    store:unmount_container(id)
    errors.raise(status, "%s", err)
  end
  container.started(store, id, proc, { monitor = true, restarts = restarts })
  local rundir = M.run_dir(store, id)
  must("mkdir " .. rundir, fs.mkdirs(rundir, 448))
  local args = {
    "luactr-monitor",
    "dir=" .. store:container_dir(id),
    "sock=" .. M.socket(store, id),
    "pidfd=" .. proc.pidfd,
    "lua=" .. interpreter(),
    "code=" .. handler_code(id),
    "log_max=" .. (d.log_max or 0),
    "log_files=" .. (d.log_files or 1),
    "wait_attach=" .. (d.wait_attach and restarts == 0 and 1 or 0),
  }
  local keep = { proc.pidfd }
  local function pass(key, fd)
    if fd then
      args[#args + 1] = key .. "=" .. fd
      keep[#keep + 1] = fd
    end
  end
  pass("out", mine.stdout)
  pass("err", mine.stderr)
  pass("in", mine.stdin)
  pass("master", proc.master)
  pass("ready", ready)
  local _, why2 = sys.exec(program(), args, keep)
  fail("exec monitor: %s", why2)
end

-- Says what failed on `ready` (for the CLI that waits), then ends this
-- process: it is a fork, or a monitor's successor, never the CLI.
local function die(ready, err)
  local status, msg = 125, tostring(err)
  if errors.is(err) then status, msg = err.status, err.message end
  if ready then sys.write(ready, status .. " " .. msg) end
  io.stderr:flush()
  sys.exit(status)
end

-- start(store, id) -> true | raises: starts a created or stopped
-- container detached (its state's `detached` settings, its saved spec),
-- returning once its monitor listens.
function M.start(store, id)
  local st = store:read_state(id)
  if container.damage(st) then fail("%s", container.damage(st)) end
  if not st or not st.detached then fail("container %s cannot be started", id:sub(1, 12)) end
  if not state.is_created(st) then
    -- the monitor of its last run records that run's end, and its
    -- cgroup goes with it: that is done before anything of this run is
    -- made (or it would take this run's cgroup for its own)
    for _ = 1, 500 do
      if not state.runner_alive(st) then break end
      sys.sleep(0.02)
    end
    if state.runner_alive(st) then
      fail("container %s is still ending its last run", id:sub(1, 12))
    end
    st = container.finish(store, id) or fail("no such container: %s", id)
    if st.backoff then  -- a start by hand starts the back-off afresh
      st.backoff = nil
      store:write_state(id, st)
    end
  end
  if #M.socket(store, id) >= 108 then
    fail("the run folder %s is too long for a socket", M.run_dir(store, id))
  end
  fs.unlink(store:container_dir(id) .. "/exit.json")
  fs.unlink(store:container_dir(id) .. "/stopping")
  local r, w = must("pipe", sys.pipe())
  -- twice: the monitor is nobody's child but init's (or the nearest
  -- subreaper's), so a Lua program that starts containers is left no
  -- zombie to reap
  local pid = must("fork", sys.fork())
  if pid == 0 then
    sys.close(r)
    local ok, err = pcall(function()
      must("setsid", sys.setsid())
      if must("fork", sys.fork()) ~= 0 then sys.exit(0) end
      become_monitor(store, st, w, 0)
    end)
    die(w, ok and "monitor: returned" or err)
  end
  sys.close(w)
  sys.waitpid(pid)
  local said = sys.read_all(r) or ""
  sys.close(r)
  if said == "ok\n" then return true end
  local status, msg = said:match("^(%d+) (.*)$")
  if not status then msg = said ~= "" and said or "the monitor did not start" end
  errors.raise(tonumber(status) or errors.FAILED, "%s", msg)
end

-- {====== restart policies ======

-- Docker's back-off: 100 ms before the first restart, doubling up to a
-- minute; a run that lasted 10 s starts it from 100 ms again.
local FIRST_DELAY, MAX_DELAY, STEADY_RUN = 100, 60000, 10000

-- restart_delay(st, status, ran) -> milliseconds | nil: whether the
-- detached container of state `st` (st.detached: restart, retries;
-- st.restarts: how often it was restarted; st.backoff: the last delay)
-- whose run ended with `status` after `ran` ms is started again, and
-- after how long; nil when it stays ended. Docker's policies: "no";
-- "always" and "unless-stopped" (the same here: there is no daemon that
-- restarts); "on-failure" for a status other than 0, with `retries`
-- restarts at most when it is not 0. A stop is not seen here (handle).
function M.restart_delay(st, status, ran)
  local d = st.detached or {}
  local policy = d.restart or "no"
  if policy == "no" then return nil end
  if policy == "on-failure" then
    local retries = d.retries or 0
    if status == 0 or (retries > 0 and (st.restarts or 0) >= retries) then return nil end
  end
  local last = math.type(st.backoff) == "integer" and st.backoff > 0 and st.backoff
  if not last or ran >= STEADY_RUN then return FIRST_DELAY end
  return math.min(last * 2, MAX_DELAY)
end

-- }======

-- {====== what follows the end ======

-- Takes the variable `name` out of the environment (the processes this
-- one starts are not to see it); its value.
local function take(name)
  local v = os.getenv(name)
  sys.setenv(name, nil)
  return v
end

local function write_exit(store, id, ex)
  store:write_record("write exit", store:container_dir(id) .. "/exit.json",
    require("luactr.json").encode(ex) .. "\n")
end

-- The record of the run that ended (exit.json, as state.exit_record
-- reads it) and how long the run lasted (ms). The monitor writes it
-- before it hands over, and passes the end in LUACTR_MONITOR_EXIT ("how
-- code ran") too: on a full store its write fails, and the end is
-- recorded here, from the store's reserve. Nil when it is not known.
local function last_run(store, id)
  local how, code, ran = (take("LUACTR_MONITOR_EXIT") or ""):match("^(%a+) (%d+) (%d+)$")
  ran = tonumber(ran) or 0
  local ex = state.exit_record(store, id)
  if ex or not how then return ex, ran end
  local st = store:read_state(id)
  if not st or st.damaged then return nil, ran end
  ex = { how = how, code = tonumber(code), finished = ids.now() }
  pcall(write_exit, store, id, ex)
  return ex, ran
end

-- Records in exit.json (its record `ex`) whether a restart is pending:
-- `ps` says Restarting while it is (luactr.runtime.state). Raises when it
-- cannot.
local function pending(store, id, ex, yes)
  ex.restarting = yes
  write_exit(store, id, ex)
end

-- Execs the monitor's back-off form (luactr-monitor.c): it waits `delay`
-- ms, or less once a stop is done, and runs `handle` again ("waited").
-- Returns only when it cannot.
local function back_off(store, id, delay)
  sys.exec(program(), {
    "luactr-monitor",
    "dir=" .. store:container_dir(id),
    "wait=" .. delay,
    "lua=" .. interpreter(),
    "code=" .. handler_code(id),
  }, {})
end

-- The container ended ("exited"): its restart policy decides. A restart
-- is recorded before the back-off (exit.json's `restarting`, for `ps`;
-- the delay, for the next one); a stop at work, or done, keeps it ended.
local function ended(store, id)
  local ex, ran = last_run(store, id)
  local st = store:read_state(id)
  local delay = ex and st and not st.damaged and st.detached
    and not container.stopping(store, id)
    and M.restart_delay(st, ex.how == "signal" and 128 + ex.code or ex.code, ran)
  if delay then
    st.backoff = delay
    ex.restarts = st.restarts or 0
    if pcall(store.write_state, store, id, st) and pcall(pending, store, id, ex, true) then
      back_off(store, id, delay)
      pcall(pending, store, id, ex, false)  -- it could not wait: it ends here
    end
  end
  container.finish(store, id)
  sys.exit(0)
end

-- The back-off is over ("waited"): started again, unless a stop came
-- meanwhile (or one at work has not finished), which wins.
local function waited(store, id)
  if container.stopping(store, id) then
    local ex = state.exit_record(store, id)
    if ex then pcall(pending, store, id, ex, false) end
    container.finish(store, id)
    sys.exit(0)
  end
  local st = container.finish(store, id, true)
  if not st or st.damaged then sys.exit(0) end
  st.restarts = (st.restarts or 0) + 1
  store:write_state(id, st)
  become_monitor(store, st, nil, st.restarts)
end

-- handle(id): run by the monitor's exec, once the container ended
-- (LUACTR_MONITOR_EVENT=exited) and after a back-off ("waited"); see
-- the top. Ends this process, or makes it the container's new monitor.
function M.handle(id)
  local event = take("LUACTR_MONITOR_EVENT")
  -- a store removed meanwhile is not made again: there is nothing left
  -- to record
  local ok, store = pcall(require("luactr.storage").open, { existing = true })
  if not ok then die(nil, store) end
  local err
  ok, err = pcall(event == "waited" and waited or ended, store, id)
  die(nil, ok and "monitor: returned" or err)
end

-- }======

return M
