-- bench/bench.lua: start-to-exit latency of /bin/true in a container,
-- luactr against crun (on luactr's own spec), bwrap and a bare unshare.
--
--   make bench                      (or: lua5.4 bench/bench.lua, as root)
--   BENCH_ROUNDS=500 make bench
--   BENCH_ONLY=exec make bench      (only `luactr exec` against `crun exec`)
--
-- The commands run round-robin in one process, because the machine is
-- noisy: a slow minute then slows every command alike instead of the one
-- that happened to run during it. Each sample is sys.monotonic() around
-- spawnp + waitpid, with no shell in between.
--
-- crun 1.8 refuses a hybrid cgroup layout (v1 controllers plus cgroup2 at
-- /sys/fs/cgroup/unified), so the script re-executes itself once under
-- `unshare -m --propagation private`, unmounts /sys/fs/cgroup/unified
-- there (never on the host) and measures every command in that namespace,
-- luactr included, so that all of them run under the same conditions.

local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local TOP = lib.TOP

local sys = require("luactr.core").sys

local WARMUP = 5
local TARGET = 0.75  -- the issue's goal: luactr's median <= 0.75 x crun's

-- What die runs before it exits: the ends of what must not outlive the
-- bench (the containers the exec bench keeps running).
local at_die = {}

local function die(fmt, ...)
  io.stderr:write("bench: ", fmt:format(...), "\n")
  for i = #at_die, 1, -1 do pcall(at_die[i]) end
  os.exit(1)
end

local sh_quote = lib.quote

-- capture(argv) -> ok, output (stdout and stderr together)
-- For setup and checks only, never timed: it goes through a shell.
local function capture(argv)
  local words = {}
  for i, a in ipairs(argv) do words[i] = sh_quote(a) end
  local p = assert(io.popen(table.concat(words, " ") .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

local function must(argv)
  local ok, out = capture(argv)
  if not ok then die("%s failed:\n%s", table.concat(argv, " "), out) end
  return out
end

local read_file = lib.read_file

local function mnt_namespace()
  return (must({ "readlink", "/proc/self/ns/mnt" }):gsub("%s+$", ""))
end

-- The mount points at or below `dir` in this mount namespace.
local function mounts_under(dir)
  local found = {}
  for line in (read_file("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
    local point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if point == dir or point:sub(1, #dir + 1) == dir .. "/" then
      found[#found + 1] = point
    end
  end
  return found
end

-- {{{ the outer process: a private mount namespace, then clean up

-- The interpreter this script was started with (arg's lowest index).
local function interpreter()
  local i = 0
  while arg[i - 1] do i = i - 1 end
  return arg[i]
end

local function outer()
  local tmp = must({ "mktemp", "-d", "/tmp/luactr-bench.XXXXXX" }):gsub("%s+$", "")
  local pid, err = sys.spawnp({ "unshare", "-m", "--propagation", "private", "--",
                                interpreter(), arg[0], "--inside", tmp,
                                mnt_namespace() })
  local status = 1
  if pid then
    local how, code = sys.waitpid(pid)
    status = (how == "exit") and code or 128 + code
  else
    io.stderr:write("bench: unshare: ", err, "\n")
  end
  -- Everything was mounted in the private namespace, which is gone now;
  -- make sure before deleting, rm -rf must never cross into a mount.
  local left = mounts_under(tmp)
  if #left > 0 then
    die("left mounted on the host, not removing %s: %s", tmp, table.concat(left, " "))
  end
  must({ "rm", "-rf", "--one-file-system", tmp })
  os.exit(status)
end

-- }}}
-- {{{ the inner process: set up, measure, report

-- crun's bundle: luactr's own spec, encoded as it is: the same
-- capabilities and the same seccomp filter, so both do the same work.
local function make_bundle(bundle, rootfs, limit_opts, cgroups_path)
  local cjson = require "cjson"
  local spec = require("luactr.spec").build(
    { rootfs = rootfs, cmd = { "/bin/true" }, hostname = "bench" },
    { uid = 0, gid = 0, additionalGids = {}, home = "/root" })
  if spec.linux.resources then die("the spec has linux.resources; the bench wants none") end
  if limit_opts then  -- as luactr.run makes them (luactr.init's prepare)
    spec.linux.resources = require("luactr.spec.resources").of(limit_opts)
    spec.linux.resources.devices = select(2, require("luactr.spec.devices").prepare({}))
    spec.linux.cgroupsPath = cgroups_path
  end
  spec.root.path = rootfs
  -- cjson encodes an empty table as {}, not []: leave the field out.
  if #spec.process.user.additionalGids == 0 then spec.process.user.additionalGids = nil end
  for set, list in pairs(spec.process.capabilities) do
    if #list == 0 then spec.process.capabilities[set] = nil end
  end
  must({ "mkdir", "-p", bundle })
  local f = assert(io.open(bundle .. "/config.json", "w"))
  f:write(cjson.encode(spec))
  f:close()
end

-- The contenders. argv(i) gives the command for sample i.
local function contenders(tmp, rootfs)
  local bundle, state = tmp .. "/bundle", tmp .. "/crun-state"
  return {
    { name = "luactr",
      argv = function()
        return { TOP .. "/bin/luactr", "run", "--rootfs", rootfs, "--", "/bin/true" }
      end },
    { name = "crun",
      -- crun run deletes its container when it exits; a fresh name per
      -- run still keeps one failed run from failing all the next ones.
      argv = function(i)
        return { "crun", "--root", state, "--cgroup-manager=disabled", "run",
                 "--bundle", bundle, "bench-" .. i }
      end },
    { name = "bwrap",
      argv = function()
        return { "bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                 "--unshare-uts", "--unshare-cgroup", "--bind", rootfs, "/",
                 "--proc", "/proc", "--dev", "/dev", "/bin/true" }
      end },
    { name = "unshare+chroot",
      argv = function()
        return { "unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net",
                 "chroot", rootfs, "/bin/true" }
      end },
  }
end

-- One timed run: seconds, or dies with the command's output.
local function time_one(c, i)
  local argv = c.argv(i)
  local t0 = sys.monotonic()
  -- what a command prints (build -q: the image's id) is not the bench's
  local pid, err = sys.spawnp(argv, { stdout = "/dev/null" })
  if not pid then die("%s: %s", c.name, err) end
  local how, code = sys.waitpid(pid)
  local dt = sys.monotonic() - t0
  if how ~= "exit" or code ~= 0 then
    die("%s: %s %d: %s", c.name, how, code, table.concat(argv, " "))
  end
  return dt
end

-- Warm-up runs, through a shell so that a failure shows its stderr.
local function warm_up(c)
  for i = 1, WARMUP do
    local argv = c.argv("warm-" .. i)
    local ok, out = capture(argv)
    if not ok then
      die("%s does not run (exit nonzero):\n  %s\n%s", c.name, table.concat(argv, " "), out)
    end
  end
end

local quantile = lib.quantile

local function first_line(argv)
  local ok, out = capture(argv)
  return ok and out:match("[^\n]*") or "?"
end

-- Runs every contender `rounds` times, round-robin, starting each round
-- one command further so that no command always follows the same other.
local function measure(cs, rounds)
  for _, c in ipairs(cs) do
    warm_up(c)
    c.samples = {}
  end
  for r = 1, rounds do
    for k = 0, #cs - 1 do
      local c = cs[(r + k) % #cs + 1]
      c.samples[r] = time_one(c, r)
    end
  end
  for _, c in ipairs(cs) do
    table.sort(c.samples)
    c.median = quantile(c.samples, 0.5)
  end
end

-- Prints p10, median, p90 and the ratio to `base`; returns name -> c.
local function report(cs, base)
  local by_name = {}
  for _, c in ipairs(cs) do by_name[c.name] = c end
  print(("%-16s %9s %9s %9s %10s"):format("command", "p10 ms", "median", "p90 ms", "vs " .. base))
  for _, c in ipairs(cs) do
    print(("%-16s %9.2f %9.2f %9.2f %9.2fx"):format(c.name,
          quantile(c.samples, 0.1) * 1e3, c.median * 1e3,
          quantile(c.samples, 0.9) * 1e3, c.median / by_name[base].median))
  end
  return by_name
end

-- The image paths: a cached rebuild, and `run --rm IMAGE` of a 1 MB and
-- a 1 GB image against crun on its prepared bundle. The store is a fresh
-- LUACTR_ROOT in tmp; its loop mount lives in this private namespace and
-- goes with it.
local function images(tmp, rootfs_cs, rounds)
  local root = tmp .. "/luactr-root"
  local recipe = TOP .. "/bench/images.lua"
  local env = "LUACTR_ROOT=" .. root .. " "
  local ok, out = capture({ "sh", "-c", env .. TOP .. "/bin/luactr build " .. recipe })
  if not ok then die("building %s failed:\n%s", recipe, out) end
  -- LUACTR_ROOT goes into our own environment, which spawnp passes on:
  -- an `env` in front would cost luactr alone one more exec
  sys.setenv("LUACTR_ROOT", root)
  local function luactr(...)
    local argv = { TOP .. "/bin/luactr", ... }
    return function() return argv end
  end
  local crun
  for _, c in ipairs(rootfs_cs) do
    if c.name == "crun" then crun = c end
  end
  local cs = {
    { name = "rebuild (6 steps)", argv = luactr("build", "-q", recipe, "bench-small") },
    { name = "run --rm 1MB", argv = luactr("run", "--rm", "bench-small", "/bin/true") },
    { name = "run --rm 1GB", argv = luactr("run", "--rm", "bench-big", "/bin/true") },
    crun,
  }
  rounds = math.max(1, rounds // 2)
  measure(cs, rounds)
  print()
  print(("luactr bench: image paths, %d rounds round-robin; driver btrfs (loop image)"):format(rounds))
  print()
  local by = report(cs, "crun")
  print()
  local rebuild = by["rebuild (6 steps)"].median * 1e3
  print(("target rebuild of an unchanged 6-step recipe < 50 ms: %s (%.1f ms)")
        :format(rebuild < 50 and "met" or "not met", rebuild))
  local r = by["run --rm 1MB"].median / by.crun.median
  print(("target run --rm IMAGE <= 1.0 x crun run: %s (%.2f x)"):format(r <= 1.0 and "met" or "not met", r))
  local o1 = by["run --rm 1GB"].median / by["run --rm 1MB"].median
  print(("target 1 GB image start within 1.5 x of 1 MB: %s (%.2f x)"):format(o1 <= 1.5 and "met" or "not met", o1))
  must({ "umount", root .. "/store" })
end

-- Issue 4's target: `luactr run` of /bin/true with a memory and a pids
-- limit, default caps and seccomp, against `crun run` with real cgroups
-- and the same limits (and Docker's device rules) on the same rootfs.
-- crun's cgroupfs manager takes cgroupsPath from each v1 hierarchy's
-- root: inside() has bound luactr's own cgroup over each mount point, so
-- crun's folders, like luactr's, are made beneath luactr's own cgroup.
local function limits(tmp, rootfs, rounds)
  local id = ("luactr-%012x"):format(sys.getpid())  -- the name luactr would give
  local bundle = tmp .. "/bundle-limits"
  make_bundle(bundle, rootfs, { memory = "64m", pids_limit = 100 }, "/" .. id)
  local state = tmp .. "/crun-state"
  local cs = {
    { name = "luactr -m --pids", argv = function()
        return { TOP .. "/bin/luactr", "run", "--rootfs", rootfs, "-m", "64m",
                 "--pids-limit", "100", "--", "/bin/true" }
      end },
    { name = "crun cgroupfs", argv = function(i)
        return { "crun", "--root", state, "--cgroup-manager=cgroupfs", "run",
                 "--bundle", bundle, "bench-limits-" .. i }
      end },
  }
  measure(cs, rounds)
  -- crun also makes a folder for the "0::" line of /proc/self/cgroup in
  -- /sys/fs/cgroup/unified, here a plain folder of the host's cgroup
  -- tmpfs (unified is unmounted in this namespace): remove it
  local stray = "/sys/fs/cgroup/unified/" .. id
  if #mounts_under("/sys/fs/cgroup/unified") == 0 and read_file(stray .. "/cgroup.procs") then
    os.remove(stray .. "/cgroup.procs")
    os.remove(stray)
  end
  local left = must({ "sh", "-c", "ls -d /sys/fs/cgroup/*/" .. id .. " 2>/dev/null; true" })
  if left:find("%S") then die("cgroups left behind: %s", left) end
  print()
  print(("luactr bench: issue 4, -m 64m --pids-limit 100, default caps and seccomp, %d rounds"):format(rounds))
  print("crun --cgroup-manager=cgroupfs, the same limits and device rules (v1 cgroups, made and removed each run)")
  print()
  local by = report(cs, "crun cgroupfs")
  local ratio = by["luactr -m --pids"].median / by["crun cgroupfs"].median
  print()
  print(("target %.2f x crun with cgroups: %s (luactr median = %.2f x crun)")
        :format(TARGET, ratio <= TARGET and "met" or "not met", ratio))
end

-- Issue 5's target: `luactr exec CONTAINER /bin/true` against `crun exec`,
-- each into a `sleep` container of its own: luactr's run --init from the
-- bench-small image (SIGTERM to its runner then ends it), crun's run -d
-- from a bundle of luactr's spec with sleep as its command, cgroups
-- disabled as above (luactr exec joins its container's cgroups all the
-- same). Both load the container's seccomp filter compiled already.
local function execs(tmp, rootfs, rounds)
  local root = tmp .. "/luactr-root"
  local recipe = TOP .. "/bench/images.lua"
  sys.setenv("LUACTR_ROOT", root)
  local luactr = TOP .. "/bin/luactr"
  local ok, out = capture({ luactr, "build", "-q", recipe, "bench-small" })
  if not ok then die("building %s failed:\n%s", recipe, out) end
  local state = tmp .. "/crun-state"
  local bundle = tmp .. "/bundle-exec"
  make_bundle(bundle, rootfs)
  local cjson = require "cjson"
  local config = cjson.decode(read_file(bundle .. "/config.json"))
  config.process.args = { "sleep", "100000" }
  local f = assert(io.open(bundle .. "/config.json", "w"))
  f:write(cjson.encode(config))
  f:close()
  -- both in the background, their stdio away from ours
  local function background(argv)
    local words = {}
    for i, a in ipairs(argv) do words[i] = sh_quote(a) end
    local pid, err = sys.spawnp({ "sh", "-c", "exec " .. table.concat(words, " ")
                                  .. " </dev/null >/dev/null 2>&1" })
    if not pid then die("%s: %s", argv[1], err) end
    return pid
  end
  local runner = background({ luactr, "run", "--init", "--name", "bench-exec",
                              "bench-small", "sleep", "100000" })
  local crun_run = background({ "crun", "--root", state, "--cgroup-manager=disabled",
                                "run", "-d", "--bundle", bundle, "bench-exec" })
  local how, code = sys.waitpid(crun_run)
  if how ~= "exit" or code ~= 0 then die("crun run -d: %s %d", how, code) end
  local done = false
  local function ended()
    if done then return end
    done = true
    capture({ "crun", "--root", state, "delete", "-f", "bench-exec" })
    sys.kill(runner, 15)
    sys.waitpid(runner)
  end
  at_die[#at_die + 1] = ended
  local up = false
  for _ = 1, 200 do
    up = capture({ luactr, "exec", "bench-exec", "/bin/true" })
    if up then break end
    sys.sleep(0.05)
  end
  if not up then
    ended()
    die("the luactr container bench-exec did not start")
  end
  local cs = {
    { name = "luactr exec", argv = function()
        return { luactr, "exec", "bench-exec", "/bin/true" }
      end },
    { name = "crun exec", argv = function()
        return { "crun", "--root", state, "exec", "bench-exec", "/bin/true" }
      end },
  }
  measure(cs, rounds)
  ended()
  table.remove(at_die)
  must({ "umount", root .. "/store" })
  print()
  print(("luactr bench: issue 5, exec /bin/true into a running sleep container, %d rounds"):format(rounds))
  print()
  local by = report(cs, "crun exec")
  local ratio = by["luactr exec"].median / by["crun exec"].median
  print()
  print(("target exec <= 1.0 x crun exec: %s (luactr exec median = %.2f x crun exec)")
        :format(ratio <= 1.0 and "met" or "not met", ratio))
end

local function inside(tmp, host_ns)
  local rounds = tonumber(os.getenv("BENCH_ROUNDS") or "200")
  if not rounds or rounds < 1 or math.type(rounds) ~= "integer" then
    die("BENCH_ROUNDS must be a positive integer, got %q", os.getenv("BENCH_ROUNDS"))
  end
  -- Unmount only when sure this is not the host's mount namespace.
  if mnt_namespace() == host_ns then die("not in a private mount namespace") end
  if #mounts_under("/sys/fs/cgroup/unified") > 0 then
    must({ "umount", "/sys/fs/cgroup/unified" })
  end
  -- luactr's own cgroup over each v1 mount point that shows more: crun
  -- (see limits()) then makes its cgroups beneath it, as luactr does
  for _, e in pairs(require("luactr.runtime.cgroup").detect().controllers) do
    if e.version == 1 and e.dir ~= e.mount then must({ "mount", "--bind", e.dir, e.mount }) end
  end

  local rootfs = tmp .. "/rootfs"
  must({ TOP .. "/scripts/busybox-rootfs", rootfs })
  if os.getenv("BENCH_ONLY") == "exec" then  -- issue 5's part alone
    execs(tmp, rootfs, rounds)
    os.exit(0)
  end
  make_bundle(tmp .. "/bundle", rootfs)

  local cs = contenders(tmp, rootfs)
  measure(cs, rounds)

  local listed, names = capture({ "ls", "-A", tmp .. "/crun-state" })
  if listed and names:find("%S") then
    die("crun left containers behind: %s", (names:gsub("%s+", " ")))
  end

  print(("luactr bench: start-to-exit of /bin/true, %d rounds round-robin (+%d warm-up each)")
        :format(rounds, WARMUP))
  print(("kernel %s, %d CPUs, %s"):format(
        (read_file("/proc/sys/kernel/osrelease") or "?"):gsub("%s+$", ""),
        tonumber(first_line({ "nproc" })) or 0, os.date("!%Y-%m-%d %H:%M:%S UTC")))
  print(("%s, %s; private mount ns, /sys/fs/cgroup/unified unmounted, crun cgroups disabled")
        :format(first_line({ "crun", "--version" }), first_line({ "bwrap", "--version" })))
  print()
  local by_name = report(cs, "crun")
  print()
  local ratio = by_name.luactr.median / by_name.crun.median
  print(("target %.2f x crun: %s (luactr median = %.2f x crun)")
        :format(TARGET, ratio <= TARGET and "met" or "not met", ratio))

  limits(tmp, rootfs, rounds)
  images(tmp, cs, rounds)
  execs(tmp, rootfs, rounds)
  os.exit(0)
end

-- }}}

if arg[1] == "--inside" then
  inside(arg[2], arg[3])
else
  outer()
end
