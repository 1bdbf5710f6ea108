-- core.spawn: the start barrier (opts.start = false, process:start), the
-- fields it refuses rather than ignores, and the rules it leaves to Lua
-- (make_cwd, the PATH of the command's own environment). The relay that
-- process:wait, attach and the monitor share is driven directly too.
local support = require "support"
local core = require "luactr.core"

local q = support.q
local E = core.sys.errno

-- A spec for the busybox fixture in new pid, mount, uts and network
-- namespaces; `out` (a host folder) is bound at /out when given.
local function spec(args, out)
  local s = {
    process = { args = args, env = { "PATH=/bin" }, cwd = "/" },
    root = { path = support.rootfs() },
    hostname = "created-box",
    mounts = {
      { destination = "/proc", type = "proc", source = "proc" },
      { destination = "/dev", type = "tmpfs", source = "tmpfs", options = { "mode=755" } },
    },
    linux = { namespaces = { { type = "pid" }, { type = "mount" }, { type = "uts" },
                             { type = "network" } } },
  }
  if out then
    s.mounts[#s.mounts + 1] = { destination = "/out", type = "bind", source = out,
      options = { "rbind" } }
  end
  return s
end

local readlink = core.fs.readlink
local function exists(path) return core.fs.lstat(path) ~= nil end

describe("core.spawn's start barrier #root", function()
  it("creates the container and holds its command until start", function()
    local out = support.tmpdir()
    local proc = assert(core.spawn(spec({ "sh", "-c", "hostname > /out/ran" }, out),
      { start = false }))
    finally(function() proc:close() end)
    local pid = proc.pid
    -- its namespaces are made, and its hostname set
    assert.are_not.equal(readlink("/proc/self/ns/net"), readlink("/proc/" .. pid .. "/ns/net"))
    assert.are_not.equal(readlink("/proc/self/ns/uts"), readlink("/proc/" .. pid .. "/ns/uts"))
    local st, host = support.sh("nsenter -t " .. pid .. " -u hostname")
    assert.are.equal(0, st)
    assert.are.equal("created-box\n", host)
    -- its mounts too: /out is bound in its mount namespace
    st = support.sh("nsenter -t " .. pid .. " -m test -d /out")
    assert.are.equal(0, st)
    -- but nothing of the command has run: the process is the stage
    assert.is_false(exists(out .. "/ran"))
    assert.matches("memfd:luactr%-stage", readlink("/proc/" .. pid .. "/exe"))
    assert.is_true(support.alive(pid))
    assert.is_true(proc:start())
    assert.are.same({ "exit", 0 }, { proc:wait() })
    assert.are.equal("created-box\n", support.readfile(out .. "/ran"))
  end)

  it("refuses a second start, and a start of a process spawned in one call", function()
    local proc = assert(core.spawn(spec({ "true" }), { start = false }))
    assert.is_true(proc:start())
    assert.has_error(function() proc:start() end,
      "process:start: the process was started already")
    assert.are.same({ "exit", 0 }, { proc:wait() })
    proc:close()
    proc = assert(core.spawn(spec({ "true" })))
    assert.has_error(function() proc:start() end,
      "process:start: the process was started already")
    assert.are.same({ "exit", 0 }, { proc:wait() })
    proc:close()
  end)

  it("does not wait for a process that was never started", function()
    local proc = assert(core.spawn(spec({ "true" }), { start = false }))
    assert.has_error(function() proc:wait() end, "process:wait: the process was not started")
    proc:close()
  end)

  it("kills and reaps a created process on close or collection", function()
    local out = support.tmpdir()
    local proc = assert(core.spawn(spec({ "touch", "/out/ran" }, out), { start = false }))
    local pid = proc.pid
    assert.is_true(support.alive(pid))
    proc:close()
    assert.is_false(exists("/proc/" .. pid))  -- gone, and reaped: no zombie
    proc:close()  -- idempotent
    proc = assert(core.spawn(spec({ "touch", "/out/ran" }, out), { start = false }))
    pid = proc.pid
    proc = nil  -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_false(exists("/proc/" .. pid))
    assert.is_false(exists(out .. "/ran"))
  end)

  it("reports an exec failure from start, as spawn does", function()
    local proc = assert(core.spawn(spec({ "/nonexistent" }), { start = false }))
    local ok, msg, errno, step = proc:start()
    assert.is_nil(ok)
    assert.are.equal("exec /nonexistent: No such file or directory", msg)
    assert.are.equal(E.ENOENT, errno)
    assert.are.equal("exec", step)
    assert.is_false(exists("/proc/" .. proc.pid))  -- reaped
    proc:close()
  end)

  it("holds the command under --init, PID 1 being the stage's init", function()
    local out = support.tmpdir()
    local proc = assert(core.spawn(spec({ "sh", "-c", "touch /out/ran; exit 3" }, out),
      { start = false, init = true }))
    finally(function() proc:close() end)
    assert.matches("memfd:luactr%-stage", readlink("/proc/" .. proc.pid .. "/exe"))
    assert.is_false(exists(out .. "/ran"))
    assert.is_true(proc:start())
    assert.are.same({ "exit", 3 }, { proc:wait() })
    assert.is_true(exists(out .. "/ran"))
  end)

  it("gives a created container's terminal master at once", function()
    local s = spec({ "true" })
    s.process.terminal = true
    s.mounts[#s.mounts + 1] = { destination = "/dev/pts", type = "devpts", source = "devpts",
      options = { "newinstance", "ptmxmode=0666" } }
    local proc = assert(core.spawn(s, { start = false }))
    assert.is_number(proc.master)
    assert.is_true(proc:start())
    assert.are.same({ "exit", 0 }, { proc:wait() })
    proc:close()
  end)
end)

describe("core.spawn's rules", function()
  it("refuses start = false in join mode", function()
    assert.has_error(function() core.spawn(spec({ "true" }), { join = 1, start = false }) end,
      "spawn: opts.start = false and opts.join do not go together yet")
    assert.has_error(function() core.spawn(spec({ "true" }), { join = 1, make_cwd = true }) end,
      "spawn: opts.make_cwd and opts.join do not go together (an exec changes nothing in a running container)")
  end)

  it("refuses linux.resources and linux.cgroupsPath without opts.cgroups", function()
    local s = spec({ "true" })
    s.linux.resources = { pids = { limit = 10 } }
    assert.has_error(function() core.spawn(s) end,
      "spawn: linux.resources: spawn makes no cgroup; make it first (luactr.runtime.cgroup) and give its folders as opts.cgroups")
    s = spec({ "true" })
    s.linux.cgroupsPath = "/luactr/x"
    assert.has_error(function() core.spawn(s, { init = false }) end,
      "spawn: linux.cgroupsPath: spawn makes no cgroup; make it first (luactr.runtime.cgroup) and give its folders as opts.cgroups")
  end)

  it("takes them with opts.cgroups #root", function()
    local s = spec({ "true" })
    s.linux.resources = { pids = { limit = 10 } }
    s.linux.cgroupsPath = "/luactr/x"
    local proc = assert(core.spawn(s, { cgroups = {} }))
    assert.are.same({ "exit", 0 }, { proc:wait() })
    proc:close()
  end)

  it("refuses fields it would otherwise ignore", function()
    local s = spec({ "true" })
    s.process.consoleSize = { height = 24, width = 80 }
    assert.has_error(function() core.spawn(s) end,
      "spawn: process.consoleSize needs process.terminal")
    s = spec({ "true" })
    s.process.terminal = true
    assert.has_error(function() core.spawn(s, { stdio = { -1, 1, 2 } }) end,
      "spawn: opts.stdio and process.terminal do not go together")
    assert.has_error(function() core.spawn(spec({ "true" }), { stdio = { -1, 1, 2 }, stdin = "null" }) end,
      "spawn: opts.stdin and opts.stdio do not go together")
    assert.has_error(function() core.spawn(spec({ "true" }), { join_start = 5 }) end,
      "spawn: opts.join_start needs opts.join")
    assert.has_error(function() core.spawn(spec({ "true" }), { start = 1 }) end,
      "spawn: opts.start: expected boolean, got number")
  end)

  it("makes a missing working directory only when asked #root", function()
    local s = spec({ "sh", "-c", "test \"$(pwd)\" = /work/made/here" })
    s.mounts[#s.mounts + 1] = { destination = "/work", type = "tmpfs", source = "tmpfs" }
    s.process.cwd = "/work/made/here"
    local ok, msg, errno, step = core.spawn(s)
    assert.is_nil(ok)
    assert.are.equal("chdir /work/made/here: No such file or directory", msg)
    assert.are.equal(E.ENOENT, errno)
    assert.are.equal("chdir", step)
    local proc = assert(core.spawn(s, { make_cwd = true }))
    assert.are.same({ "exit", 0 }, { proc:wait() })
    proc:close()
  end)

  it("searches the command along its own PATH only #root", function()
    local s = spec({ "true" })
    s.process.env = { "HOME=/" }  -- no PATH: no search
    local ok, msg, errno, step = core.spawn(s)
    assert.is_nil(ok)
    assert.are.equal("exec true: No such file or directory", msg)
    assert.are.equal(E.ENOENT, errno)
    assert.are.equal("exec", step)
    s.process.env = { "PATH=/nonexistent:/bin" }
    local proc = assert(core.spawn(s))
    assert.are.same({ "exit", 0 }, { proc:wait() })
    proc:close()
    s.process.args = { "/bin/true" }  -- a path is not searched for
    s.process.env = {}
    proc = assert(core.spawn(s))
    assert.are.same({ "exit", 0 }, { proc:wait() })
    proc:close()
  end)
end)

describe("the relay", function()
  it("hands streams to their hooks in slot order, ends them, times out", function()
    local bin = support.tmpdir() .. "/relay"
    support.must(("cc -std=c11 -o %s %s/tests/probes/relay.c %s/src/relay.c"):format(
      q(bin), q(support.TOP), q(support.TOP)))
    local st, out = support.sh(q(bin))
    assert.are.equal(0, st)
    assert.are.same({ "a:hello", "b:ready", "a:end", "idle",
      "write without waiting to a full pipe: gave up" }, support.lines(out))
  end)
end)
