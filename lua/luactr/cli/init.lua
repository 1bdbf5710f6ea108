-- luactr.cli: the command line, a thin layer over require "luactr".
--
-- Options are parsed and checked here, Docker's way: short flags may be
-- grouped (-it), values follow as the next word or after '=' (--env=K=V,
-- -eK=V), options end at the first word that is not one, or at "--".
-- Every failure prints "luactr: <what>: <why>" and exits 125.
local errors = require "luactr.errors"

local M = {}

local USAGE = [[
Usage: luactr COMMAND [OPTIONS]
       luactr RECIPE.lua [IMAGE...]   build the recipe's images

Commands:
  run      Run a command in a new container (from an image or --rootfs)
  exec     Run a command in a running container
  build    Build the images of a recipe
  images   List images
  rmi      Remove images
  tag      Give an image another name
  history  Show the steps an image was built from
  inspect  Show an image or a container as JSON
  ps       List containers
  start    Start a stopped container (detached)
  restart  Stop and start a container
  logs     Show a container's log (-f follows it)
  attach   Connect to a detached container's terminal or stdio
  rm       Remove containers
  stop     Stop running containers (stop signal, then SIGKILL)
  kill     Send a signal to running containers (SIGKILL by default)
  pause    Freeze every process of containers
  unpause  Thaw paused containers
  wait     Wait until containers exit and print their exit codes
  top      Show the processes of a container
  stats    Show what running containers use (CPU, memory, I/O, pids)
  info     Show the store's driver, root and space
  version  Print luactr's version

Run 'luactr COMMAND --help' for more on a command.
]]

local RUN_USAGE = [==[
Usage: luactr run [OPTIONS] IMAGE [COMMAND [ARG...]]
       luactr run [OPTIONS] --rootfs DIR [--] COMMAND [ARG...]

Run a command in a new container: a writable snapshot of IMAGE, or the
folder DIR as it is.

Options:
      --rootfs DIR        the container's root filesystem (a folder)
  -e, --env KEY=VALUE     set an environment variable (KEY alone: take
                          it from luactr's own environment)
  -w, --workdir DIR       working directory inside the container
  -u, --user USER[:GROUP] user name or uid (and group name or gid)
  -h, --hostname NAME     the container's host name
      --read-only         mount the root filesystem read-only
      --network MODE      "none" (default: its own, with lo) or "host"
      --init              run a tiny init as PID 1 that reaps zombies
                          and forwards signals
  -i, --interactive       keep stdin open
  -t, --tty               allocate a pseudo-terminal
      --cap-add CAP       add a capability to Docker's default set
                          (CHOWN or CAP_CHOWN, any case; ALL for all)
      --cap-drop CAP      drop a capability (ALL: start from none)
      --privileged        all capabilities, no seccomp filter, no masked
                          or read-only paths, /sys writable, every device
      --device HOST[:CONTAINER][:rwm]  give the container a host device
                          (repeatable; it may read, write, mknod it)
      --security-opt OPT  seccomp=unconfined, seccomp=FILE (a profile in
                          Docker's JSON format), no-new-privileges=false
      --userns MODE       "remap": container root is an unprivileged host
                          uid (luactr's range in /etc/subuid, subgid);
                          "host" (default): no user namespace
      --name NAME         a name for the container (unique)
      --entrypoint CMD    replace the image's entrypoint
      --rm                remove the container when it exits (a --rootfs
                          container leaves nothing behind anyway)
  -d, --detach            run it in the background, print its id; a
                          small monitor keeps its log and its stdio
      --restart POLICY    no, always, unless-stopped, on-failure[:N]
                          (detached; the monitor restarts it, backing off)
      --log-opt OPT       max-size=SIZE, max-file=N: rotate its log
      --detach-keys KEYS  the keys that detach a terminal (-it) from it
                          (default ctrl-p,ctrl-q)
      --help              print this help

Limits (the container's cgroup; SIZE: bytes, or 512k, 64m, 1g):
  -m, --memory SIZE       memory limit
      --memory-swap SIZE  memory and swap together (-1: unlimited swap;
                          default: as much swap as memory)
      --memory-reservation SIZE   soft memory limit
      --cpus N            CPUs' worth of time (0.5: half of one)
  -c, --cpu-shares N      relative CPU weight (1024 by default)
      --cpuset-cpus LIST  the CPUs it may run on (0-2,4)
      --cpuset-mems LIST  the memory nodes it may use
      --pids-limit N      at most N processes (-1: unlimited)
      --blkio-weight N    relative block I/O weight (10 to 1000)
      --device-read-bps DEVICE:RATE   read at most RATE (1mb) a second
      --device-write-bps DEVICE:RATE  write at most RATE a second
      --cgroup-parent PATH  make the cgroup beneath PATH (relative: beneath
                          luactr's own cgroup)
]==]

-- The options of each verb: long name -> { short=, arg=, key=, list= }.
local RUN_OPTIONS = {
  rootfs = { arg = true },
  env = { short = "e", arg = true, list = true },
  workdir = { short = "w", arg = true },
  user = { short = "u", arg = true },
  hostname = { short = "h", arg = true },
  ["read-only"] = { key = "read_only" },
  network = { arg = true },
  net = { arg = true, key = "network" },
  init = {},
  interactive = { short = "i" },
  tty = { short = "t" },
  rm = {},
  name = { arg = true },
  entrypoint = { arg = true },
  ["cap-add"] = { arg = true, list = true, key = "cap_add" },
  ["cap-drop"] = { arg = true, list = true, key = "cap_drop" },
  privileged = {},
  ["security-opt"] = { arg = true, list = true, key = "security_opt" },
  memory = { short = "m", arg = true },
  ["memory-swap"] = { arg = true, key = "memory_swap" },
  ["memory-reservation"] = { arg = true, key = "memory_reservation" },
  cpus = { arg = true },
  ["cpu-shares"] = { short = "c", arg = true, key = "cpu_shares" },
  ["cpuset-cpus"] = { arg = true, key = "cpuset_cpus" },
  ["cpuset-mems"] = { arg = true, key = "cpuset_mems" },
  ["pids-limit"] = { arg = true, key = "pids_limit" },
  ["blkio-weight"] = { arg = true, key = "blkio_weight" },
  ["device-read-bps"] = { arg = true, list = true, key = "device_read_bps" },
  ["device-write-bps"] = { arg = true, list = true, key = "device_write_bps" },
  ["cgroup-parent"] = { arg = true, key = "cgroup_parent" },
  userns = { arg = true },
  device = { arg = true, list = true, key = "devices" },
  detach = { short = "d" },
  restart = { arg = true },
  ["log-opt"] = { arg = true, list = true, key = "log_opt" },
  ["detach-keys"] = { arg = true, key = "detach_keys" },
  help = {},
}

local fail = errors.fail

-- An option's value as an integer, or a failure naming the option.
local function integer(value, name)
  if value == nil then return nil end
  local n = math.tointeger(tonumber(value))
  if not n then fail("run: %s: expected an integer, got '%s'", name, value) end
  return n
end

-- parse(verb, spec, args) -> options, rest
-- Reads options from args[1..] until the first operand or "--".
function M.parse(verb, spec, args)
  local shorts = {}
  for long, o in pairs(spec) do
    if o.short then shorts[o.short] = long end
  end
  local opts, i = {}, 1
  local function set(long, value)
    local o = spec[long]
    local key = o.key or long
    if o.list then
      opts[key] = opts[key] or {}
      table.insert(opts[key], value)
    else
      opts[key] = value
    end
  end
  local function value_for(name, inline)
    if inline then return inline end
    i = i + 1
    if args[i] == nil then fail("%s: option %s needs a value", verb, name) end
    return args[i]
  end
  while i <= #args do
    local a = args[i]
    if a == "--" then
      i = i + 1
      break
    elseif a:sub(1, 2) == "--" then
      local name, inline = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local o = spec[name]
      if not o then
        fail("%s: unknown option %s (see 'luactr %s --help')", verb, errors.quote("--" .. name), verb)
      end
      if o.arg then
        set(name, value_for("--" .. name, inline))
      elseif inline then
        fail("%s: option --%s takes no value", verb, name)
      else
        set(name, true)
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local j = 2
      while j <= #a do
        local c = a:sub(j, j)
        local long = shorts[c]
        if not long then
          fail("%s: unknown option %s (see 'luactr %s --help')", verb, errors.quote("-" .. c), verb)
        end
        if spec[long].arg then
          local rest = a:sub(j + 1)
          set(long, value_for("-" .. c, rest ~= "" and rest or nil))
          break
        end
        set(long, true)
        j = j + 1
      end
    else
      break
    end
    i = i + 1
  end
  return opts, table.move(args, i, #args, 1, {})
end

-- Docker's -e: KEY=VALUE, or KEY alone to pass luactr's own value.
local function environment(list)
  local env = {}
  for _, kv in ipairs(list or {}) do
    if kv:find("=", 1, true) then
      env[#env + 1] = kv
    elseif kv ~= "" then
      local v = os.getenv(kv)
      if v then env[#env + 1] = kv .. "=" .. v end
    else
      fail("run: empty environment variable")
    end
  end
  return env
end

local verbs = {}

function verbs.run(args)
  local o, rest = M.parse("run", RUN_OPTIONS, args)
  if o.help then
    io.stdout:write(RUN_USAGE)
    return 0
  end
  local image
  if not o.rootfs then
    image = table.remove(rest, 1)
    if not image then fail("run: give an image, or a root filesystem with --rootfs DIR") end
  elseif #rest == 0 then
    fail("run: no command given (luactr run --rootfs DIR -- COMMAND)")
  end
  local luactr = require "luactr"
  local ok, how, code = luactr.run{
    rootfs = o.rootfs, image = image, cmd = rest, env = environment(o.env),
    hostname = o.hostname, workdir = o.workdir, user = o.user,
    read_only = o.read_only, network = o.network, init = o.init,
    tty = o.tty, interactive = o.interactive, name = o.name,
    cap_add = o.cap_add, cap_drop = o.cap_drop, privileged = o.privileged,
    security_opt = o.security_opt, userns = o.userns,
    memory = o.memory, memory_swap = o.memory_swap,
    memory_reservation = o.memory_reservation, cpus = o.cpus,
    cpu_shares = integer(o.cpu_shares, "--cpu-shares"),
    cpuset_cpus = o.cpuset_cpus, cpuset_mems = o.cpuset_mems,
    pids_limit = integer(o.pids_limit, "--pids-limit"),
    blkio_weight = integer(o.blkio_weight, "--blkio-weight"),
    device_read_bps = o.device_read_bps, device_write_bps = o.device_write_bps,
    cgroup_parent = o.cgroup_parent, devices = o.devices,
    rm = image and o.rm or nil,
    detach = o.detach, restart = o.restart, log_opt = o.log_opt,
    detach_keys = o.detach_keys,
    entrypoint = o.entrypoint and (o.entrypoint == "" and {} or { o.entrypoint }) or nil,
  }
  if o.detach and ok then
    io.stdout:write(ok.id, "\n")
    return 0
  end
  if how == "detached" then return 0 end
  if ok then return 0 end
  return how == "signal" and 128 + code or code
end

local EXEC_USAGE = [[
Usage: luactr exec [OPTIONS] CONTAINER COMMAND [ARG...]

Run a command in a running container: in its namespaces and cgroup, with
its capabilities, seccomp profile, no_new_privs, environment, user and
working directory, unless an option says otherwise.

Options:
  -e, --env KEY=VALUE     set an environment variable (KEY alone: take
                          it from luactr's own environment)
  -w, --workdir DIR       working directory inside the container
  -u, --user USER[:GROUP] user name or uid (and group name or gid)
  -i, --interactive       keep stdin open
  -t, --tty               allocate a pseudo-terminal
      --privileged        every capability (the seccomp profile stays)
      --help              print this help
]]

local EXEC_OPTIONS = {
  env = { short = "e", arg = true, list = true },
  workdir = { short = "w", arg = true },
  user = { short = "u", arg = true },
  interactive = { short = "i" },
  tty = { short = "t" },
  privileged = {},
  help = {},
}

function verbs.exec(args)
  local o, rest = M.parse("exec", EXEC_OPTIONS, args)
  if o.help then
    io.stdout:write(EXEC_USAGE)
    return 0
  end
  local name = table.remove(rest, 1)
  if not name then fail("exec: give a container and a command") end
  if #rest == 0 then fail("exec: no command given") end
  -- luactr.runtime.exec itself, not the whole of require "luactr": an exec's
  -- latency is the point of it (issue 5: at most crun exec's)
  local ok, how, code = require("luactr.runtime.exec").exec{
    container = name, cmd = rest, env = environment(o.env),
    user = o.user, workdir = o.workdir, tty = o.tty,
    interactive = o.interactive, privileged = o.privileged,
  }
  if ok then return 0 end
  return how == "signal" and 128 + code or code
end

local function store()
  return require("luactr.storage").open()
end

local function out(fmt, ...)
  io.stdout:write(fmt:format(...))
end

-- Prints rows as columns, Docker's way.
local function columns(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, #tostring(cell))
    end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and ("%-" .. widths[i] .. "s"):format(cell) or tostring(cell)
    end
    io.stdout:write(table.concat(cells, "   "), "\n")
  end
end

-- Seconds since the epoch of a UTC calendar time, by arithmetic (H.
-- Hinnant's days_from_civil): os.time would read the time zone at each
-- call, and ps calls this twice a container.
local function utc_epoch(y, m, d, h, mi, s)
  y = m <= 2 and y - 1 or y
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m > 2 and m - 3 or m + 9) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return ((era * 146097 + doe - 719468) * 24 + h) * 3600 + mi * 60 + s
end

local now
local function ago(iso)
  if not iso then return "" end
  local y, mo, d, h, mi, se = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then return iso end
  now = now or os.time()
  local secs = now - utc_epoch(tonumber(y), tonumber(mo), tonumber(d),
    tonumber(h), tonumber(mi), tonumber(se))
  if secs < 0 then secs = 0 end
  if secs < 60 then return ("%d seconds ago"):format(secs) end
  if secs < 3600 then return ("%d minutes ago"):format(secs // 60) end
  if secs < 86400 then return ("%d hours ago"):format(secs // 3600) end
  return ("%d days ago"):format(secs // 86400)
end

local BUILD_OPTIONS = {
  ["no-cache"] = { key = "no_cache" },
  ["dry-run"] = { key = "dry_run" },
  quiet = { short = "q" },
  help = {},
}

-- Swallows the build's progress under --quiet.
local SILENT = { write = function(self) return self end, flush = function() end }

function verbs.build(args)
  local o, rest = M.parse("build", BUILD_OPTIONS, args)
  if o.help then
    io.stdout:write("Usage: luactr build [--no-cache] [--dry-run] [-q] RECIPE.lua [IMAGE...]\n")
    return 0
  end
  if #rest == 0 then fail("build: give a recipe (see 'luactr build --help')") end
  local recipe = require "luactr.build.recipe"
  local plan = recipe.load(rest[1])
  if o.dry_run then
    io.stdout:write(recipe.format(plan))
    return 0
  end
  local built = require("luactr.build").build(plan, { no_cache = o.no_cache,
    only = table.move(rest, 2, #rest, 1, {}), out = o.quiet and SILENT or nil })
  if o.quiet then
    -- the ids alone, in build order, as docker build -q prints them
    for _, image in ipairs(plan.images) do
      if built[image.name] then out("%s\n", built[image.name].id) end
    end
  end
  return 0
end

function verbs.images(args)
  local o = M.parse("images", { quiet = { short = "q" } }, args)
  local rows = { { "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "LAYERS" } }
  for _, img in ipairs(store():images()) do
    if o.quiet then
      out("%s\n", img.id:sub(1, 12))
    else
      local name, tag = img.ref:match("^(.*):([^:]*)$")
      if img.damaged then
        -- listed, so that it can be seen and removed, and said why
        io.stderr:write(("luactr: image %s is damaged (%s): remove it with rmi, or build it again\n")
          :format(img.ref, img.damaged))
        rows[#rows + 1] = { name, tag, img.id:sub(1, 12), "damaged", "-" }
      else
        rows[#rows + 1] = { name, tag, img.id:sub(1, 12), ago(img.created),
          #(img.luactr and img.luactr.layers or {}) }
      end
    end
  end
  if not o.quiet then columns(rows) end
  return 0
end

function verbs.rmi(args)
  local o, rest = M.parse("rmi", { force = { short = "f" } }, args)
  if #rest == 0 then fail("rmi: give an image") end
  local s = store()
  local lock <close> = s:lock()
  local list, going = {}, {}
  for _, ref in ipairs(rest) do
    -- a damaged one too: nothing can be made from it, it only goes
    local img = s:image_entry(ref)
    if not img then fail("rmi: no such image: %s", errors.quote(ref)) end
    list[#list + 1], going[img.ref] = img, true
  end
  -- as Docker: an image stays while a container made from it does, unless
  -- another name keeps it, or -f (the container keeps its root: a
  -- snapshot, or overlay layers that no prune takes while it is there)
  local kept = {}
  for _, img in ipairs(s:images()) do
    if not going[img.ref] then kept[img.id] = true end
  end
  for _, st in ipairs(o.force and {} or require("luactr.runtime.containers").list(s)) do
    for _, img in ipairs(list) do
      if st.image_id == img.id and not kept[img.id] then
        fail("rmi: image %s is used by container %s: remove the container first",
          img.ref, st.id:sub(1, 12))
      end
    end
  end
  for _, img in ipairs(list) do
    s:remove_image(img.ref)
    out("Untagged: %s\n", img.ref)
  end
  local n = s:prune_layers()
  if n > 0 then out("Deleted: %d layers\n", n) end
  return 0
end

function verbs.tag(args)
  local _, rest = M.parse("tag", {}, args)
  if #rest ~= 2 then fail("tag: usage: luactr tag SOURCE TARGET") end
  local s = store()
  local lock <close> = s:lock()
  local img = s:image(rest[1])
  if not img then fail("tag: no such image: %s", errors.quote(rest[1])) end
  img.id, img.ref = nil, nil
  s:put_image(rest[2], img)
  return 0
end

function verbs.history(args)
  local _, rest = M.parse("history", {}, args)
  if #rest ~= 1 then fail("history: usage: luactr history IMAGE") end
  local img = store():image(rest[1])
  if not img then fail("history: no such image: %s", errors.quote(rest[1])) end
  local rows = { { "STEP", "CREATED BY", "LAYER" } }
  local layer = #(img.luactr and img.luactr.layers or {})
  local history = img.history or {}
  for i = #history, 1, -1 do
    local h = history[i]
    local mark = "-"
    if not h.empty_layer then
      mark = (img.luactr.layers[layer] or ""):sub(1, 12)
      layer = layer - 1
    end
    rows[#rows + 1] = { i, h.created_by or "", mark }
  end
  columns(rows)
  return 0
end

local INSPECT_USAGE = [[
Usage: luactr inspect [OPTIONS] NAME|ID...

Show images and containers as a JSON array: an image as its OCI image
config, a container in the shape of docker inspect's (Id, Name, State,
Config, GraphDriver, ...). A name is looked up among the images first.

Options:
      --type TYPE   only look for a "container" or an "image"
      --help        print this help
]]

function verbs.inspect(args)
  local o, rest = M.parse("inspect", { type = { arg = true }, help = {} }, args)
  if o.help then
    io.stdout:write(INSPECT_USAGE)
    return 0
  end
  if #rest == 0 then fail("inspect: give an image or a container") end
  if o.type and o.type ~= "container" and o.type ~= "image" then
    fail("inspect: --type: expected container or image, got '%s'", o.type)
  end
  local json = require "luactr.json"
  local container = require "luactr.runtime.containers"
  local s = store()
  local list = json.array()
  -- containers first, then images, as Docker
  for _, what in ipairs(rest) do
    local ok, id = true, nil
    if o.type ~= "image" then
      ok, id = pcall(container.find, s, what)
      if not ok then
        if not errors.is(id) then error(id, 0) end
        if o.type == "container" or id.message:find("ambiguous", 1, true) then
          fail("inspect: %s", id.message)
        end
      end
    end
    local img = not (ok and id) and s:image(what)
    if ok and id then
      list[#list + 1] = require("luactr.runtime.control").describe(s, id)
    elseif img then
      list[#list + 1] = img
    elseif o.type == "image" then
      fail("inspect: no such image: %s", errors.quote(what))
    else
      fail("inspect: no such image or container: %s", errors.quote(what))
    end
  end
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

function verbs.ps(args)
  local o = M.parse("ps", { all = { short = "a" }, quiet = { short = "q" },
    format = { arg = true }, help = {} }, args)
  if o.help then
    io.stdout:write(PS_USAGE)
    return 0
  end
  local format = o.format or "table"
  if format ~= "table" and format ~= "json" then
    fail("ps: --format: expected table or json, got '%s'", format)
  end
  local container = require "luactr.runtime.containers"
  local s = store()
  local rows = { { "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES" } }
  for _, st in ipairs(container.reap(s)) do
    st.paused = st.status == "paused"
    if o.all or st.status == "running" or st.paused or st.status == "restarting" then
      local status = (st.status == "running" or st.paused)
          and ("Up " .. ago(st.started):gsub(" ago$", "")) .. (st.paused and " (Paused)" or "")
        or st.damaged and "Damaged"
        or st.status == "created" and "Created"
        or st.status == "restarting"
          and ("Restarting (%s) %s"):format(st.exit_code, ago(st.finished))
        or st.stale and "Exited (unknown)"
        or ("Exited (%s) %s"):format(st.exit_code, ago(st.finished))
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

-- {====== start, logs, attach (luactr.runtime.monitor)

function verbs.start(args)
  local o, rest = M.parse("start", { attach = { short = "a" },
    ["detach-keys"] = { arg = true, key = "detach_keys" } }, args)
  if #rest == 0 then fail("start: give a container") end
  local luactr = require "luactr"
  for _, what in ipairs(rest) do
    luactr.start(what)
    if o.attach then
      local how, code = luactr.attach(what, { detach_keys = o.detach_keys })
      return how == "exit" and code or 0
    end
    out("%s\n", what)
  end
  return 0
end

function verbs.restart(args)
  local o, rest = M.parse("restart", { time = { short = "t", arg = true } }, args)
  if #rest == 0 then fail("restart: give a container") end
  local luactr = require "luactr"
  for _, what in ipairs(rest) do
    luactr.stop(what, { timeout = integer(o.time, "--time") })
    luactr.start(what)
    out("%s\n", what)
  end
  return 0
end

function verbs.logs(args)
  local o, rest = M.parse("logs", { follow = { short = "f" }, tail = { short = "n", arg = true },
    since = { arg = true }, timestamps = { short = "t" } }, args)
  if #rest ~= 1 then fail("logs: give one container") end
  local tail = o.tail ~= "all" and integer(o.tail, "--tail") or nil
  require("luactr").logs(rest[1], { follow = o.follow, tail = tail, since = o.since,
    each = function(rec)
      local f = rec.stream == "stderr" and io.stderr or io.stdout
      if o.timestamps then f:write(rec.time, " ") end
      f:write(rec.log)
      f:flush()
    end })
  return 0
end

function verbs.attach(args)
  local o, rest = M.parse("attach", { ["no-stdin"] = { key = "no_stdin" },
    ["detach-keys"] = { arg = true, key = "detach_keys" } }, args)
  if #rest ~= 1 then fail("attach: give one container") end
  local how, code = require("luactr").attach(rest[1], {
    input = not o.no_stdin, detach_keys = o.detach_keys })
  if how == "detached" then return 0 end
  return code
end

-- }======

function verbs.rm(args)
  local o, rest = M.parse("rm", { force = { short = "f" } }, args)
  if #rest == 0 then fail("rm: give a container") end
  local container = require "luactr.runtime.containers"
  local s = store()
  for _, what in ipairs(rest) do
    container.remove(s, container.find(s, what), o.force)
    out("%s\n", what)
  end
  return 0
end

-- {====== stop, kill, pause, unpause, wait, top (luactr.runtime.control)

-- Does fn(what) for each container named, printing `what` after each
-- one done (as Docker echoes the names given) unless `silent`; a failure
-- is printed and the others are still done. Returns the exit status:
-- that of the last failure, else 0.
local function each(names, fn, silent)
  local status = 0
  for _, what in ipairs(names) do
    local ok, err = pcall(fn, what)
    if ok then
      if not silent then out("%s\n", what) end
    elseif errors.is(err) then
      io.stdout:flush()
      io.stderr:write("luactr: ", err.message, "\n")
      status = err.status
    else
      error(err, 0)
    end
  end
  return status
end

-- Prints `usage` for --help, or fails when no container is named.
local function usage_or_names(verb, o, rest, usage)
  if o.help then
    io.stdout:write(usage)
    return true
  end
  if #rest == 0 then fail("%s: give a container (see 'luactr %s --help')", verb, verb) end
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

function verbs.stop(args)
  local o, rest = M.parse("stop", { timeout = { short = "t", arg = true },
    time = { arg = true, key = "timeout" }, signal = { short = "s", arg = true },
    help = {} }, args)
  if usage_or_names("stop", o, rest, STOP_USAGE) then return 0 end
  local timeout = o.timeout and math.tointeger(tonumber(o.timeout))
  if o.timeout and not timeout then
    fail("stop: --timeout: expected whole seconds, got '%s'", o.timeout)
  end
  local luactr = require "luactr"
  return each(rest, function(what)
    luactr.stop(what, { timeout = timeout, signal = o.signal })
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

function verbs.kill(args)
  local o, rest = M.parse("kill", { signal = { short = "s", arg = true }, help = {} }, args)
  if usage_or_names("kill", o, rest, KILL_USAGE) then return 0 end
  local luactr = require "luactr"
  if not require("luactr.units").signal(o.signal or "KILL") then
    fail("kill: invalid signal: %s", o.signal)
  end
  return each(rest, function(what) luactr.kill(what, o.signal) end)
end

local PAUSE_USAGE = [[
Usage: luactr %s CONTAINER...

%s every process of containers (the cgroup freezer).
]]

function verbs.pause(args)
  local o, rest = M.parse("pause", { help = {} }, args)
  if usage_or_names("pause", o, rest, PAUSE_USAGE:format("pause", "Freeze")) then return 0 end
  return each(rest, require("luactr").pause)
end

function verbs.unpause(args)
  local o, rest = M.parse("unpause", { help = {} }, args)
  if usage_or_names("unpause", o, rest, PAUSE_USAGE:format("unpause", "Thaw")) then return 0 end
  return each(rest, require("luactr").unpause)
end

local WAIT_USAGE = [[
Usage: luactr wait CONTAINER...

Block until containers exit, then print their exit codes, one a line.
]]

function verbs.wait(args)
  local o, rest = M.parse("wait", { help = {} }, args)
  if usage_or_names("wait", o, rest, WAIT_USAGE) then return 0 end
  local luactr = require "luactr"
  return each(rest, function(what)
    local code = luactr.wait(what)
    if not code then fail("wait: %s exited, but no exit code was recorded", what) end
    out("%d\n", code)
  end, true)
end

local TOP_USAGE = [[
Usage: luactr top CONTAINER [ps OPTIONS]

Show the processes of a running container: the host's ps (with the ps
options given, -ef by default) cut down to the processes in its cgroup.
]]

function verbs.top(args)
  if args[1] == "--help" then
    io.stdout:write(TOP_USAGE)
    return 0
  end
  if #args == 0 then fail("top: give a container (see 'luactr top --help')") end
  local t = require("luactr").top(args[1], table.move(args, 2, #args, 1, {}))
  local rows = { t.titles }
  for _, row in ipairs(t.processes) do rows[#rows + 1] = row end
  columns(rows)
  return 0
end

-- }======

-- Sizes as Docker prints them: memory in powers of 1024 ("1.953MiB"),
-- block I/O in powers of 1000 ("4.1kB").
local function human(n, base, units, digits)
  n = n or 0
  local i = 1
  while n >= base and i < #units do
    n = n / base
    i = i + 1
  end
  return ("%." .. digits .. "g%s"):format(n, units[i])
end

local function binary(n)
  return human(n, 1024, { "B", "KiB", "MiB", "GiB", "TiB", "PiB" }, 4)
end

local function decimal(n)
  return human(n, 1000, { "B", "kB", "MB", "GB", "TB", "PB" }, 3)
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

function verbs.stats(args)
  local o, rest = M.parse("stats", { all = { short = "a" },
    ["no-stream"] = { key = "no_stream" }, help = {} }, args)
  if o.help then
    io.stdout:write(STATS_USAGE)
    return 0
  end
  local luactr = require "luactr"
  local container = require "luactr.runtime.containers"
  local sleep = require("luactr.core").sys.sleep
  local function targets()
    if #rest > 0 then return rest end
    local list = {}
    for _, st in ipairs(container.list(store())) do
      if o.all or st.status == "running" or st.status == "paused" then list[#list + 1] = st.id end
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
        binary(r.memory_usage) .. " / " .. binary(r.memory_limit),
        ("%.2f%%"):format(r.memory_percent or 0),
        decimal(r.block_read) .. " / " .. decimal(r.block_write),
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

function verbs.info()
  local s = store()
  local st = require("luactr.core").fs.statfs(s.dir)
  out("Driver: %s\nRoot: %s\nStore: %s (%s)\n", s.driver, s.root, s.dir, st.type)
  local used = (st.blocks - st.bfree) * st.bsize
  out("Space: %.1f MiB used, %.1f MiB free\n", used / 2 ^ 20, st.bavail * st.bsize / 2 ^ 20)
  out("Images: %d\nContainers: %d\n", #s:images(), #s:containers())
  return 0
end

function verbs.version()
  io.stdout:write("luactr ", require("luactr.core").version, "\n")
  return 0
end

-- main(args) -> exit status. Never raises. A bug (an error that is not
-- luactr's) is said in one line; LUACTR_DEBUG=1 adds its traceback.
function M.main(args)
  local verb = args[1]
  if verb == nil then
    io.stderr:write(USAGE)
    return 125
  elseif verb == "help" or verb == "--help" or verb == "-h" then
    io.stdout:write(USAGE)
    return 0
  end
  local f = verbs[verb]
  if not f and verb:match("%.lua$") then
    -- luactr RECIPE.lua: build it (and, once deployments exist, bring them up)
    f = verbs.build
    args = { "build", table.unpack(args) }
  end
  if not f then
    io.stderr:write(("luactr: unknown command %s (see 'luactr --help')\n")
      :format(errors.quote(verb, "'")))
    return 125
  end
  local ok, status = xpcall(f, function(e)
    if errors.is(e) then return e end
    if os.getenv("LUACTR_DEBUG") then return debug.traceback(tostring(e), 2) end
    return (tostring(e):match("^[^\n]*"))
  end, table.move(args, 2, #args, 1, {}))
  if ok then return status end
  if errors.is(status) then
    io.stderr:write("luactr: ", status.message, "\n")
    return status.status
  end
  io.stderr:write("luactr: internal error: ", tostring(status), "\n")
  return 125
end

return M
