-- luactr.runtime.monitor: detached containers, and the native monitor each has.
--
-- The handoff (DESIGN.md): the CLI forks; the child spawns the container
-- (so the container is its child), records it running, and execs the
-- static luactr-monitor with the container's pidfd and stdio fds. exec
-- keeps children, so the monitor is the container's parent and waits for
-- it, while its memory is only its own few pages. The CLI waits for the
-- monitor's "ok" (its attach socket listens) and returns.
--
-- When the container ends the monitor records exit.json and execs Lua
-- once more (`handle`): to record the rest of the end (OOM, cgroup, --rm),
-- or to start the container again in place when its restart policy says
-- so — the process that restarts it execs a new monitor, so a restarted
-- container's monitor keeps its pid.
local cgroup = require "luactr.runtime.cgroup"
local container = require "luactr.runtime.containers"
local core = require "luactr.core"
local errors = require "luactr.errors"

local M = {}

local fail, must = errors.fail, errors.must
local sys, fs = core.sys, core.fs

-- run_dir(store, id) -> the container's folder for its monitor's socket:
-- LUACTR_RUNROOT/<id>, else <LUACTR_ROOT>/run/<id> when LUACTR_ROOT is
-- set, else /run/luactr/<id>.
function M.run_dir(store, id)
  return cgroup.run_base(store.root) .. "/" .. id
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
  if store.driver == "overlay" then store:mount_container(id) end
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
  require("luactr.spec.seccomp").use_cache()  -- as run's
  -- (luactr.runtime.userns: with --userns=remap, the root's owners)
  local proc, err, errno, step = require("luactr.runtime.userns").spawn(s, {
    init = d.init,
    stdio = stdio,
    die_with_parent = true,
    cgroups = cg:folders(),
    make_cwd = true,  -- as run's
  }, store:container_dir(id))
  closeall(theirs)
  if not proc then
    local status = errors.FAILED
    if step == "exec" then
      status = (errno == sys.errno.ENOENT or errno == sys.errno.ENOTDIR)
        and errors.NOT_FOUND or errors.CANNOT_EXEC
    end
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
    "restart=" .. (d.restart or "no"),
    "retries=" .. (d.retries or 0),
    "restarts=" .. restarts,
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
  if st.status ~= "created" then
    -- the monitor of its last run records that run's end, and its
    -- cgroup goes with it: that is done before anything of this run is
    -- made (or it would take this run's cgroup for its own)
    for _ = 1, 500 do
      if not container.runner_alive(st) then break end
      sys.sleep(0.02)
    end
    if container.runner_alive(st) then
      fail("container %s is still ending its last run", id:sub(1, 12))
    end
    st = container.finish(store, id) or fail("no such container: %s", id)
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

-- The monitor writes exit.json before it hands over, and passes the end
-- in LUACTR_MONITOR_EXIT ("how code") too: on a full store its write
-- fails, and the exit is recorded here, from the store's reserve.
local function record_exit(store, id, event)
  local how, code = (os.getenv("LUACTR_MONITOR_EXIT") or ""):match("^(%a+) (%d+)$")
  sys.setenv("LUACTR_MONITOR_EXIT", nil)
  if not how or container.exit_record(store, id) then return end
  local st = store:read_state(id)
  if not st or st.damaged then return end
  pcall(store.write_record, store, "write exit", store:container_dir(id) .. "/exit.json",
    require("luactr.json").encode({ how = how, code = tonumber(code),
      finished = os.date("!%Y-%m-%dT%H:%M:%SZ"), restarting = event == "restart",
      restarts = st.restarts or 0 }) .. "\n")
end

-- handle(id): run by the monitor's exec once the container ended (see
-- the top); LUACTR_MONITOR_EVENT says what to do.
function M.handle(id)
  local event = os.getenv("LUACTR_MONITOR_EVENT")
  local restarts = tonumber(os.getenv("LUACTR_MONITOR_RESTARTS")) or 0
  sys.setenv("LUACTR_MONITOR_EVENT", nil)
  sys.setenv("LUACTR_MONITOR_RESTARTS", nil)
  local store = require("luactr.storage").open()
  record_exit(store, id, event)
  -- a `stop` that came while the monitor handed over still wins
  if event == "restart" and container.stopping(store, id) then
    event = "exited"
  end
  local st = container.finish(store, id, event == "restart")
  if event ~= "restart" or not st or st.damaged then sys.exit(0) end
  st.restarts = restarts
  store:write_state(id, st)
  local ok, err = pcall(become_monitor, store, st, nil, restarts)
  die(nil, ok and "monitor: returned" or err)
end

return M
