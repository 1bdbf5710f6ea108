-- What the record of containers and images survives: a runner killed
-- before it recorded its container, damaged state and image files, a
-- store that a container fills, a `stop` that is killed, and the cgroups
-- of another store beside this one's. Each test has a store of its own
-- and ends what it started (processes, cgroups, mounts), failed or not.
local support = require "support"
local json = require "luactr.json"
local core = require "luactr.core"

local q, readfile, eventually, alive = support.q, support.readfile, support.eventually, support.alive

local function exists(path)
  return core.fs.stat(path) ~= nil
end

-- No Lua traceback reached the user.
local function clean(err)
  assert.is_falsy((err or ""):find("internal error", 1, true), err)
  assert.is_falsy((err or ""):find("traceback", 1, true), err)
end

-- A store (support.store_root) with recipes/hello.lua built, `env` (shell
-- words) in the environment of its commands. It ends, once the test is
-- over, every container left in it (rm -f), every process noted with
-- root.note(pid) and every luactr-<id12> cgroup folder noted with
-- root.note_cgroups(paths); `also` runs first (another root's teardown).
local function store(env, also)
  local root = support.store_root()
  local pids, folders = {}, {}
  local base_env = root.env
  function root.env() return base_env() .. (env and " " .. env or "") end
  function root.note(pid) pids[#pids + 1] = pid end
  function root.note_cgroups(paths)
    for _, dir in pairs(paths or {}) do folders[#folders + 1] = dir end
  end
  finally(function()
    if also then pcall(also) end
    local _, ids = root.luactr("ps -a -q")
    for id in (ids or ""):gmatch("%x+") do root.luactr("rm -f " .. id) end
    for _, pid in ipairs(pids) do
      if alive(pid) then core.sys.kill(pid, 9) end
    end
    for _, dir in ipairs(folders) do
      if dir:match("/luactr%-" .. ("%x"):rep(12) .. "$") and exists(dir) then
        core.cgroup.kill(dir)
        core.cgroup.remove(dir, 2)
      end
    end
    root.teardown()
  end)
  -- a shell command line with this root in its environment
  function root.shell(cmd)
    return support.sh("export " .. root.env() .. "\n" .. cmd)
  end
  function root.luactr(args, stdin)
    return support.sh(("%s %s %s"):format(root.env(), support.LUACTR, args), stdin)
  end
  -- the folder of the container whose id begins with `id` (the only one
  -- when nil), or nil
  function root.dir(id)
    local dir = root.path .. "/store/containers/"
    for _, full in ipairs(support.listing("ls " .. q(dir))) do
      if full:sub(1, #(id or "")) == (id or "") then return dir .. full end
    end
  end
  -- its state.json, decoded (nil when it is not JSON)
  function root.state(id)
    local dir = root.dir(id)
    local text = dir and readfile(dir .. "/state.json")
    return text and json.decode(text)
  end
  -- ps -a --format json: { [name and id12] = { status=, state= } }
  function root.ps()
    local st, out, err = root.luactr("ps -a --format json")
    assert.are.equal(0, st, err)
    clean(err)
    local t = {}
    for _, line in ipairs(support.lines(out)) do
      local c = json.decode(line)
      t[c.ID] = { status = c.Status, state = c.State }
      if c.Names ~= "" then t[c.Names] = t[c.ID] end
    end
    return t
  end
  -- the full id of container `name`
  function root.id(name)
    local st, out, err = root.luactr("inspect --type container " .. q(name))
    assert.are.equal(0, st, err)
    return json.decode(out)[1].Id
  end
  local st, _, err = root.luactr("build recipes/hello.lua")
  assert.are.equal(0, st, err)
  return root
end


-- {====== a runner killed before it recorded its container

describe("a container whose runner was killed before it recorded it running #root", function()
  -- Starts `run ARGS` in the background and, once its container runs,
  -- kills its runner with SIGKILL and puts back the state the runner had
  -- written just before it recorded the container running: "created", no
  -- pid, its cgroup recorded (that comes before the container is
  -- spawned). Returns that state and the container's pid.
  local function ghost(root, args)
    local _, out = root.shell(("%s run %s >/dev/null 2>&1 & echo $!"):format(support.LUACTR, args))
    local runner = assert(tonumber(out:match("%d+")))
    root.note(runner)
    local st = eventually(function()
      local s = root.state()
      return s and s.status == "running" and s
    end)
    assert.is_truthy(st, "the container did not start")
    local pid = st.pid
    root.note(pid)
    root.note_cgroups(st.cgroups)
    core.sys.kill(runner, 9)
    assert.is_truthy(eventually(function() return not alive(runner) end))
    assert.is_true(alive(pid))  -- the container outlives its runner
    st.status, st.pid, st.pid_start, st.started = "created", nil, nil, nil
    support.write(root.dir(st.id) .. "/state.json", json.encode(st, true))
    return st, pid
  end

  it("is running to ps while its processes live, and rm -f ends them all (--rm)", function()
    local root = store()
    local st, pid = ghost(root, "--rm --name g busybox sleep 1000")
    local _, out = root.luactr("ps")
    assert.matches("Up [^\n]* g\n", out)
    -- and it stays so: a second look (ps, run) reaps nothing of it
    assert.are.equal(0, (root.luactr("run --rm busybox true")))
    assert.matches("^Up ", root.ps().g.status)
    assert.is_true(alive(pid))
    local code, _, err = root.luactr("rm -f g")
    assert.are.equal(0, code, err)
    assert.is_truthy(eventually(function() return not alive(pid) end))
    for _, dir in pairs(st.cgroups) do assert.is_false(exists(dir), dir) end
    assert.is_nil(root.dir(st.id))
  end)

  it("shows Up rather than Created without --rm; stop finds it and ends it, rm cleans", function()
    local root = store()
    local st, pid = ghost(root, "--name g busybox sleep 1000")
    assert.matches("^Up ", root.ps().g.status)
    local code, _, err = root.luactr("stop -t 1 g")
    assert.are.equal(0, code, err)
    assert.is_truthy(eventually(function() return not alive(pid) end))
    -- it ran, and nobody recorded how it ended
    assert.are.equal("Exited (unknown)", root.ps().g.status)
    code, _, err = root.luactr("rm g")
    assert.are.equal(0, code, err)
    for _, dir in pairs(st.cgroups) do assert.is_false(exists(dir), dir) end
    assert.is_nil(root.dir(st.id))
  end)
end)

-- }======

-- {====== damaged files

-- The damaged forms of a state file, from its text as luactr wrote it.
local DAMAGED_STATES = {
  { name = "an array", make = function() return "[1,2,3]" end },
  { name = "fields of the wrong types", make = function(text)
      local t = json.decode(text)
      t.status, t.pid, t.cgroups, t.created, t.exit_code = 7, "12", "x", 1, "0"
      return json.encode(t, true)
    end },
  { name = "empty", make = function() return "" end },
  { name = "truncated", make = function(text) return text:sub(1, #text // 2) end },
}

describe("a damaged state file #root", function()
  for _, form in ipairs(DAMAGED_STATES) do
    it(("is listed as damaged, troubles no other command, and goes with rm -f (%s)"):format(form.name), function()
      local root = store()
      assert.are.equal(0, (root.luactr("run --name good busybox true")))
      assert.are.equal(0, (root.luactr("run --name bad busybox true")))
      local id = root.id("bad")
      local path = root.dir(id) .. "/state.json"
      support.write(path, form.make(readfile(path)))
      local id12 = id:sub(1, 12)

      local ps = root.ps()
      assert.are.same({ status = "Damaged", state = "damaged" }, ps[id12])
      assert.matches("^Exited %(0%)", ps.good.status)
      local code, out, err = root.luactr("ps")
      assert.are.equal(0, code, err)
      assert.are.equal(1, #support.lines(out))  -- nothing runs
      -- the other containers, and new ones, as ever
      code, out, err = root.luactr("inspect --type container good")
      assert.are.equal(0, code, err)
      assert.are.equal("exited", json.decode(out)[1].State.Status)
      code, out, err = root.luactr("run --rm busybox echo still")
      assert.are.equal(0, code, err)
      assert.are.equal("still\n", out)
      -- verbs that act on it say why they cannot
      for _, verb in ipairs({ "stop", "kill", "start", "wait", "pause" }) do
        code, _, err = root.luactr(verb .. " " .. id12)
        assert.are.equal(125, code, verb)
        clean(err)
        assert.matches("damaged", err, 1, true)
      end
      code, out, err = root.luactr("inspect --type container " .. id12)
      assert.are.equal(0, code, err)
      assert.are.equal("damaged", json.decode(out)[1].State.Status)
      code, _, err = root.luactr("rm -f " .. id12)
      assert.are.equal(0, code, err)
      assert.is_nil(root.dir(id))
      assert.is_nil(root.ps()[id12])
      assert.is_truthy(root.ps().good)
    end)
  end

  it("of a running container, truncated: rm -f leaves no monitor, process or cgroup", function()
    local root = store()
    local code, out, err = root.luactr("run -d --name t busybox sleep 1000")
    assert.are.equal(0, code, err)
    local id = out:match("%x+")
    local st = root.state(id)
    root.note(st.pid)
    root.note(st.runner)
    root.note_cgroups(st.cgroups)
    assert.is_true(st.monitor and alive(st.runner) and alive(st.pid))
    local path = root.dir(id) .. "/state.json"
    local text = readfile(path)
    support.write(path, text:sub(1, 100))  -- not even its cgroups are whole
    assert.are.same({ status = "Damaged", state = "damaged" }, root.ps()[id:sub(1, 12)])
    code, out, err = root.luactr("rm -f " .. id:sub(1, 12))
    assert.are.equal(0, code, err)
    assert.is_truthy(eventually(function() return not alive(st.pid) and not alive(st.runner) end))
    for _, dir in pairs(st.cgroups) do assert.is_false(exists(dir), dir) end
    assert.is_nil(root.dir(id))
    assert.is_false(exists(root.path .. "/run/" .. id))
  end)
end)

local DAMAGED_IMAGES = {
  { name = "fields of the wrong types", text = '{"created": 5, "luactr": "x", "config": {"Cmd": "sh"}}' },
  { name = "empty", text = "" },
}

describe("a damaged image file #root", function()
  for _, form in ipairs(DAMAGED_IMAGES) do
    it(("is listed as damaged, troubles no other image, goes with rmi and a rebuild (%s)"):format(form.name), function()
      local root = store()
      local file = root.path .. "/store/images/hello:latest.json"
      support.write(file, form.text)
      local code, out, err = root.luactr("images")
      assert.are.equal(0, code, err)
      clean(err)
      assert.matches("\nbusybox +latest +%x+ +%d+ %a+ ago +2\n", out)
      assert.matches("\nhello +latest +%x+ +damaged ", out)
      code, out = root.luactr("run --rm busybox echo fine")
      assert.are.equal(0, code)
      assert.are.equal("fine\n", out)
      code, _, err = root.luactr("run --rm hello")
      assert.are.equal(125, code)
      clean(err)
      assert.matches("image hello:latest is damaged", err, 1, true)
      -- rmi takes it away
      code, _, err = root.luactr("rmi hello")
      assert.are.equal(0, code, err)
      code, out = root.luactr("images")
      assert.are.equal(0, code)
      assert.is_falsy(out:find("hello", 1, true))
      -- and a rebuild replaces it
      support.write(file, form.text)
      code, _, err = root.luactr("build recipes/hello.lua")
      assert.are.equal(0, code, err)
      code, out, err = root.luactr("run --rm hello")
      assert.are.equal(0, code, err)
      assert.matches("from ", out)
    end)
  end
end)

-- }======

-- {====== a full store

describe("a store that a container fills #root", function()
  it("records the container's exit; ps, run and rm go on working", function()
    -- 120 MiB (mkfs.btrfs's minimum is about 114): some 30 MiB to fill
    local root = store("LUACTR_STORE_SIZE=120m")
    local fill = "dd if=/dev/zero of=/fill bs=1M 2>/dev/null; df -k / | tail -n 1"
    local code, out, err = root.luactr(("run --name full busybox sh -c %s"):format(q(fill .. "; exit 3")))
    assert.are.equal(3, code, err)
    assert.matches(" 100%%", out)  -- it did fill the store
    assert.matches("^Exited %(3%)", root.ps().full.status)
    -- detached: its monitor's exit record goes through the reserve too
    code, out, err = root.luactr(("run -d --name dfull busybox sh -c %s"):format(q(fill .. "; exit 4")))
    assert.are.equal(0, code, err)
    assert.is_truthy(eventually(function()
      local c = root.ps().dfull
      return c and c.status:match("^Exited %(4%)")
    end), "the exit of the detached container was not recorded")
    -- a new container may not fit: then run says so
    code, out, err = root.luactr("run --rm busybox echo hi")
    clean(err)
    if code ~= 0 then
      assert.are.equal(125, code)
      assert.matches("No space left on device", err, 1, true)
    else
      assert.are.equal("hi\n", out)
    end
    code, out, err = root.luactr("rm full dfull")
    assert.are.equal(0, code, err)
    assert.are.same({}, root.ps())
  end)
end)

-- }======

-- {====== stop, and the cgroups of other stores

describe("a stop that is killed #root", function()
  it("leaves the container to its restart policy, which restarts it later", function()
    local root = store()
    -- it ignores SIGTERM, so that stop waits for its timeout; and ends by itself
    local code, out, err = root.luactr([[run -d --restart always busybox sh -c 'trap "" TERM; sleep 2; exit 1']])
    assert.are.equal(0, code, err)
    local id = out:match("%x+")
    assert.is_truthy(eventually(function() return root.state(id).status == "running" end))
    code, out = root.shell(("%s stop -t 30 %s >/dev/null 2>&1 & echo $!"):format(support.LUACTR, id))
    local stopper = assert(tonumber(out:match("%d+")))
    root.note(stopper)
    assert.is_truthy(eventually(function() return exists(root.dir(id) .. "/stopping") end))
    core.sys.kill(stopper, 9)
    assert.is_truthy(eventually(function() return not alive(stopper) end))
    local before = root.state(id).restarts or 0
    assert.is_truthy(eventually(function() return (root.state(id).restarts or 0) > before end, 15),
      "the container was not restarted after the killed stop")
    -- a stop that is done keeps it stopped
    code, out, err = root.luactr("stop -t 1 " .. id)
    assert.are.equal(0, code, err)
    local restarts = root.state(id).restarts
    os.execute("sleep 3")
    assert.are.equal(restarts, root.state(id).restarts)
    assert.matches("^Exited ", root.ps()[id:sub(1, 12)].status)
  end)
end)

describe("the cgroup of a killed --rootfs run #root", function()
  it("is removed by a command of its own root, never by another store's", function()
    local a
    local b = store(nil, function() if a then a.teardown() end end)
    a = support.store_root()
    local function luactr_a(args)
      return support.sh(("%s %s %s"):format(a.env(), support.LUACTR, args))
    end
    -- a run of A, killed while its container goes on for a moment
    local _, out = support.sh(("%s %s run --rootfs %s -- sh -c 'sleep 2' >/dev/null 2>&1 & echo $!")
      :format(a.env(), support.LUACTR, q(support.rootfs())))
    local runner = assert(tonumber(out:match("%d+")))
    b.note(runner)
    local pid = eventually(function()
      local kids = readfile(("/proc/%d/task/%d/children"):format(runner, runner)) or ""
      return tonumber(kids:match("%d+"))
    end)
    assert.is_truthy(pid, "the container did not start")
    local folders = eventually(function()
      local t = {}
      for line in (readfile("/proc/" .. pid .. "/cgroup") or ""):gmatch("[^\n]+") do
        local ctl, path = line:match("^%d+:([^:]+):(.*/luactr%-%x+)$")
        if ctl and not ctl:match("^name=") then
          t[#t + 1] = "/sys/fs/cgroup/" .. ctl:match("^[^,]+") .. path
        end
      end
      return #t > 0 and t
    end)
    assert.is_truthy(folders, "no cgroup of the container found")
    b.note(pid)
    b.note_cgroups(folders)
    core.sys.kill(runner, 9)
    assert.is_truthy(eventually(function() return not alive(pid) end))
    for _, dir in ipairs(folders) do
      assert.is_true(exists(dir), dir)
      -- long past any grace for a run that is starting
      support.must("touch -d '1 hour ago' " .. q(dir))
    end
    -- B's commands leave it be
    local code, _, err = b.luactr("ps -a")
    assert.are.equal(0, code, err)
    assert.are.equal(0, (b.luactr("run --rm busybox true")))
    for _, dir in ipairs(folders) do assert.is_true(exists(dir), dir) end
    -- A's remove it
    code, _, err = luactr_a("ps -a")
    assert.are.equal(0, code, err)
    for _, dir in ipairs(folders) do assert.is_false(exists(dir), dir) end
  end)
end)

-- }======

describe("a store removed under a running container #root", function()
  it("is not made again by the container's monitor when the container ends", function()
    local root = store()
    local code, out, err = root.luactr("run -d busybox sleep 2")
    assert.are.equal(0, code, err)
    local id = out:match("%x+")
    assert.is_truthy(eventually(function() return root.state(id).status == "running" end))
    -- the store goes while the container runs on (its root is in it:
    -- the unmount is lazy)
    code, _, err = root.shell(("umount -l %s && rm -rf --one-file-system %s"):format(
      q(root.path .. "/store"), q(root.path)))
    assert.are.equal(0, code, err)
    -- the container ends 2 s after its start; its monitor then finds no
    -- store, and leaves it so
    os.execute("sleep 4")
    assert.is_false(exists(root.path))
    local _, loops = support.sh("losetup -j " .. q(root.path .. "/store.img"))
    assert.are.equal("", loops)
  end)
end)
