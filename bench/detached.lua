-- bench/detached.lua: what detached containers cost (issue 5).
--
--   make bench                       (or: lua5.4 bench/detached.lua, as root)
--   BENCH_CONTAINERS=100 BENCH_ROUNDS=30 make bench
--
-- Starts BENCH_CONTAINERS detached `sleep` containers from a busybox
-- image in a private store and reports: the host memory they take (the
-- drop of MemAvailable, per container), the private memory of one
-- luactr monitor (Pss_Anon in smaps_rollup) next to conmon's as podman
-- runs it (when podman is installed: `apt-get install podman conmon
-- runc`; podman's crun refuses this machine's hybrid cgroups, so runc),
-- and how long `luactr ps` takes with them all there (median of
-- BENCH_ROUNDS). Everything it starts is removed at the end.

local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local TOP = lib.TOP

local sys = require("luactr.core").sys
local LUACTR = TOP .. "/bin/luactr"
local N = tonumber(os.getenv("BENCH_CONTAINERS")) or 100
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 30
local PODMAN_N = 5

local q = lib.quote

local sh = lib.sh

local function must(cmd)
  local ok, out = sh(cmd)
  if not ok then
    io.stderr:write("bench: ", cmd, " failed:\n", out)
    os.exit(1)
  end
  return out
end

local read = lib.read_file

local function meminfo(key)
  return tonumber(read("/proc/meminfo"):match(key .. ":%s+(%d+) kB"))
end

-- what the kernel keeps for processes and their namespaces, mounts,
-- cgroups: slab, kernel stacks, page tables (KiB)
local function kernel_memory()
  return meminfo("Slab") + meminfo("KernelStack") + meminfo("PageTables")
end

local function rollup(pid, key)
  local s = read("/proc/" .. pid .. "/smaps_rollup") or ""
  return tonumber(s:match("\n" .. key .. ":%s+(%d+) kB"))
end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- seconds for argv to run, stdout to /dev/null
local function timed(argv)
  local t0 = sys.monotonic()
  local pid = assert(sys.spawnp(argv, { stdout = "/dev/null" }))
  local how, code = sys.waitpid(pid)
  local t = sys.monotonic() - t0
  if how ~= "exit" or code ~= 0 then
    io.stderr:write("bench: ", table.concat(argv, " "), " failed\n")
    os.exit(1)
  end
  return t
end

local root = must("mktemp -d /tmp/luactr-bench-detached.XXXXXX"):gsub("%s+$", "")
sys.setenv("LUACTR_ROOT", root)
local podman_root = root .. "/podman"
local PODMAN = ("podman --root %s/root --runroot %s/run --cgroup-manager cgroupfs "
  .. "--events-backend none --runtime runc"):format(podman_root, podman_root)
local have_podman = sh("command -v podman && command -v runc")

local function cleanup()
  sh(("%s ps -a -q | xargs -r -n 10 %s rm -f"):format(q(LUACTR), q(LUACTR)))
  if have_podman then sh(PODMAN .. " rm -a -f -t 0") end
  sh("umount " .. q(root .. "/store"))
  -- what podman left mounted, deepest first; its conmons run `podman
  -- container cleanup` as they go, which may mount again: a few tries
  for _ = 1, 20 do
    local points = {}
    for line in (read("/proc/self/mountinfo") or ""):gmatch("[^\n]+") do
      local point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
      if point and point:sub(1, #podman_root) == podman_root then points[#points + 1] = point end
    end
    table.sort(points, function(a, b) return #a > #b end)
    for _, point in ipairs(points) do sh("umount " .. q(point)) end
    if sh("rm -rf --one-file-system " .. q(root)) then return end
    sys.sleep(0.5)
  end
  must("rm -rf --one-file-system " .. q(root))
end

local ok, err = pcall(function()
  must(("cd %s && %s recipes/hello.lua"):format(q(TOP), q(LUACTR)))
  -- warm the store and the page cache
  timed({ LUACTR, "run", "--rm", "busybox", "true" })

  local before, kbefore = meminfo("MemAvailable"), kernel_memory()
  local starts = {}
  for i = 1, N do
    starts[i] = timed({ LUACTR, "run", "-d", "--name", "bench" .. i, "busybox", "sleep", "100000" })
  end
  sys.sleep(1)  -- the monitors' own pages settle
  local after, kafter = meminfo("MemAvailable"), kernel_memory()
  local json = require "luactr.json"
  local anon, pss, cpss, n = 0, 0, 0, 0
  for _, dir in ipairs(require("luactr.core").fs.readdir(root .. "/store/containers") or {}) do
    local st = json.decode(read(root .. "/store/containers/" .. dir .. "/state.json") or "null")
    if type(st) == "table" and st.runner and st.pid then
      anon = anon + (rollup(st.runner, "Pss_Anon") or 0)
      pss = pss + (rollup(st.runner, "Pss") or 0)
      cpss = cpss + (rollup(st.pid, "Pss") or 0)
      n = n + 1
    end
  end
  print(("detached containers: %d running"):format(n))
  print(("  run -d, median of %d:             %6.1f ms"):format(N, median(starts) * 1000))
  print(("  host memory per container:       %6d KiB (MemAvailable drop / %d; noisy)")
    :format((before - after) // N, N))
  print(("  kernel memory per container:     %6d KiB (slab, stacks, page tables)")
    :format((kafter - kbefore) // N))
  print(("  luactr monitor Pss_Anon (mean):  %6d KiB   (target <= 256)"):format(anon // n))
  print(("  luactr monitor Pss (mean):       %6d KiB"):format(pss // n))
  print(("  container (sleep) Pss (mean):    %6d KiB"):format(cpss // n))

  -- a container failing in a loop: its monitor between two runs, in a
  -- restart's back-off (luactr-monitor wait=MS), waits natively too
  local id = must(("%s run -d --restart always busybox sh -c 'exit 1'"):format(q(LUACTR))):match("%x+")
  local waiting
  for _ = 1, 500 do
    local st = json.decode(read(root .. "/store/containers/" .. id .. "/state.json") or "null")
    local cmd = type(st) == "table" and st.runner and read("/proc/" .. st.runner .. "/cmdline") or ""
    if cmd:find("\0wait=%d+\0") then
      waiting = rollup(st.runner, "Pss_Anon")
      if waiting then break end
    end
    sys.sleep(0.01)
  end
  must(("%s rm -f %s"):format(q(LUACTR), id))
  print(("  monitor in a back-off Pss_Anon:  %6s KiB"):format(waiting or "?"))

  local ps, psa = {}, {}
  for i = 1, ROUNDS do
    ps[i] = timed({ LUACTR, "ps" })
    psa[i] = timed({ LUACTR, "ps", "-a" })
  end
  print(("  luactr ps with %d, median of %d:  %6.1f ms   (target < 50)"):format(n, ROUNDS, median(ps) * 1000))
  print(("  luactr ps -a, median:            %6.1f ms"):format(median(psa) * 1000))

  if have_podman then
    local tar = root .. "/bb.tar"
    must(("%s/scripts/busybox-rootfs %s/bb >/dev/null && tar -C %s/bb -cf %s ."):format(q(TOP), q(root), q(root), q(tar)))
    must(PODMAN .. " import " .. q(tar) .. " localhost/luactr-bench-bb")
    local canon, cpss2, cn = 0, 0, 0
    for i = 1, PODMAN_N do
      -- podman's default rlimits are above what this machine lets root set
      must(("%s run -d --network none --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 "
        .. "--name luactr-bench-%d localhost/luactr-bench-bb sleep 100000"):format(PODMAN, i))
    end
    sys.sleep(1)
    for i = 1, PODMAN_N do
      local pid = tonumber(must(("%s inspect --format '{{.State.ConmonPid}}' luactr-bench-%d"):format(PODMAN, i)))
      if pid and pid > 0 then
        canon = canon + (rollup(pid, "Pss_Anon") or 0)
        cpss2 = cpss2 + (rollup(pid, "Pss") or 0)
        cn = cn + 1
      end
    end
    if cn > 0 then
      print(("  conmon (podman) Pss_Anon (mean of %d): %d KiB, Pss %d KiB"):format(cn, canon // cn, cpss2 // cn))
    end
  else
    print("  conmon: podman is not installed (apt-get install podman conmon runc)")
  end
end)
cleanup()
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end
