-- luactr.core: the native primitives, each tried for real. Anything that
-- changes namespaces runs in a Lua subprocess so the test runner keeps
-- its own.
local support = require "support"
local core = require "luactr.core"

local q = support.q

-- Runs Lua `code` in a fresh lua5.4 that can require luactr; returns
-- status, stdout, stderr.
local function lua(code)
  return support.sh(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s lua5.4 -e %s"):format(
    q(support.BUILD .. "/?.so;;"), q(code)))
end

-- A minimal spec for core.spawn of the busybox fixture.
local function basic_spec(args)
  return {
    process = { args = args, env = { "PATH=/bin" }, cwd = "/" },
    root = { path = support.rootfs() },
    mounts = {
      { destination = "/proc", type = "proc", source = "proc" },
      { destination = "/dev", type = "tmpfs", source = "tmpfs", options = { "mode=755" } },
    },
    linux = { namespaces = { { type = "pid" }, { type = "mount" } } },
  }
end

describe("luactr.core", function()
  it("names the OCI namespace types with their clone flags", function()
    assert.are.equal(0x20000000, core.ns.flags.pid)
    assert.are.equal(0x40000000, core.ns.flags.network)
    assert.are.equal(0x00020000, core.ns.flags.mount)
    assert.are.equal(0x08000000, core.ns.flags.ipc)
    assert.are.equal(0x04000000, core.ns.flags.uts)
    assert.are.equal(0x10000000, core.ns.flags.user)
    assert.are.equal(0x02000000, core.ns.flags.cgroup)
  end)

  it("raises on an unknown namespace type", function()
    assert.has_error(function() core.ns.unshare({ "nosuch" }) end,
      "unknown namespace type 'nosuch'")
  end)

  describe("ns #root", function()
    it("unshares a uts namespace and sets its host name there only", function()
      local st, out = lua([[
        local core = require "luactr.core"
        assert(core.ns.unshare({ "uts" }))
        assert(core.ns.sethostname("inner-name"))
        print(io.open("/proc/sys/kernel/hostname"):read("l"))]])
      assert.are.equal(0, st)
      assert.are.equal("inner-name\n", out)
      local f = io.open("/proc/sys/kernel/hostname")
      assert.are_not.equal("inner-name", f:read("l"))
      f:close()
    end)

    it("joins another process's namespace with setns", function()
      local st, out = support.sh([[
unshare --net sleep 30 & p=$!
i=0; while [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/self/ns/net)" ] && [ $i -lt 300 ]; do sleep 0.01; i=$((i+1)); done
LUA_PATH='lua/?.lua;;' LUA_CPATH=]] .. q(support.BUILD .. "/?.so;;") .. [[ lua5.4 -e "
  local core = require 'luactr.core'
  assert(core.ns.setns('/proc/$p/ns/net', 'network'))
  os.execute('readlink /proc/self/ns/net')"
readlink /proc/$p/ns/net
kill $p; wait $p 2>/dev/null; true]])
      assert.are.equal(0, st)
      local lines = support.lines(out)
      assert.are.equal(2, #lines)
      assert.are.equal(lines[2], lines[1])
    end)

    it("fails setns with nil, message, errno", function()
      local ok, msg, errno = core.ns.setns("/nonexistent/ns", "network")
      assert.is_nil(ok)
      assert.are.equal("/nonexistent/ns: No such file or directory", msg)
      assert.are.equal(core.sys.errno.ENOENT, errno)
    end)
  end)

  describe("mount #root", function()
    it("mounts, binds read-only, masks and unmounts in a mount namespace", function()
      local dir = support.tmpdir()
      local st, out, err = lua(([[
        local core = require "luactr.core"
        local m = core.mount
        local d = %q
        assert(core.ns.unshare({ "mount" }))
        assert(m.mount(nil, "/", nil, { "rprivate" }))
        os.execute("mkdir -p " .. d .. "/a " .. d .. "/b")
        assert(m.mount("tmpfs", d .. "/a", "tmpfs", { "nosuid", "size=1m" }))
        io.open(d .. "/a/file", "w"):write("data"):close()
        assert(m.bind(d .. "/a", d .. "/b", { readonly = true }))
        print(io.open(d .. "/b/file"):read("a"))
        print((select(2, io.open(d .. "/b/new", "w"))))
        assert(m.mask(d .. "/a/file"))
        print(#io.open(d .. "/a/file"):read("a"))
        assert(m.umount(d .. "/b", { "detach" }))
        print(io.open(d .. "/b/file") == nil)]]):format(dir))
      assert.are.equal(0, st, err)
      assert.are.same({ "data", dir .. "/b/new: Read-only file system", "0", "true" },
        support.lines(out))
      -- none of it is visible on the host
      for _, line in ipairs(support.mounts()) do
        assert.is_nil(line:find(dir, 1, true))
      end
    end)

    it("raises on an unknown bind mount option instead of ignoring it", function()
      assert.has_error(function()
        core.mount.mount("/a", "/b", nil, { "rbind", "rdonly" })
      end, "unknown bind mount option in 'rdonly'")
    end)

    it("fails with nil, message, errno", function()
      local ok, msg, errno = core.mount.umount("/nonexistent/mount/point")
      assert.is_nil(ok)
      assert.matches("^umount /nonexistent/mount/point: ", msg)
      assert.is_number(errno)
    end)

    it("reads a file of a root with symlinks resolved inside that root", function()
      local root = support.tmpdir()
      os.execute(("mkdir -p %s/etc && echo inside-root > %s/etc/hostname && ln -s /../../../../etc/hostname %s/etc/link"):format(root, root, root))
      assert.are.equal("inside-root\n", core.mount.read_in_root(root, "/etc/link"))
      local ok, msg = core.mount.read_in_root(root, "/etc/missing")
      assert.is_nil(ok)
      assert.are.equal("/etc/missing: No such file or directory", msg)
    end)
  end)

  describe("spawn", function()
    it("checks the spec and names the field that is wrong", function()
      local s = basic_spec({ "true" })
      s.linux.frobs = 1
      assert.has_error(function() core.spawn(s) end, "spawn: linux: unknown field 'frobs'")
      s = basic_spec({})
      assert.has_error(function() core.spawn(s) end, "spawn: process.args is empty")
      s = basic_spec({ "true" })
      s.process.cwd = 7
      assert.has_error(function() core.spawn(s) end, "spawn: process.cwd: expected string, got number")
      s = basic_spec({ "true" })
      s.linux.namespaces = { { type = "pid" } }
      assert.has_error(function() core.spawn(s) end, "spawn: a container needs its own mount namespace")
      s = basic_spec({ "true" })
      s.hostname = "x"
      assert.has_error(function() core.spawn(s) end, "spawn: hostname needs its own uts namespace")
      assert.has_error(function() core.spawn(basic_spec({ "true" }), { bogus = true }) end,
        "spawn: opts: unknown field 'bogus'")
    end)

    it("runs a process and reports how it ended #root", function()
      local proc = assert(core.spawn(basic_spec({ "sh", "-c", "exit 5" })))
      assert.is_true(proc.pid > 1)
      assert.are.same({ "exit", 5 }, { proc:wait() })
      proc:close()
      proc = assert(core.spawn(basic_spec({ "sleep", "30" })))
      assert(proc:kill(9))
      assert.are.same({ "signal", 9 }, { proc:wait() })
      proc:close()
      proc:close()  -- idempotent
    end)

    it("returns the failed step and errno from the child #root", function()
      local s = basic_spec({ "true" })
      s.root.path = "/nonexistent/root"
      local ok, msg, errno, step = core.spawn(s)
      assert.is_nil(ok)
      assert.are.equal("bind /nonexistent/root: No such file or directory", msg)
      assert.are.equal(core.sys.errno.ENOENT, errno)
      assert.are.equal("bind", step)
      s = basic_spec({ "true" })
      s.mounts[#s.mounts + 1] = { destination = "/x", type = "nosuchfs", source = "none" }
      ok, msg, errno, step = core.spawn(s)
      assert.is_nil(ok)
      assert.are.equal("mount /x: No such device", msg)
      assert.are.equal("mount", step)
      ok, msg, errno, step = core.spawn(basic_spec({ "/nonexistent" }))
      assert.are.equal("exec /nonexistent: No such file or directory", msg)
      assert.are.equal("exec", step)
    end)

    it("mounts beneath the root, never through a symlink to the host #root", function()
      local host = support.tmpdir()
      local root = support.tmpdir() .. "/root"
      -- /evil -> the host folder's path, which also exists inside the root
      assert(os.execute(("cp -a %s %s && ln -s /../../../..%s %s/evil && mkdir -p %s%s"):format(
        q(support.rootfs()), root, host, root, root, host)))
      local s = basic_spec({ "sh", "-c", "touch /evil/x && grep -q ' " .. host .. " .* tmpfs ' /proc/self/mountinfo" })
      s.root.path = root
      s.mounts[#s.mounts + 1] = { destination = "/evil", type = "tmpfs", source = "tmpfs" }
      local ok, msg = core.spawn(s)
      assert.is_truthy(ok, msg)
      assert.are.same({ "exit", 0 }, { ok:wait() })
      ok:close()
      -- the host folder the link names was not touched
      local p = io.popen("ls -A " .. host)
      assert.are.equal("", p:read("a"))
      p:close()
    end)

    it("binds host folders read-only when asked #root", function()
      local host = support.tmpdir()
      os.execute("echo shared > " .. host .. "/file")
      local s = basic_spec({ "sh", "-c", "grep -qx shared /data/file && ! touch /data/new 2>/dev/null" })
      s.mounts[#s.mounts + 1] = { destination = "/data", type = "bind", source = host,
        options = { "rbind", "ro" } }
      local proc = assert(core.spawn(s))
      assert.are.same({ "exit", 0 }, { proc:wait() })
      proc:close()
      assert.is_nil(io.open(host .. "/new"))
    end)
  end)
end)
