-- The image store as a user meets it: the loopback btrfs store made on
-- first use, the overlay driver, and what happens when luactr is killed
-- (kill -9, mid-step, mid-start) or runs twice at once. Each test has a
-- root of its own (support.store_root), torn down even when it fails: its
-- teardown fails the test if a mount or a loop device is left.
local support = require "support"
local core = require "luactr.core"

local fs = core.fs
local q = support.q
local TOP = support.TOP
local FIXTURES = TOP .. "/tests/fixtures/store"
local SIGKILL, SIGSTOP = 9, 19

-- {====== helpers ======

local write = support.write

-- Calls fn() every 10 ms until it returns true; fails after `timeout` s.
local function wait_for(what, fn, timeout)
  local t0 = core.sys.monotonic()
  while not fn() do
    if core.sys.monotonic() - t0 > (timeout or 20) then error("timed out waiting for " .. what, 2) end
    core.sys.sleep(0.01)
  end
end

-- The hex-named entries of a folder (layers, containers).
local function keys(dir)
  local t = {}
  for _, name in ipairs(fs.readdir(dir) or {}) do
    if name:match("^%x+$") then t[#t + 1] = name end
  end
  return t
end

local function layers(root) return keys(root.path .. "/store/layers") end
local function containers(root) return keys(root.path .. "/store/containers") end
local function tmp_entries(root) return fs.readdir(root.path .. "/store/tmp") or {} end

-- The mount points beneath `dir` (not `dir` itself), with their types.
local function mounts_under(dir)
  local points, types = {}, {}
  for _, line in ipairs(support.mounts()) do
    local point, fstype = line:match("^%S+ %S+ %S+ %S+ (%S+) .* %- (%S+) ")
    if point and point:sub(1, #dir + 1) == dir .. "/" then
      points[#points + 1] = point
      types[point] = fstype
    end
  end
  table.sort(points)
  return points, types
end

-- What must be mounted beneath a root between commands: the store, for
-- the loopback btrfs store; nothing, for overlay.
local function idle_mounts(root)
  if root.driver == "overlay" then return {} end
  return { root.path .. "/store" }
end

-- Asserts that nothing is left of any work: tmp/ empty, no mount but the
-- store's. A lock file alone (its owner killed between making it and
-- making its work) is no work: clean() leaves it for LONE_LOCK_AGE, so
-- that it never races a creator that has the file but not yet the flock.
local function assert_idle(root)
  local work = {}
  for _, name in ipairs(tmp_entries(root)) do
    local owner = name:match("^(.*)%.lock$")
    if not owner or fs.lstat(root.path .. "/store/tmp/" .. owner) then work[#work + 1] = name end
  end
  assert.are.same({}, work)
  assert.are.same(idle_mounts(root), (mounts_under(root.path)))
end

-- Is process `pid` gone? A zombie is gone: this host's init does not reap
-- orphans, and a zombie holds no mount, file or namespace.
local function gone(pid)
  local stat = fs.read("/proc/" .. pid .. "/stat")
  return not stat or stat:match("^%d+ %(.*%) (%u)") == "Z"
end

-- The children of every thread of `pid`.
local function children(pid)
  local kids = {}
  for _, tid in ipairs(fs.readdir("/proc/" .. pid .. "/task") or {}) do
    local text = fs.read(("/proc/%d/task/%s/children"):format(pid, tid)) or ""
    for child in text:gmatch("%d+") do kids[#kids + 1] = tonumber(child) end
  end
  return kids
end

-- kill -9 of `pid` and of the containers it started: they are its
-- children, in pid namespaces of their own, and would outlive it. It is
-- stopped first, so that it starts no child while they are looked for.
local function crash(pid)
  core.sys.kill(pid, SIGSTOP)
  local kids = children(pid)
  core.sys.kill(pid, SIGKILL)
  for _, kid in ipairs(kids) do core.sys.kill(kid, SIGKILL) end
  wait_for("the killed processes to go", function()
    if not gone(pid) then return false end
    for _, kid in ipairs(kids) do
      if not gone(kid) then return false end
    end
    return true
  end)
end

local jobs = {}

-- Starts a shell command line in the background, from the checkout; the
-- command's pid (it is exec'd) is job.pid. job.wait() -> status, out, err.
-- A job still running at the end of its test is killed by kill_jobs().
local function start(cmdline)
  local dir = support.tmpdir()
  write(dir .. "/run.sh", ("cd %s\necho $$ >%s/pid.tmp && mv %s/pid.tmp %s/pid\nexec %s\n")
    :format(q(TOP), dir, dir, dir, cmdline))
  os.execute(("(sh %s/run.sh >%s/out 2>%s/err </dev/null; echo $? >%s/rc.tmp; mv %s/rc.tmp %s/rc) >/dev/null 2>&1 &")
    :format(dir, dir, dir, dir, dir, dir))
  wait_for("a job to start", function() return fs.read(dir .. "/pid") ~= nil end)
  local job = { dir = dir, pid = tonumber(fs.read(dir .. "/pid")) }
  function job.wait(timeout)
    wait_for("a job to end", function() return fs.read(dir .. "/rc") ~= nil end, timeout or 60)
    return tonumber(fs.read(dir .. "/rc")), fs.read(dir .. "/out"), fs.read(dir .. "/err")
  end
  jobs[#jobs + 1] = job
  return job
end

local function kill_jobs()
  for _, job in ipairs(jobs) do
    if not fs.read(job.dir .. "/rc") and not gone(job.pid) then crash(job.pid) end
  end
  jobs = {}
end

-- `luactr ARGS` against `root`, in the background.
local function start_luactr(root, args)
  return start(("env %s %s %s"):format(root.env(), support.LUACTR, args))
end

-- Unmounts the loopback store of `root` when nothing else is mounted
-- beneath it, and waits for its loop device to be freed: autoclear runs
-- after the unmount returns, and root.teardown looks at once.
local function unmount_store(root)
  local store = root.path .. "/store"
  local points = mounts_under(root.path)
  if #points ~= 1 or points[1] ~= store then return end
  if not core.mount.umount(store) then return end
  local img = root.path .. "/store.img"
  local t0 = core.sys.monotonic()
  while core.sys.monotonic() - t0 < 5 do
    local _, loops = support.sh("losetup -j " .. q(img))
    if loops == "" then return end
    core.sys.sleep(0.02)
  end
end

-- A fresh root for a test, torn down (jobs killed, then mounts and loop
-- devices checked) when it ends, passed or failed. One per test: busted
-- keeps one finally per test.
local function new_root(driver)
  local root = support.store_root(driver)
  finally(function()
    kill_jobs()
    unmount_store(root)
    root.teardown()
  end)
  return root
end

-- A copy of the slow recipe in a folder of its own, its step sleeping
-- `seconds`.
local function slow_recipe(seconds)
  local dir = support.tmpdir()
  local text = assert(fs.read(FIXTURES .. "/slow.lua"))
  write(dir .. "/slow.lua", (text:gsub("sleep 30", "sleep " .. seconds)))
  return dir .. "/slow.lua"
end

-- The work in tmp/ of a build step that has started: its layer holds the
-- marker (btrfs: the snapshot is the root; overlay: the upper folder).
local function step_started(root)
  for _, name in ipairs(tmp_entries(root)) do
    local work = root.path .. "/store/tmp/" .. name
    if fs.lstat(work .. "/started-marker-in-layer") or fs.lstat(work .. "/diff/started-marker-in-layer") then
      return true
    end
  end
  return false
end

local function ok(root, args)
  local status, out, err = root.luactr(args)
  assert.are.equal(0, status, ("luactr %s: %s%s"):format(args, out, err))
  return out, err
end

-- }======

describe("the loopback store #root", function()
  it("is made on first use, sparse and of LUACTR_STORE_SIZE, mounted, and said once", function()
    local root = new_root()
    local img = root.path .. "/store.img"
    local status, out, err = support.sh(("LUACTR_STORE_SIZE=1g %s %s info"):format(root.env(), support.LUACTR))
    assert.are.equal(0, status, err)
    assert.matches("Driver: btrfs", out, 1, true)
    assert.matches("(btrfs)", out, 1, true)
    local _, said = err:gsub("is not on btrfs", "")
    assert.are.equal(1, said, err)
    assert.matches(img, err, 1, true)
    assert.are.equal(1 << 30, fs.stat(img).size)
    local _, du = support.sh("du -k " .. q(img))
    assert.is_true(tonumber(du:match("^(%d+)")) < 64 * 1024, "not sparse: " .. du)
    local points, types = mounts_under(root.path)
    assert.are.same({ root.path .. "/store" }, points)
    assert.are.equal("btrfs", types[root.path .. "/store"])
    -- the second command says nothing
    status, out, err = root.luactr("images")
    assert.are.equal(0, status, err)
    assert.are.equal("", err)
    assert.are.same({ root.path .. "/store" }, (mounts_under(root.path)))
  end)

  it("is mounted again, silently, after an unmount (as after a reboot)", function()
    local root = new_root()
    ok(root, "build recipes/hello.lua")
    assert.are.equal(0, (support.sh("umount " .. q(root.path .. "/store"))))
    assert.are.same({}, (mounts_under(root.path)))
    local out, err = ok(root, "images")
    assert.are.equal("", err)
    assert.matches("hello", out, 1, true)
    assert.are.same({ root.path .. "/store" }, (mounts_under(root.path)))
    ok(root, "run --rm hello true")
  end)

  it("is made once when two commands start at once on a fresh root", function()
    local root = new_root()
    local a, b = start_luactr(root, "info"), start_luactr(root, "images")
    local sa, oa, ea = a.wait()
    local sb, ob, eb = b.wait()
    assert.are.equal(0, sa, oa .. ea)
    assert.are.equal(0, sb, ob .. eb)
    local _, said = (ea .. eb):gsub("is not on btrfs", "")
    assert.are.equal(1, said, ea .. eb)
    assert.are.same({ root.path .. "/store" }, (mounts_under(root.path)))
    local _, loops = support.sh("losetup -j " .. q(root.path .. "/store.img"))
    assert.are.equal(1, #support.lines(loops), loops)
  end)

  it("lets go of its loop device when the image cannot be mounted, and says why", function()
    local root = new_root()
    local img = root.path .. "/store.img"
    support.must("truncate -s 64M " .. q(img))  -- an image with no filesystem in it
    local status, _, err = root.luactr("images")
    assert.are.equal(125, status)
    assert.matches("luactr: mount " .. img .. " (/dev/loop", err, 1, true)
    -- and in a process that goes on after the failure (whose end would
    -- free an autoclear device anyway): the failure itself lets go of it
    local opened, why = pcall(require("luactr.storage").open, { root = root.path })
    assert.is_false(opened)
    assert.matches("mount " .. img, tostring(why and why.message or why), 1, true)
    assert.is_true(support.wait_until(function()
      local _, loops = support.sh("losetup -j " .. q(img))
      return loops == ""
    end, 5), "a loop device still holds " .. img)
    assert.are.same({}, (mounts_under(root.path)))
    assert.is_nil(fs.lstat(root.path .. "/store/driver"))
  end)

  it("refuses a size that is not one, and makes nothing", function()
    local root = new_root()
    local status, _, err = support.sh(("LUACTR_STORE_SIZE=lots %s %s info"):format(root.env(), support.LUACTR))
    assert.are.equal(125, status)
    assert.matches("LUACTR_STORE_SIZE: expected a size like 20g, got 'lots'", err, 1, true)
    assert.is_nil(fs.lstat(root.path .. "/store.img"))
    assert.are.same({}, (mounts_under(root.path)))
  end)

  it("keeps the btrfs driver it was made with", function()
    local root = new_root()
    ok(root, "info")
    local status, _, err = support.sh(("%s LUACTR_DRIVER=overlay %s images"):format(root.env(), support.LUACTR))
    assert.are.equal(125, status)
    assert.matches("made with the btrfs driver", err, 1, true)
    assert.are.same({ root.path .. "/store" }, (mounts_under(root.path)))
  end)

  it("keeps the overlay driver it was made with", function()
    local root = new_root("overlay")
    ok(root, "info")
    local status, _, err = support.sh(("LUACTR_ROOT=%s LUACTR_DRIVER=btrfs %s images"):format(q(root.path), support.LUACTR))
    assert.are.equal(125, status)
    assert.matches("made with the overlay driver", err, 1, true)
    assert.is_nil(fs.lstat(root.path .. "/store.img"))
    -- without LUACTR_DRIVER, a store goes on with its own
    local out
    status, out, err = support.sh(("LUACTR_ROOT=%s %s info"):format(q(root.path), support.LUACTR))
    assert.are.equal(0, status, err)
    assert.matches("Driver: overlay", out, 1, true)
  end)
end)

describe("the overlay driver #root", function()
  it("builds, runs and rebuilds from cache, its layers plain folders", function()
    local root = new_root("overlay")
    local _, err = ok(root, "build recipes/hello.lua")
    assert.matches("done in", err, 1, true)
    local out = ok(root, "info")
    assert.matches("Driver: overlay", out, 1, true)
    assert.is_nil(fs.lstat(root.path .. "/store.img"))
    assert.are.equal(4, #layers(root))
    for _, key in ipairs(layers(root)) do
      local path = root.path .. "/store/layers/" .. key
      assert.are.equal("dir", fs.lstat(path .. "/diff").type)
      assert.is_false(core.btrfs.is_subvolume(path))
    end
    local ids = ok(root, "images -q")
    out = ok(root, "run --rm hello")
    assert.matches("hello from", out, 1, true)
    _, err = ok(root, "build recipes/hello.lua")
    local _, cached = err:gsub("CACHED", "")
    assert.are.equal(4, cached, err)
    assert.not_matches("done in", err, 1, true)
    assert.are.equal(ids, (ok(root, "images -q")))
    assert_idle(root)
  end)

  it("mounts a container's root while it runs, and nothing after it and after rm", function()
    local root = new_root("overlay")
    ok(root, "build recipes/hello.lua")
    local job = start_luactr(root, "run --name live hello sh -c 'sleep 1'")
    local id
    wait_for("the container's overlay", function()
      local points, types = mounts_under(root.path)
      for _, p in ipairs(points) do
        id = p:match("/store/containers/(%x+)/rootfs$")
        if id then
          assert.are.equal("overlay", types[p])
          return true
        end
      end
    end)
    local status, out, err = job.wait()
    assert.are.equal(0, status, out .. err)
    assert.are.same({}, (mounts_under(root.path)))
    assert.are.same({ id }, containers(root))
    ok(root, "rm live")
    assert.are.same({}, containers(root))
    assert_idle(root)
  end)
end)

for _, driver in ipairs({ "btrfs", "overlay" }) do
  describe("with the " .. driver .. " driver, #root", function()
    describe("a build killed in the middle of a run step #slow", function()
      it("registers no layer and no image; the next command removes its work, and builds work", function()
        local root = new_root(driver)
        local recipe = slow_recipe(30)
        ok(root, "build " .. recipe .. " busybox")
        local before = #layers(root)
        local job = start_luactr(root, "build " .. recipe)
        wait_for("the step to start", function() return step_started(root) end)
        crash(job.pid)
        assert.are.equal(128 + SIGKILL, (job.wait()))
        -- the killed step's work is still there: the kill came mid-step
        assert.is_true(#tmp_entries(root) > 0)
        assert.are.equal(before, #layers(root))
        local _, err = ok(root, "images")
        assert.are.equal("", err)
        assert.are.same({ "busybox" }, root.image_names())
        assert_idle(root)
        -- and the store goes on as if nothing happened
        local quick = recipe:gsub("slow%.lua$", "quick.lua")
        write(quick, (fs.read(recipe):gsub("sleep 30", "sleep 0")))
        ok(root, "build " .. quick)
        ok(root, "run --rm slow test -e /started-marker-in-layer")
        assert.are.equal(before + 1, #layers(root))
        assert_idle(root)
      end)
    end)

    describe("a run killed", function()
      it("while its container runs leaves it exited for ps -a, and rm removes it", function()
        local root = new_root(driver)
        ok(root, "build " .. FIXTURES .. "/a.lua busybox")
        local job = start_luactr(root, "run --name victim busybox sleep 30")
        wait_for("the container to run", function()
          local ids = containers(root)
          local state = ids[1] and fs.read(root.path .. "/store/containers/" .. ids[1] .. "/state.json")
          return state and state:find('"running"', 1, true)
        end)
        crash(job.pid)
        job.wait()
        local out = ok(root, "ps -a")
        assert.matches("victim", out, 1, true)
        assert.matches("Exited", out, 1, true)
        assert.not_matches("Up ", out, 1, true)
        ok(root, "rm victim")
        assert.are.same({}, containers(root))
        assert_idle(root)
      end)

      it("with --rm is removed by the next ps", function()
        local root = new_root(driver)
        ok(root, "build " .. FIXTURES .. "/a.lua busybox")
        local job = start_luactr(root, "run --rm --name victim busybox sleep 30")
        wait_for("the container to run", function()
          local ids = containers(root)
          local state = ids[1] and fs.read(root.path .. "/store/containers/" .. ids[1] .. "/state.json")
          return state and state:find('"running"', 1, true)
        end)
        crash(job.pid)
        job.wait()
        local out = ok(root, "ps -a")
        assert.not_matches("victim", out, 1, true)
        assert.are.same({}, containers(root))
        assert_idle(root)
      end)

      it("at any moment of its start leaves nothing that ps -a does not show and rm cannot remove #slow", function()
        local root = new_root(driver)
        ok(root, "build " .. FIXTURES .. "/a.lua busybox")
        for i = 0, 20 do
          local job = start_luactr(root, "run --rm busybox true")
          core.sys.sleep(i * 0.004)
          if not gone(job.pid) then crash(job.pid) end
          job.wait()
        end
        local ids = ok(root, "ps -a -q")
        for _, id in ipairs(support.lines(ids)) do ok(root, "rm " .. id) end
        assert.are.same({}, containers(root))
        assert_idle(root)
      end)
    end)

    describe("two commands at once #slow", function()
      it("two builds of one recipe both succeed, with one image", function()
        local root = new_root(driver)
        local a = start_luactr(root, "build recipes/hello.lua")
        local b = start_luactr(root, "build recipes/hello.lua")
        local sa, oa, ea = a.wait()
        local sb, ob, eb = b.wait()
        assert.are.equal(0, sa, oa .. ea)
        assert.are.equal(0, sb, ob .. eb)
        local ia, ib = ea:match("   hello (%x+) in"), eb:match("   hello (%x+) in")
        assert.is_string(ia, ea)
        assert.are.equal(ia, ib)
        assert.are.same({ "busybox", "hello" }, root.image_names())
        assert.are.equal(4, #layers(root))
        assert_idle(root)
        ok(root, "run --rm hello true")
      end)

      it("two recipes on one base both succeed, sharing its layers", function()
        local root = new_root(driver)
        local a = start_luactr(root, "build " .. FIXTURES .. "/a.lua")
        local b = start_luactr(root, "build " .. FIXTURES .. "/b.lua")
        local sa, oa, ea = a.wait()
        local sb, ob, eb = b.wait()
        assert.are.equal(0, sa, oa .. ea)
        assert.are.equal(0, sb, ob .. eb)
        assert.are.same({ "a", "b", "busybox" }, root.image_names())
        assert.are.equal(4, #layers(root))
        assert_idle(root)
        assert.are.equal("a\n", (ok(root, "run --rm a cat /a")))
        assert.are.equal("b\n", (ok(root, "run --rm b cat /b")))
      end)

      it("a build and a run of an image both succeed", function()
        local root = new_root(driver)
        ok(root, "build " .. FIXTURES .. "/a.lua busybox")
        local build = start_luactr(root, "build recipes/hello.lua")
        local run = start_luactr(root, "run --rm busybox echo hi")
        local sb, ob, eb = build.wait()
        local sr, orun, er = run.wait()
        assert.are.equal(0, sb, ob .. eb)
        assert.are.equal(0, sr, orun .. er)
        assert.are.equal("hi\n", orun)
        assert.are.equal(4, #layers(root))
        assert.are.same({}, containers(root))
        assert_idle(root)
      end)

      it("rmi during a build prunes none of the layers the build stands on", function()
        local root = new_root(driver)
        local recipe = slow_recipe(2)
        ok(root, "build " .. recipe .. " busybox")
        local job = start_luactr(root, "build " .. recipe)
        wait_for("the step to start", function() return step_started(root) end)
        local out = ok(root, "rmi busybox")
        assert.not_matches("Deleted", out, 1, true)
        local status, bo, be = job.wait()
        assert.are.equal(0, status, bo .. be)
        ok(root, "run --rm slow test -e /started-marker-in-layer")
        out = ok(root, "rmi slow")
        assert.matches("Deleted: 3 layers", out, 1, true)
        assert.are.same({}, layers(root))
        assert_idle(root)
      end)
    end)
  end)
end

describe("work left in tmp/ #root", function()
  it("is left alone while its owner lives, and removed once it is killed", function()
    local root = new_root()
    ok(root, "info")
    local job = start(("env %s lua5.4 %s/hold_work.lua %s"):format(root.env(), FIXTURES, q(TOP)))
    wait_for("the work to begin", function() return #tmp_entries(root) > 0 and fs.read(job.dir .. "/out") ~= "" end)
    local work = fs.read(job.dir .. "/out"):match("[^\n]+")
    assert.is_true(core.btrfs.is_subvolume(work))
    ok(root, "images")
    assert.is_true(core.btrfs.is_subvolume(work))
    crash(job.pid)
    job.wait()
    ok(root, "images")
    assert_idle(root)
  end)

  it("is removed even when its name holds the pid of a live process (a reused pid)", function()
    local root = new_root()
    ok(root, "info")
    local tmp = root.path .. "/store/tmp"
    -- pid 1 lives, and so does this test: names of the old kind and the new
    for _, name in ipairs({ "layer-abc.1", "container-def." .. core.sys.getpid(), "rm-fed.1.0badf00d1" }) do
      assert(fs.mkdirs(tmp .. "/" .. name .. "/sub"))
      write(tmp .. "/" .. name .. "/sub/file", "x")
    end
    assert(core.btrfs.create(tmp .. "/layer-0123.1.deadbeef7"))
    ok(root, "images")
    assert_idle(root)
  end)
end)

describe("an image file #root", function()
  it("is never torn when its writer is killed, and the writer's temp files go", function()
    local root = new_root()
    ok(root, "info")
    local dir = support.tmpdir()
    local images = root.path .. "/store/images"
    local path = images .. "/torn:latest.json"
    local function config(fill)
      return ('{"config":{},"created":"2026-01-01T00:00:00Z","history":[],"luactr":{"layers":[]},"pad":"%s"}')
        :format(fill:rep(4 << 20))
    end
    local a, b = config("a"), config("b")
    write(dir .. "/a.json", a)
    write(dir .. "/b.json", b)
    assert(fs.write_atomic(path, a))
    for i = 1, 12 do
      local job = start(("lua5.4 %s/writer.lua %s %s %s %s"):format(FIXTURES, q(TOP), q(path),
        q(dir .. "/a.json"), q(dir .. "/b.json")))
      core.sys.sleep(0.02 + (i % 4) * 0.013)
      crash(job.pid)
      job.wait()
      local now = fs.read(path)
      assert.is_true(now == a or now == b, "torn after kill " .. i)
    end
    assert.are.same({ "torn" }, root.image_names())
    for _, name in ipairs(fs.readdir(images)) do
      assert.are.equal("torn:latest.json", name)
    end
  end)
end)
