-- luactr.runtime.exec: a command in a running container (`luactr exec`).
--
-- The container's saved spec (containers/<id>/config.json, written as it
-- started) is the exec's spec too: its namespaces, capabilities, seccomp
-- profile, no_new_privs, environment, user and working directory. The
-- options replace the command, add to the environment and may change the
-- user, the working directory and the terminal. core.spawn runs it in
-- join mode: the process enters the namespaces of the container's PID 1
-- and the cgroup recorded in its state, and makes nothing new.
local core = require "luactr.core"
local check = require "luactr.check"
local errors = require "luactr.errors"
local state = require "luactr.runtime.state"

local M = {}

local options = check.record({
  container = check.string,
  cmd = check.array(check.string),
  env = check.either(check.array(check.string), check.map(check.string)),
  user = check.either(check.string, check.integer),
  workdir = check.string,
  tty = check.boolean,
  interactive = check.boolean,
  privileged = check.boolean,
}, { "container", "cmd" })

local function raise(status, fmt, ...)
  errors.raise(status, "exec: " .. fmt, ...)
end


-- The options' env as "KEY=VALUE" strings, a map's keys sorted.
local function env_list(env)
  if not env then return {} end
  if #env == 0 and next(env) then
    local keys, list = {}, {}
    for k in pairs(env) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do list[i] = k .. "=" .. env[k] end
    return list
  end
  for i, kv in ipairs(env) do
    if not kv:find("=", 1, true) then
      raise(errors.FAILED, "env[%d]: expected KEY=VALUE, got '%s'", i, kv)
    end
  end
  return env
end

-- The saved spec of container `id`, made into the exec's (luactr.spec
-- exec): what it needs of the host (the terminal's size, the user looked
-- up in the container's root) is found here.
local function exec_spec(store, id, o)
  local json = require "luactr.json"
  local text = core.fs.read(store:container_dir(id) .. "/config.json")
  if not text then raise(errors.FAILED, "container %s has no saved spec", o.container) end
  local saved = json.decode(text)
  if o.workdir and o.workdir:sub(1, 1) ~= "/" then
    raise(errors.FAILED, "workdir must be an absolute path, got '%s'", o.workdir)
  end
  local console_size
  if o.tty then
    local rows, cols = core.pty.size(0)
    if not rows then rows, cols = core.pty.size(1) end
    if rows and rows > 0 then console_size = { rows, cols } end
  end
  local user = o.user ~= nil
    and errors.within("exec", require("luactr.spec.users").resolve, saved.root.path, o.user)
    or nil
  return require("luactr.spec").exec(saved, { cmd = o.cmd, tty = o.tty,
    console_size = console_size, env = env_list(o.env), user = user,
    privileged = o.privileged, workdir = o.workdir })
end

-- The distinct cgroup folders of a container's state (controller ->
-- folder), sorted: what core.spawn joins.
local function cgroup_folders(st)
  local seen, list = {}, {}
  for _, dir in pairs(st.cgroups or {}) do
    if not seen[dir] then
      seen[dir], list[#list + 1] = true, dir
    end
  end
  table.sort(list)
  return list
end

-- exec(o) -> true|nil, "exit"|"signal", code
-- Runs o.cmd in the running container o.container (a name, full id or
-- unique id prefix) and waits for it. Options: env (an array of
-- "KEY=VALUE", or a map: on top of the container's), user ("name",
-- "uid", "name:group", "uid:gid"), workdir (absolute), tty, interactive,
-- privileged (every capability; the seccomp profile stays). A container
-- that is not running is an error (status 125); a command that cannot be
-- run is one with status 126 (127: not found), as luactr.run.
function M.exec(o)
  local msg = options(o, "exec")
  if msg then errors.raise(errors.FAILED, "%s", msg) end
  if #o.cmd == 0 then raise(errors.FAILED, "no command given") end
  local container = require "luactr.runtime.containers"
  local store = require("luactr.storage").open()
  local id = errors.within("exec", container.find, store, o.container)
  local function not_running()
    raise(errors.FAILED, "container %s is not running", o.container)
  end
  local st = state.read(store, id)
  if state.is_paused(st) then
    -- its process would join the frozen cgroup and freeze there
    raise(errors.FAILED, "container %s is paused: unpause it first", o.container)
  end
  if not state.is_running(st) or not st.pid then not_running() end
  local s = exec_spec(store, id, o)
  local proc, err, errno, step = core.spawn(s, {
    join = st.pid, join_start = st.pid_start,
    cgroups = cgroup_folders(st),
    stdin = (o.interactive or o.tty) and "inherit" or "null",
    forward_signals = true,
    seccomp_cache = require("luactr.spec.seccomp").cache_dir(),  -- its run's filter
  })
  if not proc then
    if step == "exec" then raise(errors.spawn(step, errno), "%s", err) end
    -- gone meanwhile (ESRCH from its pidfd, or a pid namespace that takes
    -- no new process once its PID 1 has ended)
    st = state.read(store, id)
    if not state.is_running(st) then not_running() end
    raise(errors.FAILED, "%s", err)
  end
  local how, code = proc:wait{ relay = o.tty, input = o.tty and o.interactive, raw = o.tty }
  proc:close()
  if not how then raise(errors.FAILED, "%s", code) end
  if how == "exit" and code == 0 then return true, how, code end
  return nil, how, code
end

return M
