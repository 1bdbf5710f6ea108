-- luactr: containers for Lua. The public API: each function forwards to
-- the module that holds its rules, and a Lua program can do what the
-- command line does.
--
--   local luactr = require "luactr"
--   local ok, how, code = luactr.run{ rootfs = "/srv/rootfs",
--                                     cmd = { "sh", "-c", "echo hi" } }
--
-- Functions raise a luactr error (see luactr.errors) when luactr itself
-- fails; the container's own outcome is returned like os.execute's.
--
-- The map of the engine (lua/luactr/), one line a module:
--
--   init.lua               this API: forwards only
--   errors.lua             error values, exit statuses (125/126/127), quoting
--   check.lua              schemas for option tables and files read from disk
--   json.lua               JSON, with arrays and objects told apart
--   units.lua              sizes and signals as users write them
--   ids.lua                container ids, random tokens, timestamps
--   paths.lua              where luactr keeps things on this host: the store's root, the run root
--   system.lua             the store as a whole (info)
--   spec/init.lua          the one writer of a container's OCI spec (run, build step, exec)
--   spec/options.lua       the run options, once: checks, flags, help
--   spec/resources.lua     the limit options, as the spec's linux.resources
--   spec/seccomp.lua       Docker's seccomp profile as data, resolved per container; its cache folder
--   spec/devices.lua       --device and the devices cgroup's rules
--   spec/users.lua         the container's user, from its root's passwd and group
--   runtime/run.lua        running a container, attached or detached; start
--   runtime/containers.lua containers in the store: create, find, state, reap, remove
--   runtime/control.lua    stop, kill, pause, wait, top, inspect, rm, logs, stats
--   runtime/exec.lua       a command in a running container (join mode)
--   runtime/attach.lua     the client of a container's monitor; detach keys
--   runtime/monitor.lua    a detached container's native monitor: start, hand-over, the restart policy
--   runtime/logs.lua       a detached container's log (JSON lines), read and followed
--   runtime/cgroup.lua     cgroups v1, v2, hybrid: layout, limits, the handle, sweep
--   runtime/userns.lua     --userns=remap: subordinate ids, the remapped root
--   runtime/handle.lua     a container handle: the API's verbs as methods
--   runtime/state.lua      the state machine: statuses, transitions, what a record means now
--   storage/init.lua       the store: locks, work in tmp/, layers, containers, the reserve
--   storage/provision.lua  where the store is on this host, made the first time (loop image)
--   storage/btrfs.lua      the btrfs driver: layers and roots as subvolumes and snapshots
--   storage/overlay.lua    the overlay driver: layers as folders, roots as overlay mounts
--   image/store.lua        image records in the store: read, checked, written, removed
--   image/init.lua         the images: list, rmi (Docker's rule for those in use), tag, history
--   image/reference.lua    image references, Docker's grammar
--   build/init.lua         the builder: a plan's images, layer by layer, cached
--   build/recipe.lua       the recipe language: a recipe file read into a plan
--   build/copy.lua         a copy step: core.fs.copy beneath both roots, and its cache digest
--   cli/init.lua           the command line, a client of this API: the verbs' table, errors shown
--   cli/flags.lua          the command line's flag parser, for every verb
--   cli/output.lua         columns, ages, sizes as the CLI prints them
--   cli/run.lua            run (its flags are spec/options.lua's)
--   cli/exec.lua           exec
--   cli/build.lua          build, and `luactr recipe.lua`
--   cli/images.lua         images, rmi, tag, history
--   cli/containers.lua     ps, inspect, start, restart, logs, attach, rm, stop, kill, pause, wait, top, stats
--   cli/system.lua         info, version
--
-- The native core, luactr.core (src/*.c), is the mechanism: see src/core.c.
local M = {}

M.version = require("luactr.core").version

local function run() return require "luactr.runtime.run" end
local function control() return require "luactr.runtime.control" end

-- A random id, Docker's way: 64 hex digits, shown by its first 12.
function M.new_id() return run().new_id() end

-- run(options) -> true|nil, "exit"|"signal", code (a handle when
-- detached): see luactr.runtime.run.
function M.run(o) return run().run(o) end

-- start(container) -> true: starts a created or stopped container,
-- detached; one running already is left as it is (as Docker does).
function M.start(what) return run().start(what) end

-- exec{ container=, cmd=, env=, user=, workdir=, tty=, interactive=,
-- privileged= } -> true|nil, "exit"|"signal", code
-- Runs a command in a running container (name, id or id prefix), in its
-- namespaces and cgroup, confined as its own process is.
function M.exec(o) return require("luactr.runtime.exec").exec(o) end

-- attach(container, [{ input=, detach_keys= }]) -> "exit", status |
-- "detached": this process's stdio connected to a detached container's.
function M.attach(what, o) return require("luactr.runtime.attach").attach(what, o) end

-- container(what) -> a handle on a container (name, id or id prefix)
-- with the verbs as methods (luactr.runtime.handle).
function M.container(what) return require("luactr.runtime.handle").container(what) end

-- build(recipe path or plan, [{ no_cache=, only={names}, out=file }])
-- -> { [image name] = { id=, top= } }
function M.build(what, o)
  local plan = what
  if type(what) == "string" then plan = require("luactr.build.recipe").load(what) end
  return require("luactr.build").build(plan, o)
end

-- load(recipe path) -> its plan (luactr.build.recipe), evaluated with no
-- side effect; format(plan) -> the plan as `build --dry-run` prints it.
function M.load(path) return require("luactr.build.recipe").load(path) end
function M.format(plan) return require("luactr.build.recipe").format(plan) end

-- {====== images (luactr.image)

-- images() -> the store's images (OCI image configs with .ref and .id;
-- one whose file is damaged is { ref=, id=, damaged = why })
function M.images() return require("luactr.image").list() end

-- rmi(refs, [{ force= }]) -> { untagged = { refs }, deleted = layers }:
-- Docker's rule, an image a container was made from stays unless forced.
function M.rmi(refs, o) return require("luactr.image").remove(refs, o) end

-- tag(source, target): another name for an image.
function M.tag(source, target) return require("luactr.image").tag(source, target) end

-- history(ref) -> { { step=, created_by=, layer= } }, newest first.
function M.history(ref) return require("luactr.image").history(ref) end

-- }======

-- info() -> the store: driver, root, space, counts (luactr.system).
function M.info() return require("luactr.system").info() end

-- {====== containers that exist (luactr.runtime.control)
-- Each takes a container's name, full id or unique id prefix.

-- stop(what, [{ timeout = 10, signal = }]) -> state: its stop signal,
-- then SIGKILL after `timeout` seconds; returns once its exit is recorded.
function M.stop(what, o) return control().stop(what, o) end

-- kill(what, [signal]) -> state: a signal ("KILL", "SIGUSR1", 10) to its
-- PID 1, SIGKILL by default.
function M.kill(what, signal) return control().kill(what, signal) end

-- pause(what) / unpause(what) -> state: its cgroup freezer.
function M.pause(what) return control().pause(what) end
function M.unpause(what) return control().unpause(what) end

-- wait(what) -> exit code | nil: blocks until it has exited.
function M.wait(what) return control().wait(what) end

-- top(what, [ps arguments]) -> { titles = {...}, processes = { {...} } }
function M.top(what, args) return control().top(what, args) end

-- inspect(what, [{ type = "container" | "image" }]) -> a container in
-- `docker inspect`'s shape (Id, Name, State, Config, GraphDriver, ...),
-- or else an image (its OCI image config).
function M.inspect(what, o) return control().inspect(what, o) end

-- containers() -> the state of every container, newest first (id, name,
-- image, status, paused, pid, exit_code, created, started, finished).
function M.containers() return control().containers() end

-- rm(what, [{ force= }])
function M.rm(what, o) return control().rm(what, o) end

-- logs(what, [{ tail=, since=, timestamps=, follow=, each= }]) -> list
-- of { time=, stream=, log= } (or each record to o.each as it comes)
function M.logs(what, o) return control().logs(what, o) end

-- stats(what, [previous]) -> { id=, name=, running=, cpu_percent=,
-- memory_usage=, memory_limit=, memory_percent=, pids=, block_read=,
-- block_write=, sample= }: what it uses now, from its cgroup.
function M.stats(what, previous) return control().stats(what, previous) end

-- }======

return M
