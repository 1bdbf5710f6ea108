-- Cgroups: where a container's cgroup goes (v1, v2 and hybrid hosts),
-- the limits written there, what they hold a container to, and what is
-- left once it is gone. The v2 files are checked on a fake cgroupfs tree;
-- this host's v1 hierarchies for real (#root).
local support = require "support"
local cgroup = require "luactr.runtime.cgroup"
local resources = require "luactr.spec.resources"
local core = require "luactr.core"
local json = require "luactr.json"

local q, sh = support.q, support.sh
local FIXTURES = support.TOP .. "/tests/fixtures/cgroup/"

local function fixture(name)
  return assert(support.readfile(FIXTURES .. name), name)
end

local function exists(path)
  return core.fs.stat(path) ~= nil
end

local function trim(s)
  return s and (s:gsub("%s+$", ""))
end

-- Polls `f` every 20 ms until it returns a true value (returned), for at
-- most `timeout` seconds.
local function wait_for(f, timeout)
  local deadline = core.sys.monotonic() + (timeout or 10)
  repeat
    local v = f()
    if v then return v end
    core.sys.sleep(0.02)
  until core.sys.monotonic() > deadline
  return nil
end

-- Catches a luactr error, returns its message.
local function raised(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

describe("luactr.runtime.cgroup", function()
  describe("sizes and run options", function()
    it("turns run options into the OCI spec's linux.resources", function()
      local r = resources.of{ memory = "64m", memory_reservation = "32m", cpus = "0.5",
        cpu_shares = 512, cpuset_cpus = "0", cpuset_mems = "0", pids_limit = 100,
        blkio_weight = 300 }
      assert.are.same({
        memory = { limit = 67108864, swap = 134217728, reservation = 33554432 },
        cpu = { shares = 512, quota = 50000, period = 100000, cpus = "0", mems = "0" },
        pids = { limit = 100 },
        blockIO = { weight = 300 },
      }, r)
      assert.are.same({ limit = 67108864, swap = -1 },
        resources.of{ memory = "64m", memory_swap = "-1" }.memory)
      assert.are.same({ limit = -1 }, resources.of{ pids_limit = 0 }.pids)
      assert.is_nil(resources.of{ hostname = "x" })
    end)

    it("refuses wrong limits, naming the option", function()
      assert.matches("run: memory: invalid size 'lots'", raised(resources.of, { memory = "lots" }))
      assert.matches("run: memory: the minimum is 6m", raised(resources.of, { memory = "1m" }))
      assert.matches("memory_swap needs memory", raised(resources.of, { memory_swap = "1g" }))
      assert.matches("memory_swap .* must be at least memory",
        raised(resources.of, { memory = "64m", memory_swap = "32m" }))
      assert.matches("memory_reservation must be at most memory",
        raised(resources.of, { memory = "64m", memory_reservation = "128m" }))
      assert.matches("cpus: expected a positive number", raised(resources.of, { cpus = "-1" }))
      assert.matches("cpus: the range is from 0.01 to", raised(resources.of, { cpus = 4096 }))
      assert.matches("cpu_shares: expected an integer from 2 to 262144",
        raised(resources.of, { cpu_shares = 1 }))
      assert.matches("cpuset_cpus: expected a list such as 0%-2,4, got '0%-'",
        raised(resources.of, { cpuset_cpus = "0-" }))
      assert.matches("blkio_weight: expected an integer from 10 to 1000",
        raised(resources.of, { blkio_weight = 5 }))
      assert.matches("device_read_bps%[1%]: expected DEVICE:RATE",
        raised(resources.of, { device_read_bps = { "sda" } }))
      assert.matches("device_read_bps%[1%]: /dev/null is not a block device",
        raised(resources.of, { device_read_bps = { "/dev/null:1m" } }))
    end)
  end)

  describe("limit files", function()
    local r = {
      memory = { limit = 67108864, swap = 134217728, reservation = 33554432 },
      cpu = { shares = 512, quota = 50000, period = 100000, cpus = "0-1", mems = "0" },
      pids = { limit = 100 },
      blockIO = { weight = 300,
        throttleReadBpsDevice = { { major = 8, minor = 0, rate = 1048576 } },
        throttleWriteBpsDevice = { { major = 8, minor = 16, rate = 2097152 } } },
    }

    local function files(list)
      local t = {}
      for _, s in ipairs(list) do t[#t + 1] = s.controller .. " " .. s.file .. " " .. s.value end
      return t
    end

    it("are v1's, as crun writes them", function()
      assert.are.same({
        "memory memory.limit_in_bytes 67108864",
        "memory memory.memsw.limit_in_bytes 134217728",
        "memory memory.soft_limit_in_bytes 33554432",
        "cpu cpu.shares 512",
        "cpu cpu.cfs_period_us 100000",
        "cpu cpu.cfs_quota_us 50000",
        "cpuset cpuset.cpus 0-1",
        "cpuset cpuset.mems 0",
        "pids pids.max 100",
        "blkio blkio.weight 300",
        "blkio blkio.throttle.read_bps_device 8:0 1048576",
        "blkio blkio.throttle.write_bps_device 8:16 2097152",
      }, files(cgroup.settings(r, 1)))
    end)

    it("are v2's, with crun's conversions", function()
      local list = cgroup.settings(r, 2)
      assert.are.same({
        "memory memory.max 67108864",
        "memory memory.swap.max 67108864",  -- v2 counts swap alone
        "memory memory.low 33554432",
        "cpu cpu.weight 20",                -- 1 + (512 - 2) * 9999 / 262142
        "cpu cpu.max 50000 100000",
        "cpuset cpuset.cpus 0-1",
        "cpuset cpuset.mems 0",
        "pids pids.max 100",
        "blkio io.bfq.weight 300",
        "blkio io.max 8:0 rbps=1048576",
        "blkio io.max 8:16 wbps=2097152",
      }, files(list))
      -- without bfq, io.weight on its own scale
      assert.are.same({ file = "io.weight", value = "2930" }, list[9].alt)
      assert.is_true(list[2].optional)  -- swap accounting may be off
      assert.are.same({ "memory memory.max max", "memory memory.swap.max max", "pids pids.max max" },
        files(cgroup.settings({ memory = { limit = -1, swap = -1 }, pids = { limit = -1 } }, 2)))
    end)

    it("convert shares to weights as crun and runc do", function()
      assert.are.equal(1, cgroup.shares_to_weight(2))
      assert.are.equal(39, cgroup.shares_to_weight(1024))
      assert.are.equal(10000, cgroup.shares_to_weight(262144))
    end)
  end)

  describe("layout detection", function()
    it("finds each controller's hierarchy on a v1 host, own cgroups nested", function()
      local layout = assert(cgroup.detect{ mountinfo = fixture("v1.mountinfo"),
        cgroup = fixture("v1.cgroup"), root = "/nowhere" })
      assert.are.equal("v1", layout.mode)
      assert.is_nil(layout.unified)
      local c = layout.controllers
      assert.are.equal("/nowhere/sys/fs/cgroup/memory/user.slice/user-1000.slice/session-3.scope", c.memory.dir)
      assert.are.equal("/nowhere/sys/fs/cgroup/pids/user.slice/user-1000.slice/session-3.scope", c.pids.dir)
      -- cpu and cpuacct share one hierarchy, and so one folder
      assert.are.equal("/nowhere/sys/fs/cgroup/cpu,cpuacct/user.slice", c.cpu.dir)
      assert.are.equal(c.cpu.dir, c.cpuacct.dir)
      assert.are.equal("/nowhere/sys/fs/cgroup/cpuset", c.cpuset.dir)
      assert.are.equal("/nowhere/sys/fs/cgroup/blkio/user.slice", c.blkio.dir)
      assert.are.equal("/nowhere/sys/fs/cgroup/freezer", c.freezer.dir)
      for _, e in pairs(c) do assert.are.equal(1, e.version) end
      assert.is_nil(c["name=systemd"])
    end)

    it("finds the unified hierarchy and its controllers on a v2 host", function()
      local root = support.tmpdir()
      local own = root .. "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/luactr.scope"
      support.write(own .. "/cgroup.controllers", "cpuset cpu io memory pids\n")
      support.write(own .. "/cgroup.subtree_control", "cpu memory pids\n")
      local layout = assert(cgroup.detect{ mountinfo = fixture("v2.mountinfo"),
        cgroup = fixture("v2.cgroup"), root = root })
      assert.are.equal("v2", layout.mode)
      assert.are.equal(own, layout.unified.dir)
      assert.are.same({ cpu = true, memory = true, pids = true }, layout.unified.delegated)
      local names = {}
      for name, e in pairs(layout.controllers) do
        assert.are.equal(2, e.version)
        assert.are.equal(own, e.dir)
        names[#names + 1] = name
      end
      table.sort(names)
      -- io is called blkio, the core files stand for cpuacct and freezer,
      -- and a device program (always possible) for devices
      assert.are.same({ "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids" }, names)
    end)

    it("takes the v1 controllers on this machine's hybrid layout", function()
      local layout = assert(cgroup.detect{ mountinfo = fixture("hybrid.mountinfo"),
        cgroup = fixture("hybrid.cgroup"), root = support.tmpdir() })
      assert.are.equal("hybrid", layout.mode)
      local c = layout.controllers
      assert.matches("/sys/fs/cgroup/memory/process_api/%x+$", c.memory.dir)
      assert.matches("/sys/fs/cgroup/pids$", c.pids.dir)
      assert.matches("/sys/fs/cgroup/cpuacct$", c.cpuacct.dir)
      for _, e in pairs(c) do assert.are.equal(1, e.version) end
      assert.matches("/sys/fs/cgroup/unified$", layout.unified.dir)
    end)

    it("sees a hierarchy through the mount on top, when one covers another", function()
      -- luactr's own memory cgroup bound over the hierarchy's mount point
      -- (as bench/bench.lua does for crun, in a private mount namespace)
      local own = "/process_api/d677ad3391465957d25458ba1c70b747"
      local layout = assert(cgroup.detect{ mountinfo = fixture("hybrid.mountinfo")
        .. "99 34 0:31 " .. own .. " /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n",
        cgroup = fixture("hybrid.cgroup"), root = "/x" })
      assert.are.equal("/x/sys/fs/cgroup/memory", layout.controllers.memory.dir)
      assert.are.equal("/x/sys/fs/cgroup/pids", layout.controllers.pids.dir)
    end)

    it("takes a controller v1 lacks from the unified hierarchy", function()
      local root = support.tmpdir()
      support.write(root .. "/sys/fs/cgroup/unified/cgroup.controllers", "pids\n")
      local mountinfo = fixture("hybrid.mountinfo"):gsub("[^\n]*/sys/fs/cgroup/pids [^\n]*\n", "")
      local layout = assert(cgroup.detect{ mountinfo = mountinfo,
        cgroup = fixture("hybrid.cgroup"), root = root })
      assert.are.equal(2, layout.controllers.pids.version)
      assert.are.equal(root .. "/sys/fs/cgroup/unified", layout.controllers.pids.dir)
      assert.are.equal(1, layout.controllers.memory.version)
    end)

    it("follows mounts of a nested cgroup, and skips a path they do not show", function()
      local layout = assert(cgroup.detect{ mountinfo = fixture("nested.mountinfo"),
        cgroup = fixture("nested.cgroup"), root = "" })
      local c = layout.controllers
      assert.are.equal("/sys/fs/cgroup/memory", c.memory.dir)
      assert.are.equal("/sys/fs/cgroup/pids/work", c.pids.dir)
      assert.are.equal("/sys/fs/cgroup/cpu,cpuacct/work/deeper", c.cpu.dir)
      assert.is_nil(c.freezer)  -- /elsewhere is outside the mount's /docker/4f1e2d
    end)

    it("says so when no cgroup filesystem is mounted", function()
      local layout, err = cgroup.detect{ mountinfo = "26 1 254:0 / / rw - ext4 /dev/vda rw\n",
        cgroup = "0::/\n" }
      assert.is_nil(layout)
      assert.are.equal("no cgroup filesystem is mounted", err)
    end)

    it("finds this machine's own cgroups #root", function()
      local layout = assert(cgroup.detect())
      assert.are.equal("hybrid", layout.mode)
      local own
      for line in io.lines("/proc/self/cgroup") do
        own = own or line:match("^%d+:memory:(.*)$")
      end
      assert.are.equal("/sys/fs/cgroup/memory" .. (own == "/" and "" or own), layout.controllers.memory.dir)
    end)
  end)

  describe("on a fake v2 tree", function()
    local ID = ("0123456789ab"):rep(5) .. "cdef"

    -- A v2 host whose luactr runs in /luactr.scope, with `delegated`
    -- controllers enabled for its children. The folder the container gets
    -- is made ahead, with the files the kernel would give it.
    local function tree(delegated)
      local root = support.tmpdir()
      local own = root .. "/sys/fs/cgroup/luactr.scope"
      support.write(own .. "/cgroup.controllers", "cpuset cpu io memory pids\n")
      support.write(own .. "/cgroup.subtree_control", delegated .. "\n")
      local leaf = own .. "/luactr-0123456789ab"
      for _, f in ipairs({ "cgroup.procs", "cgroup.controllers", "cgroup.freeze", "memory.max",
          "memory.swap.max", "memory.low", "cpu.max", "cpu.weight", "cpuset.cpus",
          "cpuset.mems", "pids.max", "io.max", "io.weight" }) do
        support.write(leaf .. "/" .. f, "")
      end
      local layout = assert(cgroup.detect{ mountinfo = fixture("v2.mountinfo"),
        cgroup = "0::/luactr.scope\n", root = root })
      return layout, leaf
    end

    it("writes the exact values into the container's folder", function()
      local layout, leaf = tree("cpuset cpu io memory pids")
      local dev = core.fs.stat("/dev/vda") and "/dev/vda" or "/dev/loop0"
      local rdev = core.fs.stat(dev).rdev
      local r = resources.of{ memory = "64m", memory_swap = "96m", memory_reservation = "16m",
        cpus = 0.5, cpu_shares = 512, cpuset_cpus = "0", pids_limit = 100, blkio_weight = 300,
        device_read_bps = { dev .. ":1mb" } }
      local cg = cgroup.create(layout, ID, r)
      assert.are.same({ leaf }, cg:folders())
      local function value(f) return support.readfile(leaf .. "/" .. f) end
      assert.are.equal("67108864", value("memory.max"))
      assert.are.equal("33554432", value("memory.swap.max"))
      assert.are.equal("16777216", value("memory.low"))
      assert.are.equal("50000 100000", value("cpu.max"))
      assert.are.equal("20", value("cpu.weight"))
      assert.are.equal("0", value("cpuset.cpus"))
      assert.are.equal("100", value("pids.max"))
      assert.are.equal("2930", value("io.weight"))  -- no io.bfq.weight here
      assert.are.equal(("%d:%d rbps=1048576"):format(rdev >> 8 & 0xfff, rdev & 0xff), value("io.max"))
      -- the state's record of it opens as v2 again
      local again = cgroup.open(cg.paths)
      assert.are.equal(2, again.versions.memory)
      assert.are.equal(2, again.versions.pids)
    end)

    it("refuses a limit whose controller is not delegated, making nothing", function()
      local layout = tree("cpu pids")
      local own = layout.unified.dir
      support.must("rm -rf " .. q(own .. "/luactr-0123456789ab"))
      local msg = raised(cgroup.create, layout, ID, resources.of{ memory = "64m" })
      assert.matches("the memory controller is not enabled in " .. own:gsub("%p", "%%%0")
        .. "/cgroup.subtree_control %(needed for memory%); luactr does not change a cgroup it did not make", msg)
      assert.is_false(exists(own .. "/luactr-0123456789ab"))
    end)

    it("runs without a controller that is not delegated when no limit needs it", function()
      local layout, leaf = tree("pids")
      local cg = cgroup.create(layout, ID, resources.of{ pids_limit = 10 })
      assert.are.equal("10", support.readfile(leaf .. "/pids.max"))
      assert.are.equal(leaf, cg.paths.pids)
      assert.are.equal(leaf, cg.paths.freezer)  -- cgroup.freeze is always there
      assert.is_nil(cg.paths.memory)
    end)
  end)
end)

-- {====== the real thing: this machine's v1 hierarchies

-- Our own cgroup folder in the memory hierarchy (private to this run's
-- session: the other hierarchies' roots are shared with other runs).
local function own_memory_dir()
  return assert(cgroup.detect()).controllers.memory.dir
end

local function leftovers(dir)
  local t = {}
  for _, name in ipairs(core.fs.readdir(dir) or {}) do
    if name:match("^luactr%-") then t[#t + 1] = name end
  end
  table.sort(t)
  return t
end

local ID12 = "/luactr%-" .. ("%x"):rep(12) .. "$"

-- The container cgroup folders (luactr-<id12>: never the host's own,
-- which tests must not touch) of process `pid` as the host sees them:
-- controller -> folder.
local function cgroups_of(pid)
  local text = support.readfile("/proc/" .. pid .. "/cgroup")
  if not text then return nil end
  local layout = assert(cgroup.detect{ cgroup = text })
  local t = {}
  for name, e in pairs(layout.controllers) do
    if e.dir:match(ID12) then t[name] = e.dir end
  end
  return t
end

-- Starts `luactr ARGS` (shell words) in the background, with `env` (shell
-- words) before it. The handle: luactr's pid, `container()` (PID 1 of the
-- container: luactr's child), `folders` (its luactr-* cgroup folders,
-- once `container()` was called), `wait()` -> status, out, err, and
-- `stop()`, which kills the container through its cgroup if it still runs.
local function start(env, args)
  local dir = support.tmpdir()
  support.write(dir .. "/run.sh", ([[
cd %s
export %s
%s %s > %s/out 2> %s/err < /dev/null &
echo $! > %s/pid.tmp && mv %s/pid.tmp %s/pid
wait $!
echo $? > %s/status.tmp && mv %s/status.tmp %s/status
]]):format(q(support.TOP), env, support.LUACTR, args, dir, dir, dir, dir, dir, dir, dir, dir))
  assert(os.execute("sh " .. q(dir .. "/run.sh") .. " >/dev/null 2>&1 &"))
  local h = { dir = dir, folders = {} }
  h.pid = tonumber(wait_for(function() return support.readfile(dir .. "/pid") end))
  assert(h.pid, "luactr did not start")
  function h.out() return support.readfile(dir .. "/out") or "" end
  function h.container()
    local child = wait_for(function()
      local c = support.readfile(("/proc/%d/task/%d/children"):format(h.pid, h.pid))
      return c and tonumber(c:match("%d+"))
    end)
    assert(child, "no container")
    -- the container joins its cgroup first thing: wait for it to have
    for _ = 1, 100 do
      local cgs = cgroups_of(child) or {}
      if cgs.memory then
        h.folders = cgs
        break
      end
      core.sys.sleep(0.01)
    end
    return child
  end
  function h.ready(word)
    return wait_for(function() return h.out():find(word or "ready", 1, true) end)
  end
  function h.wait(timeout)
    local st = wait_for(function() return support.readfile(dir .. "/status") end, timeout or 30)
    return tonumber(st), h.out(), support.readfile(dir .. "/err") or ""
  end
  function h.stop()
    -- the container may outlive luactr: whatever is in its folders goes
    for _, d in pairs(h.folders) do
      assert(d:match(ID12))
      if exists(d) then core.cgroup.kill(d) end
    end
    h.wait(10)
    for _, d in pairs(h.folders) do
      if exists(d) then core.cgroup.remove(d, 2) end
    end
  end
  return h
end

local function rootfs_env()
  return "LUACTR_ROOT=" .. q(support.ROOT)
end

local function run_rootfs(options, script)
  return start(rootfs_env(), ("run --rootfs %s %s -- sh -c %s"):format(q(support.rootfs()),
    options, q(script)))
end

local function read(dir, file)
  return trim(support.readfile(dir .. "/" .. file))
end

local function gone(folders)
  for c, d in pairs(folders) do
    if exists(d) then return false, c .. " " .. d end
  end
  return true
end

describe("luactr run's cgroup #root", function()
  it("is made beneath luactr's own cgroup, limited as asked, and the container is in it", function()
    local own = own_memory_dir()
    local h = run_rootfs("-m 64m --cpus 0.5 --pids-limit 100 --cpu-shares 512 --cpuset-cpus 0",
      "cat /proc/self/cgroup; echo ready; sleep 5")
    finally(h.stop)
    local pid = h.container()
    assert.truthy(h.ready())
    local f = h.folders
    local id12 = f.memory:match("/luactr%-(%x+)$")
    assert.are.equal(12, #id12)
    assert.are.equal(own .. "/luactr-" .. id12, f.memory)
    for _, c in ipairs({ "pids", "cpu", "cpuacct", "cpuset", "freezer", "blkio" }) do
      assert.are.equal(("/sys/fs/cgroup/%s/luactr-%s"):format(c, id12), f[c])
    end
    assert.are.equal("67108864", read(f.memory, "memory.limit_in_bytes"))
    assert.are.equal("134217728", read(f.memory, "memory.memsw.limit_in_bytes"))
    assert.are.equal("50000", read(f.cpu, "cpu.cfs_quota_us"))
    assert.are.equal("100000", read(f.cpu, "cpu.cfs_period_us"))
    assert.are.equal("512", read(f.cpu, "cpu.shares"))
    assert.are.equal("100", read(f.pids, "pids.max"))
    assert.are.equal("0", read(f.cpuset, "cpuset.cpus"))
    assert.are.equal("0", read(f.cpuset, "cpuset.mems"))  -- its parent's, copied
    -- every process of the container is in it, and sees it as its root
    assert.are.same({ pid }, core.cgroup.procs(f.pids))
    for line in h.out():gmatch("[^\n]+") do
      if line:match("^%d+:[%w,]+:") and not line:match("name=") then
        assert.matches(":/$", line)
      end
    end
    h.stop()
    assert.is_true(gone(f))
  end)

  it("writes memory, swap, reservation and block I/O limits", function()
    local dev = core.fs.stat("/dev/vda") and "/dev/vda" or "/dev/loop0"
    local rdev = core.fs.stat(dev).rdev
    local mm = ("%d:%d"):format(rdev >> 8 & 0xfff, rdev & 0xff)
    local h = run_rootfs(("-m 64m --memory-swap 96m --memory-reservation 32m --blkio-weight 300 "
      .. "--device-read-bps %s:1mb --device-write-bps %s:2m"):format(dev, dev), "echo ready; sleep 5")
    finally(h.stop)
    h.container()
    assert.truthy(h.ready())
    local f = h.folders
    assert.are.equal("100663296", read(f.memory, "memory.memsw.limit_in_bytes"))
    assert.are.equal("33554432", read(f.memory, "memory.soft_limit_in_bytes"))
    assert.are.equal("300", read(f.blkio, "blkio.bfq.weight"))
    assert.are.equal(mm .. " 1048576", read(f.blkio, "blkio.throttle.read_bps_device"))
    assert.are.equal(mm .. " 2097152", read(f.blkio, "blkio.throttle.write_bps_device"))
  end)

  it("freezes and thaws the container", function()
    local h = run_rootfs("", "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; done")
    finally(h.stop)
    h.container()
    local cg = cgroup.open(h.folders)
    local count = support.rootfs() .. "/tmp/count"
    assert.truthy(wait_for(function() return support.readfile(count) end))
    assert.is_true(cg:freeze())
    assert.are.equal("FROZEN", read(h.folders.freezer, "freezer.state"))
    local n = support.readfile(count)
    core.sys.sleep(0.3)
    assert.are.equal(n, support.readfile(count))  -- not one step further
    assert.is_true(cg:thaw())
    assert.are.equal("THAWED", read(h.folders.freezer, "freezer.state"))
    assert.truthy(wait_for(function() return support.readfile(count) ~= n end))
    os.remove(count)
  end)

  it("goes beneath --cgroup-parent, whose folders it makes and removes", function()
    local own = own_memory_dir()
    local parent = "luactr-test-" .. tostring(core.sys.getpid())
    finally(function()
      for _, d in ipairs({ own .. "/" .. parent .. "/sub", own .. "/" .. parent,
                           "/sys/fs/cgroup/cpuset/" .. parent .. "/sub", "/sys/fs/cgroup/cpuset/" .. parent }) do
        if exists(d) then core.cgroup.remove(d, 1) end
      end
    end)
    local h = run_rootfs("-m 64m --cpuset-cpus 0 --cgroup-parent " .. parent .. "/sub", "echo ready; sleep 5")
    finally(h.stop)
    h.container()
    assert.truthy(h.ready())
    assert.matches("^" .. (own .. "/" .. parent .. "/sub/luactr-"):gsub("%p", "%%%0") .. "%x+$", h.folders.memory)
    assert.matches("^/sys/fs/cgroup/cpuset/" .. parent:gsub("%p", "%%%0") .. "/sub/luactr%-%x+$", h.folders.cpuset)
    assert.are.equal("0", read(h.folders.cpuset, "cpuset.cpus"))
    assert.are.equal(0, (h.wait()))
    assert.is_false(exists(own .. "/" .. parent))
    assert.is_false(exists("/sys/fs/cgroup/cpuset/" .. parent))
  end)

  it("refuses a wrong limit with status 125 and makes no cgroup", function()
    local own = own_memory_dir()
    local before = leftovers(own)
    local st, _, err = support.run("--memory 1x", "true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: run: memory: invalid size '1x' (e.g. 512k, 64m, 1g)\n", err)
    st, _, err = support.run("--pids-limit many", "true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: run: --pids-limit: expected an integer, got 'many'\n", err)
    st, _, err = support.run("--cpuset-cpus 4095", "true")
    assert.are.equal(125, st)
    assert.matches("^luactr: run: cgroup: cpuset.cpus 4095: write /sys/fs/cgroup/cpuset/luactr%-%x+/cpuset.cpus: ", err)
    assert.are.same(before, leftovers(own))
  end)

  it("holds a fork bomb with --pids-limit, and the host goes on", function()
    local h = run_rootfs("--pids-limit 50 --cpus 1",
      "sleep 3 & s=$!; (f() { f | f & }; f) 2>/dev/null & echo ready; wait $s; echo survived")
    finally(h.stop)
    h.container()
    local f = h.folders
    assert.truthy(h.ready())
    local most = 0
    wait_for(function()
      for _, file in ipairs({ "pids.current", "pids.peak" }) do  -- peak: where the kernel has it
        local n = tonumber(read(f.pids, file) or "")
        if n and n > most then most = n end
      end
      return support.readfile(h.dir .. "/status")
    end, 20)
    local st, out = h.wait()
    assert.are.equal(0, st)
    assert.are.equal("ready\nsurvived\n", out)
    assert.is_true(most <= 50, "pids.current reached " .. most)
    assert.is_true(most >= 40, "the bomb did not go off: " .. most)
    -- the host can still fork, and no process of the bomb is left
    assert.are.equal(0, (sh("true")))
    assert.is_true(gone(f))
  end)

  it("lets the OOM killer end a memory hog inside its limit, with status 137", function()
    local own = own_memory_dir()
    local before = leftovers(own)
    local st = support.run_sh("-m 32m", "tail /dev/zero")
    assert.are.equal(137, st)
    st = support.run_sh("-m 32m", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo kept ${#x}")
    assert.are.equal(137, st)
    -- luactr is fine and runs the next one
    local out
    st, out = support.run_sh("-m 32m", "echo fine")
    assert.are.equal(0, st)
    assert.are.equal("fine\n", out)
    assert.are.same(before, leftovers(own))
  end)

  it("cannot change its own limits from inside", function()
    local h = run_rootfs("--pids-limit 50 -m 64m", [[
ls -A /sys/fs/cgroup | wc -l
echo 1000 > /sys/fs/cgroup/pids/pids.max && echo wrote-sys
echo 1000 > /sys/fs/cgroup/pids.max && echo wrote-sys2
mkdir -p /tmp/cg
mount -t cgroup -o pids none /tmp/cg && echo 1000 > /tmp/cg/pids.max && echo wrote-v1
mount -t cgroup -o memory none /tmp/cg && echo -1 > /tmp/cg/memory.limit_in_bytes && echo wrote-mem
mount -t cgroup2 none /tmp/cg && echo wrote-v2
mount -t tmpfs none /sys/fs/cgroup && echo mounted-over
mount -o remount,rw /sys && echo remounted
grep pids /proc/self/cgroup
echo ready; sleep 5]])
    finally(h.stop)
    h.container()
    assert.truthy(h.ready())
    local out = h.out()
    assert.matches("^0\n%d+:pids:/\nready\n$", out)  -- nothing written, mounted or seen
    assert.are.equal("50", read(h.folders.pids, "pids.max"))
    assert.are.equal("67108864", read(h.folders.memory, "memory.limit_in_bytes"))
  end)

  it("leaves no cgroup behind, whichever way the run ends", function()
    local own = own_memory_dir()
    local before = leftovers(own)
    assert.are.equal(0, (support.run_sh("--pids-limit 20", "true")))
    assert.are.equal(3, (support.run_sh("-m 64m", "exit 3")))
    assert.are.equal(127, (support.run("-m 64m", "no-such-command")))
    assert.are.equal(125, (support.run("-m 64m -w /not-there --read-only", "true")))
    -- killed by a signal, all its processes with it
    local h = run_rootfs("--init -m 64m", "sleep 30 & sleep 30 & echo ready; wait")
    finally(h.stop)
    h.container()
    assert.truthy(h.ready())
    local f = h.folders
    assert.are.equal(4, #core.cgroup.procs(f.pids))  -- init, sh and its two sleeps
    core.sys.kill(h.pid, core.sys.signals.TERM)
    assert.are.equal(143, (h.wait()))
    assert.is_true(gone(f))
    assert.are.same(before, leftovers(own))
  end)

  it("sweeps away the empty folders of killed runs it has a record of, and nothing else", function()
    -- a parent of our own, so that no other run's folder is in reach
    local parent = "/sys/fs/cgroup/pids/luactr-test-sweep-" .. tostring(core.sys.getpid())
    local records = support.tmpdir()
    local names = { "luactr-abcdefabcdef", "luactr-123456123456", "luactr-0a0a0a0a0a0a", "other" }
    finally(function()
      for _, d in ipairs(names) do
        if exists(parent .. "/" .. d) then core.cgroup.kill(parent .. "/" .. d); core.cgroup.remove(parent .. "/" .. d, 1) end
      end
      if exists(parent) then core.cgroup.remove(parent, 1) end
    end)
    assert(core.cgroup.create(parent))
    for _, d in ipairs(names) do assert(core.cgroup.create(parent .. "/" .. d)) end
    -- a killed run's record (its lock free), a live run's (held), and a
    -- record that names a folder that is not its own
    local killed = cgroup.claim("abcdefabcdef" .. ("0"):rep(52), records)
    killed:planned({ pids = parent .. "/luactr-abcdefabcdef" })
    killed.lock:unlock()
    local live <close> = cgroup.claim("123456123456" .. ("0"):rep(52), records)
    live:planned({ pids = parent .. "/luactr-123456123456" })
    support.write(records .. "/0b0b0b0b0b0b", parent .. "/other\n" .. parent .. "/luactr-0a0a0a0a0a0a\n")
    -- and one just made, its run about to lock it and write it
    support.write(records .. "/0c0c0c0c0c0c", "")
    assert.are.same({ parent .. "/luactr-abcdefabcdef" }, cgroup.sweep(records))
    assert.is_false(exists(parent .. "/luactr-abcdefabcdef"))
    assert.is_false(exists(records .. "/abcdefabcdef"))  -- its record goes with it
    assert.is_true(exists(parent .. "/luactr-123456123456"))  -- its run lives
    assert.is_true(exists(parent .. "/luactr-0a0a0a0a0a0a"))  -- no record of its own
    assert.is_true(exists(parent .. "/other"))
    assert.is_true(exists(records .. "/0c0c0c0c0c0c"))
  end)
end)

-- }======

-- {====== kept containers: state, inspect, stats, rm

describe("containers kept in the store #root", function()
  local root

  setup(function()
    root = support.store_root()
    local st, _, err = root.luactr("build recipes/hello.lua")
    assert.are.equal(0, st, err)
  end)

  teardown(function()
    local _, ids = root.luactr("ps -aq")
    for _, id in ipairs(support.lines(ids)) do root.luactr("rm -f " .. id) end
    root.teardown()
  end)

  local function inspect(what)
    local st, out = root.luactr("inspect " .. what)
    assert.are.equal(0, st)
    return json.decode(out)[1]
  end

  local function leaf_folders(id)
    local t = {}
    for c, e in pairs(assert(cgroup.detect()).controllers) do
      t[c] = e.dir .. "/" .. cgroup.name(id)
    end
    return t
  end

  it("records an OOM kill: status 137 and OOMKilled in its state", function()
    local st = root.luactr("run --name hog -m 32m busybox tail /dev/zero")
    assert.are.equal(137, st)
    local c = inspect("hog")
    assert.are.equal("exited", c.State.Status)
    assert.are.equal(137, c.State.ExitCode)
    assert.is_true(c.State.OOMKilled)
    assert.are.same({ limit = 33554432, swap = 67108864 }, c.Spec.linux.resources.memory)
    assert.are.equal("luactr-" .. c.Id:sub(1, 12), c.Spec.linux.cgroupsPath)
    assert.is_nil(c.Cgroups)  -- removed when it ended
    assert.is_true(gone(leaf_folders(c.Id)))
    -- luactr carries on; a container that was not killed says so
    assert.are.equal(0, (root.luactr("run --name fine -m 32m busybox true")))
    assert.is_false(inspect("fine").State.OOMKilled)
    assert.are.equal(0, (root.luactr("rm hog fine")))
  end)

  it("shows what a running container uses with stats, from the CLI and from Lua", function()
    local h = start(root.env(), "run --name busy -m 64m --pids-limit 100 busybox "
      .. "sh -c 'sleep 5 & sleep 5 & echo ready; wait'")
    finally(h.stop)
    h.container()
    assert.truthy(h.ready())
    local st, out, err = root.luactr("stats --no-stream busy")
    assert.are.equal(0, st, err)
    local lines = support.lines(out)
    assert.are.equal(2, #lines)
    local cells = {}
    for cell in (lines[2] .. "   "):gmatch("(.-)   +") do cells[#cells + 1] = cell end
    assert.are.equal("CONTAINER ID   NAME   CPU %   MEM USAGE / LIMIT   MEM %   BLOCK I/O   PIDS",
      (lines[1]:gsub("   +", "   ")))
    local c = inspect("busy")
    assert.are.equal(c.Id:sub(1, 12), cells[1])
    assert.are.equal("busy", cells[2])
    assert.matches("^%d+%.%d%d%%$", cells[3])
    assert.matches("^[%d.]+[KM]?i?B / 64MiB$", cells[4])
    assert.matches("^%d+%.%d%d%%$", cells[5])
    assert.matches("^[%d.]+[kMG]?B / [%d.]+[kMG]?B$", cells[6])
    assert.are.equal("3", cells[7])
    -- the state names its cgroup folders
    assert.are.same(h.folders.memory, c.Cgroups.memory)
    -- the same numbers from Lua
    core.sys.setenv("LUACTR_ROOT", root.path)
    finally(function() core.sys.setenv("LUACTR_ROOT", nil) end)
    local luactr = require "luactr"
    local first = luactr.stats("busy")
    core.sys.sleep(0.2)
    local s = luactr.stats("busy", first)
    assert.is_true(s.running)
    assert.are.equal(67108864, s.memory_limit)
    assert.are.equal(3, s.pids)
    assert.is_true(s.memory_usage > 0 and s.memory_usage < s.memory_limit)
    assert.are.equal("number", type(s.cpu_percent))
    assert.is_nil(first.cpu_percent)
    assert.are.equal(0, (h.wait()))
    assert.is_true(gone(h.folders))
    assert.are.equal(0, (root.luactr("rm busy")))
  end)

  it("removes the cgroup a killed runner left, on rm", function()
    local h = start(root.env(), "run --name orphan -m 64m busybox sh -c 'echo ready; sleep 30'")
    finally(h.stop)
    h.container()
    assert.truthy(h.ready())
    local f = h.folders
    core.sys.kill(h.pid, core.sys.signals.KILL)  -- luactr dies, the container runs on
    assert.are.equal(137, (h.wait()))
    assert.is_true(exists(f.memory))
    assert.are.equal(1, #core.cgroup.procs(f.memory))
    local st, _, err = root.luactr("rm orphan")
    assert.are.equal(125, st)
    assert.matches("is running", err)
    st = root.luactr("rm -f orphan")
    assert.are.equal(0, st)
    assert.is_true(gone(f))
  end)
end)

-- }======
