-- `--userns=remap`: container root is an unprivileged host uid, taken from
-- luactr's range in /etc/subuid and /etc/subgid (here: files of the
-- test's own, named by LUACTR_SUBUID and LUACTR_SUBGID; the host's are
-- never touched).
local support = require "support"
local userns = require "luactr.runtime.userns"
local recipe = require "luactr.build.recipe"

local q, sh = support.q, support.sh

-- Subordinate id files that already give ranges to others: luactr's
-- range must go around them.
local SUBUID = "root:100000:65536\nalice:200000:65536\n"
local SUBGID = "# groups\nbob:100000:1000\n"
local UID_BASE, GID_BASE = 265536, 101000

-- A fresh pair of subordinate id files; returns the env words naming them.
local function subid_files(uid_text, gid_text)
  local dir = support.tmpdir()
  support.write(dir .. "/subuid", uid_text or SUBUID)
  support.write(dir .. "/subgid", gid_text or SUBGID)
  return ("LUACTR_SUBUID=%s LUACTR_SUBGID=%s"):format(q(dir .. "/subuid"), q(dir .. "/subgid")),
    dir .. "/subuid", dir .. "/subgid"
end

-- A busybox root filesystem of these tests' own, with what a host uid
-- outside any map owns: /owned (0600) and /owned-dir (0755).
local rootfs
local function fixture()
  if not rootfs then
    rootfs = support.tmpdir() .. "/rootfs"
    support.must(support.TOP .. "/scripts/busybox-rootfs " .. q(rootfs) .. " >/dev/null")
    support.write(rootfs .. "/owned", "host secret\n")
    support.must(("chown 70000:70000 %s/owned && chmod 600 %s/owned"):format(q(rootfs), q(rootfs)))
    support.must(("mkdir %s/owned-dir && chown 70000:70000 %s/owned-dir"):format(q(rootfs), q(rootfs)))
  end
  return rootfs
end

-- `ENV luactr run OPTIONS --rootfs FIXTURE -- sh -c SCRIPT`
local function run_sh(env, options, script)
  return sh(("%s %s run %s --rootfs %s -- sh -c %s"):format(env, support.LUACTR,
    options, q(fixture()), q(script)))
end

local function owner(path)
  local p = io.popen("stat -c '%u:%g %a' " .. q(path))
  local s = p:read("l")
  p:close()
  return s
end

describe("userns policy", function()
  it("takes the lowest free range of 65536 ids from 100000 on", function()
    assert.are.equal(100000, userns.free_range({}, 65536))
    local entries = userns.parse(SUBUID)
    assert.are.equal(265536, userns.free_range(entries, 65536))
    -- a gap big enough between two ranges is used
    entries = userns.parse("a:100000:1000\nb:300000:10\n")
    assert.are.equal(101000, userns.free_range(entries, 65536))
    -- ranges given out of order, overlapping each other
    entries = userns.parse("b:150000:100000\na:100000:65536\n")
    assert.are.equal(250000, userns.free_range(entries, 65536))
  end)

  it("reads name:start:count lines and skips comments and junk", function()
    assert.are.same({ { name = "bob", start = 100000, count = 1000 } },
      userns.parse("# groups\nbob:100000:1000\nnot a line\n\n"))
  end)
end)

describe("fs.shift_owner #root", function()
  local fs = require("luactr.core").fs

  it("shifts owners below count once, keeps set-id bits and leaves the rest", function()
    local dir = support.tmpdir() .. "/tree"
    support.must(("mkdir -p %s/sub && cd %s && echo a > file && ln file sub/hard"
      .. " && ln -s /etc/passwd link && chown -h 5:6 link && chmod 6755 file"
      .. " && chmod 2775 sub && echo b > far && chown 70000:70001 far"):format(q(dir), q(dir)))
    local function owners()
      local p = io.popen(("cd %s && stat -c '%%n %%u:%%g %%a' . file sub sub/hard link far"):format(q(dir)))
      local t = support.lines(p:read("a"))
      p:close()
      return t
    end
    local want = { ". 300000:400000 755", "file 300000:400000 6755", "sub 300000:400000 2775",
      "sub/hard 300000:400000 6755", "link 300005:400006 777", "far 70000:70001 644" }
    assert.is_true(fs.shift_owner(dir, 300000, 400000, 65536))
    assert.are.same(want, owners())
    -- again (an interrupted shift is run again): nothing shifts twice
    assert.is_true(fs.shift_owner(dir, 300000, 400000, 65536))
    assert.are.same(want, owners())
    assert.has_error(function() fs.shift_owner(dir, 100, 100, 65536) end)
    local ok, err = fs.shift_owner(dir .. "/missing", 300000, 400000, 65536)
    assert.is_nil(ok)
    assert.matches("missing", err)
  end)
end)

describe("core.spawn's user namespace", function()
  local core = require "luactr.core"
  local function spawn_error(linux, opts)
    linux.namespaces = linux.namespaces or { { type = "mount" }, { type = "user" } }
    local ok, err = pcall(core.spawn, { process = { args = { "true" } }, root = { path = "/" },
      linux = linux }, opts)
    assert.is_false(ok)
    return err
  end
  local map = { { containerID = 0, hostID = 100000, size = 65536 } }

  it("needs both id mappings", function()
    assert.matches("needs linux.uidMappings and linux.gidMappings",
      spawn_error({ uidMappings = map }), 1, true)
  end)

  it("refuses mappings without a user namespace, and bad mappings", function()
    assert.matches("need a user namespace", spawn_error({ namespaces = { { type = "mount" } },
      uidMappings = map, gidMappings = map }), 1, true)
    assert.matches("uidMappings[1].size: expected a positive size", spawn_error({
      uidMappings = { { containerID = 0, hostID = 1, size = 0 } }, gidMappings = map }), 1, true)
    assert.matches("linux.uidMappings[1]: unknown field 'extra'", spawn_error({
      uidMappings = { { containerID = 0, hostID = 1, size = 1, extra = 1 } }, gidMappings = map }), 1, true)
  end)

  it("cannot join a user namespace by path, nor idmap a root without one", function()
    assert.matches("joining the user namespace is not supported", spawn_error({
      namespaces = { { type = "mount" }, { type = "user", path = "/proc/1/ns/user" } } }), 1, true)
    assert.matches("idmap_root needs a user namespace", spawn_error({
      namespaces = { { type = "mount" } } }, { idmap_root = true }), 1, true)
  end)
end)

describe("recipes", function()
  it("take userns in a container and show it in the plan", function()
    local plan = recipe.load_string(
      'deploy "d" { container "c" { image = "busybox", userns = "remap" } }', "inline.lua")
    assert.are.equal("remap", plan.deployments[1].containers[1].userns)
    assert.matches("userns remap", recipe.format(plan), 1, true)
  end)

  it("refuse a userns that is not remap or host, naming the line", function()
    local ok, err = pcall(recipe.load_string,
      'deploy "d" {\n  container "c" { image = "busybox", userns = "yes" } }', "inline.lua")
    assert.is_false(ok)
    assert.matches("inline.lua:2: container 'c': userns: expected one of remap, host",
      tostring(err.message or err), 1, true)
  end)
end)

describe("luactr run --userns=remap #root", function()
  it("maps container root onto a range it adds for luactr to subuid and subgid", function()
    local env, subuid, subgid = subid_files()
    local st, out, err = run_sh(env, "--userns=remap",
      "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g")
    assert.are.equal(0, st, err)
    local lines = support.lines(out)
    assert.are.same({ "0", tostring(UID_BASE), "65536" }, support.lines(lines[1]:gsub("%s+", "\n")))
    assert.are.same({ "0", tostring(GID_BASE), "65536" }, support.lines(lines[2]:gsub("%s+", "\n")))
    assert.are.same({ "0", "0" }, { lines[3], lines[4] })
    -- appended: what was there stays as it was
    assert.are.equal(SUBUID .. "luactr:" .. UID_BASE .. ":65536\n", support.readfile(subuid))
    assert.are.equal(SUBGID .. "luactr:" .. GID_BASE .. ":65536\n", support.readfile(subgid))
    -- and used as it is the next time
    st = run_sh(env, "--userns=remap", "true")
    assert.are.equal(0, st)
    assert.are.equal(SUBUID .. "luactr:" .. UID_BASE .. ":65536\n", support.readfile(subuid))
  end)

  it("uses the range luactr already has, and creates missing files", function()
    local env, subuid, subgid = subid_files("luactr:500000:70000\n", nil)
    os.remove(subgid)
    local st, out, err = run_sh(env, "--userns=remap", "cat /proc/self/uid_map /proc/self/gid_map")
    assert.are.equal(0, st, err)
    local lines = support.lines(out)
    assert.matches("^%s*0%s+500000%s+70000$", lines[1])
    assert.matches("^%s*0%s+100000%s+65536$", lines[2])
    assert.are.equal("luactr:500000:70000\n", support.readfile(subuid))
    assert.are.equal("luactr:100000:65536\n", support.readfile(subgid))
  end)

  it("shows the container's processes as the mapped host uid from the host", function()
    local env = subid_files()
    local marker = "luactr-userns-" .. os.time() .. "-" .. math.random(1e9)
    local stop = fixture() .. "/stop-" .. marker
    local dir = support.tmpdir()
    -- the container waits (10 s at most) for the stop file the host makes
    os.execute(("(%s %s run --userns=remap --rootfs %s -- sh -c %s %s >%s/out 2>&1; echo $? >%s/status) &")
      :format(env, support.LUACTR, q(fixture()),
        q(("i=0; while [ ! -e /%s ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done")
          :format("stop-" .. marker)), marker, dir, dir))
    local p = io.popen("readlink /proc/self/ns/user")
    local host_userns = p:read("l")
    p:close()
    local pid
    for _ = 1, 100 do
      for _, d in ipairs(support.listing("ls /proc")) do
        if d:match("^%d+$") then
          local cmdline = support.readfile("/proc/" .. d .. "/cmdline") or ""
          if cmdline:find(marker, 1, true) then
            -- the container's sh, not the host's shell that started it
            local l = io.popen("readlink /proc/" .. d .. "/ns/user 2>/dev/null")
            local ns = l:read("l")
            l:close()
            if ns and ns ~= host_userns then pid = d end
          end
        end
      end
      if pid then break end
      os.execute("sleep 0.05")
    end
    local status = pid and support.readfile("/proc/" .. pid .. "/status") or ""
    support.write(stop, "")
    for _ = 1, 200 do
      if support.readfile(dir .. "/status") then break end
      os.execute("sleep 0.05")
    end
    os.remove(stop)
    assert.is_truthy(pid, "the container's process was not found")
    local u = UID_BASE
    assert.matches(("\nUid:\t%d\t%d\t%d\t%d\n"):format(u, u, u, u), status, 1, true)
    assert.matches(("\nGid:\t%d\t"):format(GID_BASE), status, 1, true)
    assert.are.equal("0\n", support.readfile(dir .. "/status"), support.readfile(dir .. "/out"))
  end)

  it("shows what a host uid outside the map owns as nobody, and root cannot write it", function()
    local env = subid_files()
    local st, out = run_sh(env, "--userns=remap",
      "stat -c '%u:%g' /owned /owned-dir /bin/busybox; cat /owned; echo x >> /owned;"
      .. " touch /owned-dir/new; chmod 666 /owned; chown 0 /owned; echo done")
    assert.are.equal(0, st)
    assert.are.same({ "65534:65534", "65534:65534", "0:0", "done" }, support.lines(out))
    -- nothing changed on the host
    assert.are.equal("70000:70000 600", owner(fixture() .. "/owned"))
    assert.are.equal("host secret\n", support.readfile(fixture() .. "/owned"))
    assert.is_nil(support.readfile(fixture() .. "/owned-dir/new"))
    -- without --userns the same root reads and writes it (the test can fail)
    st, out = run_sh(env, "", "stat -c '%u:%g' /owned; cat /owned")
    assert.are.equal(0, st)
    assert.are.same({ "70000:70000", "host secret" }, support.lines(out))
  end)

  it("sees its root filesystem through an idmapped mount: owners on disk stay", function()
    local env = subid_files()
    local st, out, err = run_sh(env, "--userns=remap",
      "awk '$5 == \"/\"' /proc/self/mountinfo; touch /made-inside; stat -c '%u:%g' /made-inside /etc/passwd")
    assert.are.equal(0, st, err)
    local lines = support.lines(out)
    assert.matches("idmapped", lines[1], 1, true)
    assert.are.same({ "0:0", "0:0" }, { lines[2], lines[3] })
    assert.are.equal("0:0 644", owner(fixture() .. "/made-inside"))
    os.remove(fixture() .. "/made-inside")
  end)

  it("has the default devices, bound from the host's, and a working tty and init", function()
    local env = subid_files()
    local st, out, err = run_sh(env, "--userns=remap --init -t",
      "ls -A /dev | tr '\\n' ' '; echo; head -c 4 /dev/zero | od -An -tx1; tty; echo $$")
    assert.are.equal(0, st, err)
    local lines = support.lines(out:gsub("\r", ""))
    assert.are.equal("console core fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero",
      lines[1]:gsub("%s+$", ""))
    assert.matches("^%s*00 00 00 00%s*$", lines[2])
    assert.matches("^/dev/pts/%d+$", lines[3])
    assert.are.equal("2", lines[4])
  end)

  it("mounts its own sysfs, or binds the host's read-only with --network host", function()
    local env = subid_files()
    local st, out = run_sh(env, "--userns=remap", "ls /sys/class/net")
    assert.are.equal(0, st)
    assert.are.equal("lo\n", out)
    local err
    st, out, err = run_sh(env, "--userns=remap --network host",
      "ls /sys/class/net; touch /sys/x 2>&1 | grep -c 'Read-only'")
    assert.are.equal(0, st, err)
    local lines = support.lines(out)
    assert.are.equal("1", lines[#lines])
    assert.is_true(#lines > 2)  -- lo and the host's other interfaces
  end)

  it("refuses a --rootfs it could only chown, and leaves it as it was", function()
    local env = subid_files()
    local before = owner(fixture() .. "/bin")
    local st, _, err = run_sh("LUACTR_IDMAP=0 " .. env, "--userns=remap", "true")
    assert.are.equal(125, st)
    assert.matches("a --rootfs folder is never chowned", err, 1, true)
    assert.are.equal(before, owner(fixture() .. "/bin"))
  end)

  it("refuses --privileged, as Docker does", function()
    local env = subid_files()
    local st, _, err = run_sh(env, "--userns=remap --privileged", "true")
    assert.are.equal(125, st)
    assert.matches("--privileged and --userns=remap do not go together", err, 1, true)
  end)

  it("binds --device nodes in from the host's (no mknod in a user namespace)", function()
    local env = subid_files()
    local st, out, err = run_sh(env, "--userns=remap --device /dev/zero:/dev/myzero --device /dev/null:/dev/sub/mynull",
      "head -c 3 /dev/myzero | od -An -tx1; echo gone > /dev/sub/mynull && echo written; "
      .. "mknod /dev/x c 1 5 2>/dev/null || echo no-mknod")
    assert.are.equal(0, st, err)
    local lines = support.lines(out)
    assert.matches("^%s*00 00 00%s*$", lines[1])
    assert.are.equal("written", lines[2])
    assert.are.equal("no-mknod", lines[3])
    -- a node only host root may open stays shut to the remapped root
    -- (in a folder the remapped root may pass through: the bind is made
    -- inside the user namespace)
    local dir = support.tmpdir()
    local node = dir .. "/hostonly"
    support.must("chmod 755 " .. q(dir) .. " && mknod -m 0600 " .. q(node) .. " c 1 5")
    st, out, err = run_sh(env, "--userns=remap --device " .. q(node) .. ":/dev/hostonly",
      "ls -l /dev/hostonly | cut -c1-10; head -c 1 /dev/hostonly 2>/dev/null || echo denied")
    assert.are.equal(0, st, err)
    assert.are.equal("crw-------\ndenied\n", out)
  end)

  it("changes nothing without --userns: root is the host's root", function()
    local env, subuid, subgid = subid_files()
    local st, out = run_sh(env, "", "cat /proc/self/uid_map; readlink /proc/self/ns/user")
    assert.are.equal(0, st)
    local lines = support.lines(out)
    assert.matches("^%s*0%s+0%s+4294967295$", lines[1])
    local p = io.popen("readlink /proc/self/ns/user")
    assert.are.equal(p:read("l"), lines[2])
    p:close()
    assert.are.equal(SUBUID, support.readfile(subuid))
    assert.are.equal(SUBGID, support.readfile(subgid))
  end)

  for _, driver in ipairs({ "btrfs", "overlay" }) do
  describe("with an image on " .. driver, function()
    -- A store with a busybox image whose files have owners of all kinds.
    local function image_store()
      local root = support.store_root(driver)
      finally(root.teardown)
      local dir = support.tmpdir()
      support.write(dir .. "/recipe.lua", [[
image "owned" {
  from = "scratch",
  copy { host = "/bin/busybox", to = "/bin/busybox" },
  run { "/bin/busybox", "--install", "-s", "/bin" },
  run "echo secret > /secret && chown 70000:70000 /secret && chmod 600 /secret && mkdir /data && chown 1000:1000 /data && chmod 4755 /bin/busybox",
}
]])
      local st, _, err = root.luactr("build " .. q(dir .. "/recipe.lua"))
      assert.are.equal(0, st, err)
      local env = subid_files()
      root.subid_env = env
      function root.run(args, extra)
        return sh(("%s %s %s %s run %s"):format(root.env(), env, extra or "", support.LUACTR, args))
      end
      return root
    end

    local SCRIPT = "stat -c '%n %u:%g %a' /bin/busybox /data /secret; id -u;"
      .. " cat /secret || echo denied; echo x > /data/x && stat -c '%n %u:%g' /data/x"
    local INSIDE = { "/bin/busybox 0:0 4755", "/data 1000:1000 755", "/secret 65534:65534 600",
      "0", "denied", "/data/x 0:0" }

    -- The folder that holds the files of the store's one container on
    -- disk: its snapshot (btrfs), or its overlay's upper folder.
    local function own_files(root)
      local list = support.listing("ls -d " .. q(root.path) .. "/store/containers/*/"
        .. (driver == "btrfs" and "rootfs" or "diff"))
      assert.are.equal(1, #list)
      return list[1]
    end

    -- The image's copies of /bin/busybox, in its layers.
    local function layer_busyboxes(root)
      local list = {}
      for _, layer in ipairs(support.listing("ls -d " .. q(root.path) .. "/store/layers/*")) do
        for _, path in ipairs({ layer .. "/bin/busybox", layer .. "/diff/bin/busybox" }) do
          local f = io.open(path)
          if f then
            f:close()
            list[#list + 1] = path
          end
        end
      end
      return list
    end

    -- btrfs allows idmapped mounts; an overlay mount does not (overlayfs
    -- takes idmapped layers, not an idmapped mount of itself), so there
    -- the container's own files are chowned instead
    local how = driver == "btrfs" and "with an idmapped root" or "by chowning its own files"
    it("keeps the image's owners inside " .. how, function()
      local root = image_store()
      local st, out, err = root.run("--name idm --userns=remap owned sh -c " .. q(SCRIPT))
      assert.are.equal(0, st, err)
      assert.are.same(INSIDE, support.lines(out))
      local files = own_files(root)
      if driver == "btrfs" then
        assert.are.equal("0:0 644", owner(files .. "/data/x"))
        assert.are.equal("0:0 4755", owner(files .. "/bin/busybox"))
        assert.are.equal("70000:70000 600", owner(files .. "/secret"))
      else
        assert.are.equal(("%d:%d 644"):format(UID_BASE, GID_BASE), owner(files .. "/data/x"))
      end
      st = root.luactr("rm idm")
      assert.are.equal(0, st)
    end)

    it("runs detached, takes exec, and keeps its owners when started again", function()
      local root = image_store()
      -- the first start chowns (no idmapped mount); later ones must not idmap
      local st, out, err = root.run("-d --name bg --userns=remap owned sh -c "
        .. q("echo run >> /data/runs; stat -c '%u:%g' /bin/busybox /data/runs; sleep 1"), "LUACTR_IDMAP=0")
      assert.are.equal(0, st, err)
      st, out, err = sh(("%s %s %s exec bg sh -c %s"):format(root.env(),
        root.subid_env, support.LUACTR, q("id -u; cat /proc/self/uid_map")))
      assert.are.equal(0, st, err)
      local lines = support.lines(out)
      assert.are.equal("0", lines[1])
      assert.matches("^%s*0%s+" .. UID_BASE .. "%s+65536$", lines[2])
      assert.are.equal(0, (root.luactr("wait bg")))
      st, _, err = root.luactr("start bg")
      assert.are.equal(0, st, err)
      assert.are.equal(0, (root.luactr("wait bg")))
      st, out = root.luactr("logs bg")
      assert.are.equal(0, st)
      assert.are.same({ "0:0", "0:0", "0:0", "0:0" }, support.lines(out))
      assert.are.equal("run\nrun\n", support.readfile(own_files(root) .. "/data/runs"))
      st = root.luactr("rm bg")
      assert.are.equal(0, st)
    end)

    it("chowns the container's own snapshot once when it cannot idmap, never the image", function()
      local root = image_store()
      local st, out, err = root.run("--name shifted --userns=remap owned sh -c " .. q(SCRIPT),
        "LUACTR_IDMAP=0")
      assert.are.equal(0, st, err)
      assert.are.same(INSIDE, support.lines(out))
      local files = own_files(root)
      -- shifted into luactr's range, set-user-ID bit kept
      assert.are.equal(("%d:%d 4755"):format(UID_BASE, GID_BASE), owner(files .. "/bin/busybox"))
      assert.are.equal(("%d:%d 755"):format(UID_BASE + 1000, GID_BASE + 1000), owner(files .. "/data"))
      assert.are.equal(("%d:%d 644"):format(UID_BASE, GID_BASE), owner(files .. "/data/x"))
      -- marked, so that a later start neither idmaps nor shifts it again
      local dir = files:gsub("/[^/]*$", "")
      assert.are.equal(("%d %d 65536\n"):format(UID_BASE, GID_BASE), support.readfile(dir .. "/userns-shift"))
      if driver == "btrfs" then  -- an owner outside the range stays (overlay: not copied up)
        assert.are.equal("70000:70000 600", owner(files .. "/secret"))
      end
      -- the image's layers are as they were built
      local copies = layer_busyboxes(root)
      assert.is_true(#copies > 0)
      for _, path in ipairs(copies) do assert.matches("^0:0 ", owner(path)) end
      -- and without --userns a new container of the image is as before
      st, out = root.run("--rm owned stat -c '%u:%g' /bin/busybox /secret")
      assert.are.equal(0, st)
      assert.are.same({ "0:0", "70000:70000" }, support.lines(out))
      st = root.luactr("rm shifted")
      assert.are.equal(0, st)
    end)
  end)
  end
end)
