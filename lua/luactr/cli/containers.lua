-- luactr.cli.containers: the verbs of containers that exist: ps,
-- inspect, start, restart, logs, attach, rm, stop, kill, pause, unpause,
-- wait, top, stats.
local errors = require "luactr.errors"
local flags = require "luactr.cli.flags"
local output = require "luactr.cli.output"
local state = require "luactr.runtime.state"

local M = {}

local fail, out, columns, ago = errors.fail, output.out, output.columns, output.ago
local each, usage_or_names = output.each, output.usage_or_names

local function api() return require "luactr" end

local INSPECT_USAGE = [[
Usage: luactr inspect [OPTIONS] NAME|ID...

Show images and containers as a JSON array: an image as its OCI image
config, a container in the shape of docker inspect's (Id, Name, State,
Config, GraphDriver, ...). A name is looked up among the containers first.

Options:
      --type TYPE   only look for a "container" or an "image"
      --help        print this help
]]

function M.inspect(args)
  local o, rest = flags.parse("inspect", { type = { arg = true }, help = {} }, args)
  if o.help then
    io.stdout:write(INSPECT_USAGE)
    return 0
  end
  if #rest == 0 then fail("inspect: give an image or a container") end
  local json = require "luactr.json"
  local list = json.array()
  for _, what in ipairs(rest) do list[#list + 1] = api().inspect(what, { type = o.type }) end
  io.stdout:write(json.encode(list, true), "\n")
  return 0
end

local PS_USAGE = [[
Usage: luactr ps [OPTIONS]

List the running containers (all of them with -a).

Options:
  -a, --all            every container, stopped ones too
  -q, --quiet          only their ids
      --format FORMAT  "table" (the default), or "json": one JSON object
                       a line, with docker ps's keys
      --help           print this help
]]

-- What ps says of a container's status, Docker's words.
local function status_of(st)
  if state.is_running(st) then
    return ("Up " .. ago(st.started):gsub(" ago$", "")) .. (state.is_paused(st) and " (Paused)" or "")
  elseif st.damaged then
    return "Damaged"
  elseif state.is_created(st) then
    return "Created"
  elseif state.is_restarting(st) then
    return ("Restarting (%s) %s"):format(st.exit_code, ago(st.finished))
  elseif st.stale then
    return "Exited (unknown)"
  end
  return ("Exited (%s) %s"):format(st.exit_code, ago(st.finished))
end

function M.ps(args)
  local o = flags.parse("ps", { all = { short = "a" }, quiet = { short = "q" },
    format = { arg = true }, help = {} }, args)
  if o.help then
    io.stdout:write(PS_USAGE)
    return 0
  end
  local format = o.format or "table"
  if format ~= "table" and format ~= "json" then
    fail("ps: --format: expected table or json, got '%s'", format)
  end
  local rows = { { "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES" } }
  for _, st in ipairs(api().containers()) do
    if o.all or state.is_active(st) then
      local status = status_of(st)
      if o.quiet then
        out("%s\n", st.id:sub(1, 12))
      elseif format == "json" then
        local json = require "luactr.json"
        io.stdout:write(json.encode({ ID = st.id:sub(1, 12), Image = st.image or "",
          Command = '"' .. (st.command or "") .. '"', CreatedAt = st.created or "",
          RunningFor = ago(st.created), State = st.status,
          Status = status, Names = st.name or "" }), "\n")
      else
        local cmd = st.command or ""
        if #cmd > 30 then cmd = cmd:sub(1, 27) .. "..." end
        rows[#rows + 1] = { st.id:sub(1, 12), st.image or "", '"' .. cmd .. '"',
          ago(st.created), status, st.name or "" }
      end
    end
  end
  if not o.quiet and format == "table" then columns(rows) end
  return 0
end

function M.start(args)
  local o, rest = flags.parse("start", { attach = { short = "a" },
    ["detach-keys"] = { arg = true, key = "detach_keys" } }, args)
  if #rest == 0 then fail("start: give a container") end
  for _, what in ipairs(rest) do
    api().start(what)
    if o.attach then
      local how, code = api().attach(what, { detach_keys = o.detach_keys })
      return how == "exit" and code or 0
    end
    out("%s\n", what)
  end
  return 0
end

function M.restart(args)
  local o, rest = flags.parse("restart", { time = { short = "t", arg = true, integer = true } }, args)
  if #rest == 0 then fail("restart: give a container") end
  for _, what in ipairs(rest) do
    api().stop(what, { timeout = o.time })
    api().start(what)
    out("%s\n", what)
  end
  return 0
end

function M.logs(args)
  local o, rest = flags.parse("logs", { follow = { short = "f" }, tail = { short = "n", arg = true },
    since = { arg = true }, timestamps = { short = "t" } }, args)
  if #rest ~= 1 then fail("logs: give one container") end
  local tail = o.tail ~= "all" and flags.integer(o.tail, "--tail", "logs") or nil
  api().logs(rest[1], { follow = o.follow, tail = tail, since = o.since,
    each = function(rec)
      local f = rec.stream == "stderr" and io.stderr or io.stdout
      if o.timestamps then f:write(rec.time, " ") end
      f:write(rec.log)
      f:flush()
    end })
  return 0
end

function M.attach(args)
  local o, rest = flags.parse("attach", { ["no-stdin"] = { key = "no_stdin" },
    ["detach-keys"] = { arg = true, key = "detach_keys" } }, args)
  if #rest ~= 1 then fail("attach: give one container") end
  local how, code = api().attach(rest[1], { input = not o.no_stdin, detach_keys = o.detach_keys })
  if how == "detached" then return 0 end
  return code
end

function M.rm(args)
  local o, rest = flags.parse("rm", { force = { short = "f" } }, args)
  if #rest == 0 then fail("rm: give a container") end
  for _, what in ipairs(rest) do
    api().rm(what, { force = o.force })
    out("%s\n", what)
  end
  return 0
end

local STOP_USAGE = [[
Usage: luactr stop [OPTIONS] CONTAINER...

Stop running containers: send each its stop signal (its image's
StopSignal, SIGTERM by default), then SIGKILL when it has not exited
after the grace period. A container that is not running is left as it is.

Options:
  -t, --timeout SECONDS  the grace period (10; -1: wait for ever)
  -s, --signal SIGNAL    send SIGNAL instead of the stop signal
      --help             print this help
]]

function M.stop(args)
  local o, rest = flags.parse("stop", { timeout = { short = "t", arg = true },
    time = { arg = true, key = "timeout" }, signal = { short = "s", arg = true },
    help = {} }, args)
  if usage_or_names("stop", o, rest, STOP_USAGE) then return 0 end
  local timeout = o.timeout and math.tointeger(tonumber(o.timeout))
  if o.timeout and not timeout then
    fail("stop: --timeout: expected whole seconds, got '%s'", o.timeout)
  end
  return each(rest, function(what)
    api().stop(what, { timeout = timeout, signal = o.signal })
  end)
end

local KILL_USAGE = [[
Usage: luactr kill [OPTIONS] CONTAINER...

Send a signal to the main process (PID 1) of running containers.

Options:
  -s, --signal SIGNAL  a name (KILL, SIGUSR1, usr1) or a number (10);
                       KILL by default
      --help           print this help
]]

function M.kill(args)
  local o, rest = flags.parse("kill", { signal = { short = "s", arg = true }, help = {} }, args)
  if usage_or_names("kill", o, rest, KILL_USAGE) then return 0 end
  if not require("luactr.units").signal(o.signal or "KILL") then
    fail("kill: invalid signal: %s", o.signal)
  end
  return each(rest, function(what) api().kill(what, o.signal) end)
end

local PAUSE_USAGE = [[
Usage: luactr %s CONTAINER...

%s every process of containers (the cgroup freezer).
]]

function M.pause(args)
  local o, rest = flags.parse("pause", { help = {} }, args)
  if usage_or_names("pause", o, rest, PAUSE_USAGE:format("pause", "Freeze")) then return 0 end
  return each(rest, api().pause)
end

function M.unpause(args)
  local o, rest = flags.parse("unpause", { help = {} }, args)
  if usage_or_names("unpause", o, rest, PAUSE_USAGE:format("unpause", "Thaw")) then return 0 end
  return each(rest, api().unpause)
end

local WAIT_USAGE = [[
Usage: luactr wait CONTAINER...

Block until containers exit, then print their exit codes, one a line.
]]

function M.wait(args)
  local o, rest = flags.parse("wait", { help = {} }, args)
  if usage_or_names("wait", o, rest, WAIT_USAGE) then return 0 end
  return each(rest, function(what)
    local code = api().wait(what)
    if not code then fail("wait: %s exited, but no exit code was recorded", what) end
    out("%d\n", code)
  end, true)
end

local TOP_USAGE = [[
Usage: luactr top CONTAINER [ps OPTIONS]

Show the processes of a running container: the host's ps (with the ps
options given, -ef by default) cut down to the processes in its cgroup.
]]

function M.top(args)
  if args[1] == "--help" then
    io.stdout:write(TOP_USAGE)
    return 0
  end
  if #args == 0 then fail("top: give a container (see 'luactr top --help')") end
  local t = api().top(args[1], table.move(args, 2, #args, 1, {}))
  local rows = { t.titles }
  for _, row in ipairs(t.processes) do rows[#rows + 1] = row end
  columns(rows)
  return 0
end

local STATS_USAGE = [[
Usage: luactr stats [OPTIONS] [CONTAINER...]

Show what containers use: CPU (100% is one CPU), memory (usage and
limit), block I/O (read / written) and processes, each second.

Options:
  -a, --all         all containers (default: the running ones)
      --no-stream   print once and exit
      --help        print this help
]]

function M.stats(args)
  local o, rest = flags.parse("stats", { all = { short = "a" },
    ["no-stream"] = { key = "no_stream" }, help = {} }, args)
  if o.help then
    io.stdout:write(STATS_USAGE)
    return 0
  end
  local luactr = api()
  local sleep = require("luactr.core").sys.sleep
  local function targets()
    if #rest > 0 then return rest end
    local list = {}
    for _, st in ipairs(luactr.containers()) do
      if o.all or state.is_running(st) then list[#list + 1] = st.id end
    end
    return list
  end
  local previous = {}
  local function frame()
    local rows = { { "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                     "BLOCK I/O", "PIDS" } }
    for _, what in ipairs(targets()) do
      local r = luactr.stats(what, previous[what])
      previous[what] = r
      rows[#rows + 1] = { r.id:sub(1, 12), r.name or "--",
        ("%.2f%%"):format(r.cpu_percent or 0),
        output.binary(r.memory_usage) .. " / " .. output.binary(r.memory_limit),
        ("%.2f%%"):format(r.memory_percent or 0),
        output.decimal(r.block_read) .. " / " .. output.decimal(r.block_write),
        tostring(r.pids or 0) }
    end
    return rows
  end
  -- the CPU % is over the last second: a first sample to measure from
  frame()
  local clear = not o.no_stream and require("luactr.core").pty.size(1) ~= nil
  repeat
    sleep(1)
    local rows = frame()
    if clear then io.stdout:write("\27[2J\27[H") end
    columns(rows)
    io.stdout:flush()
  until o.no_stream
  return 0
end

return M
