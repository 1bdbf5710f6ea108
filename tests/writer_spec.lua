-- The one writer of a container's spec (luactr.spec): one spec per run
-- option, compared field by field with the spec of a run that does not
-- give it, so that each option is seen to change what it should and
-- nothing else; and an exec's spec, made from the container's own.
local json = require "luactr.json"
local run = require "luactr.runtime.run"
local spec = require "luactr.spec"

local ROOT = { uid = 0, gid = 0, home = "/root", additionalGids = {} }
local BASE = { rootfs = "/srv/root", cmd = { "true" }, id = ("ab"):rep(32) }

-- The spec of a run with BASE's options and `o`'s, as luactr.run makes
-- it (prepare, then build), as plain JSON-shaped data.
local function spec_of(o, user)
  local t = {}
  for k, v in pairs(BASE) do t[k] = v end
  for k, v in pairs(o or {}) do t[k] = v end
  return json.decode(json.encode(spec.build(run.prepare(t), user or ROOT)))
end

-- The paths ("process.env", "linux.namespaces") at which two specs
-- differ, sorted.
local function differences(a, b)
  local out = {}
  local function walk(x, y, path)
    if type(x) == "table" and type(y) == "table" then
      local keys = {}
      for k in pairs(x) do keys[k] = true end
      for k in pairs(y) do keys[k] = true end
      for k in pairs(keys) do
        -- arrays differ as a whole: an item added moves the others
        if math.type(k) == "integer" then
          if json.encode(x) ~= json.encode(y) then out[#out + 1] = path end
          return
        end
        walk(x[k], y[k], path == "" and tostring(k) or path .. "." .. tostring(k))
      end
    elseif json.encode(x) ~= json.encode(y) then
      out[#out + 1] = path
    end
  end
  walk(a, b, "")
  table.sort(out)
  local seen, list = {}, {}
  for _, p in ipairs(out) do
    if not seen[p] then seen[p], list[#list + 1] = true, p end
  end
  return list
end

local base = spec_of()

-- The fields option `o` changes, and its spec.
local function changes(o, user)
  local s = spec_of(o, user)
  return differences(base, s), s
end

local function has_namespace(s, ns)
  for _, n in ipairs(s.linux.namespaces) do if n.type == ns then return true end end
  return false
end

describe("luactr.spec", function()
  it("writes the whole spec of a plain run: namespaces, mounts, confinement, its cgroup", function()
    assert.are.equal("/srv/root", base.root.path)
    assert.is_false(base.root.readonly)
    assert.are.same({ "true" }, base.process.args)
    assert.are.equal("/", base.process.cwd)
    assert.is_true(base.process.noNewPrivileges)
    for _, ns in ipairs({ "pid", "mount", "uts", "ipc", "cgroup", "network" }) do
      assert.is_true(has_namespace(base, ns), ns)
    end
    assert.is_false(has_namespace(base, "user"))
    assert.are.equal("luactr-abababababab", base.linux.cgroupsPath)
    assert.is_table(base.linux.resources.devices)
    assert.is_table(base.linux.seccomp)
    assert.is_table(base.linux.maskedPaths)
    assert.are.equal("abababababab", base.hostname)
    assert.are.same({ "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOSTNAME=abababababab", "HOME=/root" }, base.process.env)
  end)

  it("changes only what each option is about", function()
    local cases = {
      { { env = { "A=1" } }, { "process.env" } },
      { { env = { B = "2" } }, { "process.env" } },
      { { workdir = "/srv" }, { "process.cwd" } },
      { { hostname = "box" }, { "hostname", "process.env" } },
      { { read_only = true }, { "root.readonly" } },
      { { network = "host" }, { "hostname", "linux.namespaces", "process.env" } },
      { { tty = true }, { "process.env", "process.terminal" } },
      { { cap_drop = { "ALL" } }, { "linux.seccomp.syscalls", "process.capabilities.bounding",
        "process.capabilities.effective", "process.capabilities.permitted" } },
      { { security_opt = { "seccomp=unconfined" } }, { "linux.seccomp" } },
      { { security_opt = { "no-new-privileges=false" } }, { "process.noNewPrivileges" } },
      { { memory = "64m" }, { "linux.resources.memory" } },
      { { pids_limit = 100 }, { "linux.resources.pids" } },
      { { cgroup_parent = "apps" }, { "linux.cgroupsPath" } },
    }
    for _, case in ipairs(cases) do
      local got = changes(case[1])
      assert.are.same(case[2], got, json.encode(case[1]))
    end
  end)

  it("writes each option's value where the OCI spec has it", function()
    local _, s = changes({ env = { B = "2" }, workdir = "/srv", read_only = true })
    assert.are.equal("B=2", s.process.env[#s.process.env])
    assert.are.equal("/srv", s.process.cwd)
    assert.is_true(s.root.readonly)
    _, s = changes({ tty = true })
    assert.is_true(s.process.terminal)
    assert.are.equal("TERM=xterm", s.process.env[3])
    _, s = changes({ network = "host" })
    assert.is_false(has_namespace(s, "network"))
    _, s = changes({ memory = "64m", cgroup_parent = "apps" })
    assert.are.equal(64 * 2 ^ 20, s.linux.resources.memory.limit)
    assert.are.equal("apps/luactr-abababababab", s.linux.cgroupsPath)
    _, s = changes({ cap_drop = { "ALL" }, cap_add = { "KILL" } })
    assert.are.same({ "CAP_KILL" }, s.process.capabilities.bounding)
    _, s = changes({ privileged = true })
    assert.is_nil(s.linux.seccomp)
    assert.is_nil(s.linux.maskedPaths)
  end)

  it("gives a user no capability in effect, and its home", function()
    local d, s = changes({ user = "1000" }, { uid = 1000, gid = 1000, home = "/home/u", additionalGids = {} })
    assert.are.same({ "process.capabilities.effective", "process.capabilities.permitted",
      "process.env", "process.user.gid", "process.user.uid" }, d)
    assert.are.same({}, s.process.capabilities.effective)
    assert.are.equal("HOME=/home/u", s.process.env[3])
  end)

  it("mounts the host's resolver for a build step, and has no cgroup without an id", function()
    local s = json.decode(json.encode(spec.build({ rootfs = "/r", cmd = { "true" }, hostname = "b",
      host_resolv = true }, ROOT)))
    assert.are.same({ destination = "/etc/resolv.conf", type = "bind", source = "/etc/resolv.conf",
      options = { "bind", "ro" } }, s.mounts[#s.mounts])
    assert.is_nil(s.linux.cgroupsPath)
    assert.is_nil(s.linux.resources)
  end)

  it("makes an exec's spec from the container's own", function()
    local saved = json.decode(json.encode(spec.build(run.prepare({ rootfs = "/r", cmd = { "sleep", "1" },
      id = ("cd"):rep(32), env = { "A=1" } }), ROOT)))
    local s = spec.exec(json.decode(json.encode(saved)), { cmd = { "ls" }, env = { "A=2", "B=3" },
      workdir = "/tmp", tty = true, console_size = { 24, 80 } })
    assert.are.same({ "ls" }, s.process.args)
    assert.are.equal("/tmp", s.process.cwd)
    assert.is_true(s.process.terminal)
    assert.are.same({ height = 24, width = 80 }, s.process.consoleSize)
    local env = table.concat(s.process.env, " ")
    assert.matches("A=2", env)
    assert.matches("B=3", env)
    assert.matches("TERM=xterm", env)
    assert.is_nil(env:find("A=1", 1, true))
    -- what it joins and how it is confined stay the container's
    assert.are.same(saved.linux, s.linux)
    assert.are.same(saved.process.capabilities, s.process.capabilities)
    s = spec.exec(json.decode(json.encode(saved)), { cmd = { "id" },
      user = { uid = 7, gid = 8, home = "/h", additionalGids = {} } })
    assert.are.equal(7, s.process.user.uid)
    assert.are.same({}, s.process.capabilities.effective)
    assert.matches("HOME=/h", table.concat(s.process.env, " "))
  end)
end)
