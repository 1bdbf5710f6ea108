-- Confinement: capabilities, seccomp and no_new_privs. Each attempt runs
-- in a default container and fails there, and is shown working once the
-- protection is lifted (--privileged, --cap-add, seccomp=unconfined), so
-- that every test would fail if the protection were gone.
local support = require "support"
local core = require "luactr.core"
local json = require "luactr.json"
local seccomp = require "luactr.spec.seccomp"
local spec = require "luactr.spec"

local q = support.q

local DOCKER_CAPS = "00000000a80425fb"  -- Docker's 14
local NONE = "0000000000000000"

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- The fields of a /proc/PID/status text.
local function fields(text)
  local t = {}
  for k, v in (text or ""):gmatch("([%w_]+):%s*([^\n]*)") do t[k] = v end
  return t
end

local rootfs = support.probe_rootfs

-- `luactr run --rootfs <probe root> OPTIONS -- CMD`: status, stdout, stderr.
local function run(options, cmd)
  return support.sh(("%s run --rootfs %s %s -- %s"):format(support.LUACTR,
    q(rootfs()), options, cmd))
end

local function run_sh(options, script)
  return run(options, "sh -c " .. q(script))
end

-- What /proc/self/status says in a container run with `options`.
local function status(options)
  local st, out, err = run(options, "cat /proc/self/status")
  assert.are.equal(0, st, err)
  return fields(out)
end

-- A file of this run's, holding `text`.
local function file(name, text)
  local path = support.tmpdir() .. "/" .. name
  support.write(path, text)
  return path
end

describe("capabilities #root", function()
  it("gives root Docker's 14 capabilities, none inheritable, none ambient", function()
    local s = status("")
    assert.are.equal(DOCKER_CAPS, s.CapBnd)
    assert.are.equal(DOCKER_CAPS, s.CapPrm)
    assert.are.equal(DOCKER_CAPS, s.CapEff)
    assert.are.equal(NONE, s.CapInh)
    assert.are.equal(NONE, s.CapAmb)
  end)

  it("gives none at all with --cap-drop ALL", function()
    local s = status("--cap-drop ALL")
    for _, set in ipairs({ "CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb" }) do
      assert.are.equal(NONE, s[set], set)
    end
  end)

  it("adds and drops capabilities by name, in any case, with or without CAP_", function()
    -- CAP_SYS_ADMIN is bit 21
    for _, name in ipairs({ "SYS_ADMIN", "sys_admin", "CAP_SYS_ADMIN", "cap_Sys_Admin" }) do
      local s = status("--cap-add " .. name)
      assert.are.equal("00000000a82425fb", s.CapBnd, name)
      assert.are.equal("00000000a82425fb", s.CapEff, name)
    end
    -- CAP_KILL alone is bit 5
    assert.are.equal("0000000000000020", status("--cap-drop all --cap-add kill").CapEff)
    assert.are.equal("00000000a80425db", status("--cap-drop KILL").CapEff)
  end)

  it("gives every capability luactr holds with --privileged", function()
    local host = fields(support.readfile("/proc/self/status")).CapBnd
    local s = status("--privileged")
    assert.are.equal(host, s.CapBnd)
    assert.are.equal(host, s.CapPrm)
    assert.are.equal(host, s.CapEff)
  end)

  it("also lifts the masked and read-only paths with --privileged, and /sys is writable", function()
    -- the mounts over /proc's paths, and /sys's options
    local script = [[awk '$5 ~ "^/proc/" { n++ } $5 == "/sys" { print $6 } END { print n + 0 }' /proc/self/mountinfo]]
    local st, out = run_sh("", script)
    assert.are.equal(0, st)
    local lines = support.lines(out)
    assert.matches("^ro,", lines[1])
    assert.is_true(tonumber(lines[2]) >= 3)
    st, out = run_sh("--privileged", script)
    assert.are.equal(0, st)
    lines = support.lines(out)
    assert.matches("^rw,", lines[1])
    assert.are.equal("0", lines[2])
  end)

  it("gives a non-root user no capability in effect, under the same bounding set", function()
    local s = status("-u 1000")
    assert.are.equal("1000", s.Uid:match("^%d+"))
    assert.are.equal(NONE, s.CapEff)
    assert.are.equal(NONE, s.CapPrm)
    assert.are.equal(DOCKER_CAPS, s.CapBnd)
  end)

  it("takes away what root could do without the capability", function()
    local script = "touch /dev/shm/f && chown 1000 /dev/shm/f && stat -c %u /dev/shm/f"
    local st, out = run_sh("", script)
    assert.are.equal(0, st)
    assert.are.equal("1000\n", out)
    local err
    st, _, err = run_sh("--cap-drop CHOWN", script)
    assert.are_not.equal(0, st)
    assert.matches("Operation not permitted", err)
  end)

  it("refuses a capability it does not know", function()
    local st, _, err = run("--cap-add FROBNICATE", "true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: run: cap-add: unknown capability: FROBNICATE\n", err)
  end)
end)

describe("no_new_privs #root", function()
  it("is set by default and lifted by --security-opt no-new-privileges=false", function()
    assert.are.equal("1", status("").NoNewPrivs)
    assert.are.equal("1", status("--security-opt no-new-privileges").NoNewPrivs)
    assert.are.equal("0", status("--security-opt no-new-privileges=false").NoNewPrivs)
    -- without no_new_privs the filter is loaded while CAP_SYS_ADMIN is held
    assert.are.equal("2", status("--security-opt no-new-privileges=false").Seccomp)
  end)

  it("refuses a security option it does not know", function()
    local st, _, err = run("--security-opt apparmor=unconfined", "true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: run: security-opt: unsupported option 'apparmor=unconfined'\n", err)
  end)
end)

describe("seccomp #root", function()
  it("filters every container, unless seccomp=unconfined or --privileged", function()
    assert.are.equal("2", status("").Seccomp)
    assert.are.equal("0", status("--security-opt seccomp=unconfined").Seccomp)
    assert.are.equal("0", status("--privileged").Seccomp)
  end)

  it("answers clone3 with ENOSYS, and fork still works through clone", function()
    local st, out = run_sh("", "probe clone3; echo $(echo forked)")
    assert.are.equal(0, st)
    assert.are.equal("clone3: Function not implemented\nforked\n", out)
    st, out = run("--security-opt seccomp=unconfined", "probe clone3")
    assert.are.equal(0, st)
    assert.are.equal("clone3: ok\n", out)
  end)

  it("lets clone make no namespace without CAP_SYS_ADMIN", function()
    local st, out = run("", "probe clone-newuser")
    assert.are.equal(1, st)
    assert.are.equal("clone-newuser: Operation not permitted\n", out)
    st, out = run("--security-opt seccomp=unconfined", "probe clone-newuser")
    assert.are.equal("clone-newuser: ok\n", out)
    st, out = run("--cap-add SYS_ADMIN", "probe clone-newuser")
    assert.are.equal("clone-newuser: ok\n", out)
  end)

  it("allows personality only for Docker's personas", function()
    local st, out = run_sh("", "probe personality 0; probe personality 40000")
    assert.are.equal(1, st)
    -- 0x40000 is ADDR_NO_RANDOMIZE
    assert.are.equal("personality: ok\npersonality: Operation not permitted\n", out)
    st, out = run("--security-opt seccomp=unconfined", "probe personality 40000")
    assert.are.equal("personality: ok\n", out)
  end)

  it("refuses AF_VSOCK sockets", function()
    local _, out = run("", "probe vsock")
    assert.are.equal("vsock: Operation not permitted\n", out)
    _, out = run("--security-opt seccomp=unconfined", "probe vsock")
    assert.are_not.equal("vsock: Operation not permitted\n", out)
  end)

  it("takes a profile in Docker's JSON format with seccomp=FILE", function()
    local profile = file("no-mkdir.json", [[{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": null,
  "syscalls": [
    { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
      "comment": "no new folders" }
  ]
}]])
    local st, _, err = run("--security-opt seccomp=" .. profile, "mkdir /dev/shm/d")
    assert.are.equal(1, st)
    assert.matches("Operation not permitted", err)
    -- the profile replaces the default one: keyctl is allowed by it
    local out
    st, out = run("--security-opt seccomp=" .. profile, "probe keyctl")
    assert.are.equal("keyctl: ok\n", out)
    st = run("", "mkdir /dev/shm/d")
    assert.are.equal(0, st)
  end)

  it("refuses a profile it cannot read or understand", function()
    local st, _, err = run("--security-opt seccomp=/no/such/profile.json", "true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: run: seccomp profile /no/such/profile.json: No such file or directory\n", err)
    local bad = file("bad.json", [[{"defaultAction": "SCMP_ACT_ALLOW", "syscals": []}]])
    st, _, err = run("--security-opt seccomp=" .. bad, "true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: run: seccomp profile " .. bad .. ": unknown field 'syscals'\n", err)
    bad = file("bad-action.json", [[{"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_SOMETIMES"}]}]])
    st, _, err = run("--security-opt seccomp=" .. bad, "true")
    assert.are.equal(125, st)
    assert.matches("unknown action 'SCMP_ACT_SOMETIMES'", err)
  end)

  it("takes a profile as a Lua table in luactr.run", function()
    local code = ([[
local luactr = require "luactr"
local ok, how, code = luactr.run{ rootfs = %q, cmd = { "mkdir", "/dev/shm/d" },
  seccomp = { defaultAction = "SCMP_ACT_ALLOW",
              syscalls = { { names = { "mkdir", "mkdirat" }, action = "SCMP_ACT_ERRNO" } } } }
print(how, code)
ok, how, code = luactr.run{ rootfs = %q, cmd = { "mkdir", "/dev/shm/d" }, seccomp = "unconfined" }
print(how, code)]]):format(rootfs(), rootfs())
    local st, out, err = support.sh(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s lua5.4 -e %s"):format(
      q(support.BUILD .. "/?.so;;"), q(code)))
    assert.are.equal(0, st, err)
    assert.are.equal("exit\t1\nexit\t0\n", out)
    assert.matches("Operation not permitted", err)
  end)

  it("confines --init's PID 1 as it confines the command, as the command's user", function()
    local st, out = run_sh("--init", "cat /proc/1/status")
    assert.are.equal(0, st)
    local s = fields(out)
    assert.are.equal("2", s.Seccomp)
    assert.are.equal(DOCKER_CAPS, s.CapEff)
    st, out = run_sh("--init -u 1000 --cap-drop ALL", "cat /proc/1/status; exit 3")
    assert.are.equal(3, st)  -- the init reaped the command and passed its status on
    s = fields(out)
    assert.are.equal("1000", s.Uid:match("^%d+"))
    assert.are.equal(NONE, s.CapBnd)
    assert.are.equal("1", s.NoNewPrivs)
  end)
end)

describe("escape attempts from a default container #root", function()
  it("cannot mount anything", function()
    local before = support.mounts()
    local st, _, err = run("", "mount -t tmpfs none /tmp")
    assert.are_not.equal(0, st)
    assert.matches("permission denied", err)
    st = run("--privileged", "mount -t tmpfs none /tmp")
    assert.are.equal(0, st)
    assert.are.same(before, support.mounts())
  end)

  it("cannot write /proc/sysrq-trigger", function()
    if not exists("/proc/sysrq-trigger") then
      pending("this host's kernel has no /proc/sysrq-trigger to protect")
      return
    end
    local st, _, err = run_sh("", "echo h > /proc/sysrq-trigger")
    assert.are_not.equal(0, st)
    assert.matches("Read%-only file system", err)
    st = run_sh("--privileged", "echo h > /proc/sysrq-trigger")  -- h: print help
    assert.are.equal(0, st)
  end)

  it("cannot load a kernel module", function()
    local st, out = run("", "probe finit_module")
    assert.are.equal(1, st)
    assert.are.equal("finit_module: Operation not permitted\n", out)
    -- with CAP_SYS_MODULE the filter lets the call through, and the kernel
    -- itself answers (this file is no module, or modules are off)
    st, out = run("--cap-add SYS_MODULE", "probe finit_module")
    assert.matches("^finit_module: ", out)
    assert.are_not.equal("finit_module: Operation not permitted\n", out)
  end)

  it("cannot open files by handle (the shocker escape)", function()
    local st, out = run("", "probe shocker")
    assert.are.equal(1, st)
    assert.are.equal("shocker: Operation not permitted\n", out)
    -- both guards hold: without the filter, the missing capability does
    st, out = run("--security-opt seccomp=unconfined", "probe shocker")
    assert.are.equal("shocker: Operation not permitted\n", out)
    st, out = run("--cap-add DAC_READ_SEARCH", "probe shocker")
    assert.are.equal(0, st)
    assert.are.equal("shocker: ok\n", out)
  end)

  it("cannot see, signal or trace a host process", function()
    local host_pid = core.sys.getpid()  -- this test runner's
    local st, out, err = run_sh("", ("sleep 5 & kill -0 $! && echo own; kill -0 %d; probe ptrace %d")
      :format(host_pid, host_pid))
    assert.are.equal(1, st)
    -- its own processes it can signal; the host's are not there to see
    assert.are.equal("own\nptrace: No such process\n", out)
    assert.matches("No such process", err)
  end)

  it("cannot use keyctl", function()
    local st, out = run("", "probe keyctl")
    assert.are.equal(1, st)
    assert.are.equal("keyctl: Operation not permitted\n", out)
    st, out = run("--security-opt seccomp=unconfined", "probe keyctl")
    assert.are.equal("keyctl: ok\n", out)
  end)

  it("cannot unshare a new user namespace", function()
    local st, _, err = run("", "unshare -U true")
    assert.are.equal(1, st)
    assert.matches("Operation not permitted", err)
    st = run("--security-opt seccomp=unconfined", "unshare -U true")
    assert.are.equal(0, st)
  end)

  it("cannot open a raw socket without NET_RAW", function()
    local st = run("", "ping -c1 -W1 127.0.0.1")
    assert.are.equal(0, st)
    local err
    st, _, err = run("--cap-drop NET_RAW", "ping -c1 -W1 127.0.0.1")
    assert.are.equal(1, st)
    assert.matches("permission denied", err)
  end)

  it("cannot make a device node without MKNOD", function()
    -- Docker's default set holds CAP_MKNOD: the node can be made...
    local st = run("", "mknod /dev/shm/blk b 7 0")
    assert.are.equal(0, st)
    local err
    st, _, err = run("--cap-drop MKNOD", "mknod /dev/shm/blk b 7 0")
    assert.are.equal(1, st)
    assert.matches("Operation not permitted", err)
  end)

  it("cannot use a block device it makes", function()
    -- ...and only the devices cgroup (deny all but the default devices)
    -- keeps it from being opened. /dev is a tmpfs without nodev: nothing
    -- but the cgroup stands in the way (as --privileged shows).
    local st, out, err = run_sh("", "mknod /dev/blk b 7 0 && echo made; head -c 1 /dev/blk; echo $?")
    assert.are.equal(0, st)
    assert.are.equal("made\n1\n", out)
    assert.matches("head: /dev/blk: Operation not permitted", err)
    st, out, err = run_sh("--privileged", "mknod /dev/blk b 7 0 && head -c 1 /dev/blk >/dev/null; echo $?")
    assert.are.equal(0, st, err)
    assert.are.equal("0\n", out)
  end)

  it("reaches no host process or fd through /proc", function()
    local host_pid = core.sys.getpid()  -- this test runner's
    local st, out = run_sh("", ("readlink /proc/1/exe; ls /proc/1/fd; ls /proc/%d 2>&1"):format(host_pid))
    assert.are.equal(1, st)
    -- PID 1 is the container's shell, holding only stdin, stdout, stderr
    assert.are.same({ "/bin/busybox", "0", "1", "2",
      ("ls: /proc/%d: No such file or directory"):format(host_pid) }, support.lines(out))
  end)
end)

describe("luactr.spec.seccomp", function()
  local function allowed(profile, name)
    for _, call in ipairs(profile.syscalls) do
      for _, n in ipairs(call.names) do
        if n == name and call.action == "SCMP_ACT_ALLOW" and not call.args then return true end
      end
    end
    return false
  end

  local function rule(profile, name)
    for _, call in ipairs(profile.syscalls) do
      for _, n in ipairs(call.names) do
        if n == name then return call end
      end
    end
  end

  it("resolves Docker's default profile against a container's capabilities", function()
    local p = seccomp.resolve(seccomp.DEFAULT, spec.CAPABILITIES)
    assert.are.equal("SCMP_ACT_ERRNO", p.defaultAction)
    assert.are.equal(1, p.defaultErrnoRet)
    assert.are.equal(seccomp.native_arch(), p.architectures[1])
    if seccomp.native_arch() == "SCMP_ARCH_X86_64" then
      assert.are.same({ "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32" }, p.architectures)
    end
    assert.is_true(allowed(p, "read"))
    assert.is_true(allowed(p, "chroot"))  -- CAP_SYS_CHROOT is in the set
    assert.is_false(allowed(p, "mount"))
    assert.is_false(allowed(p, "init_module"))
    assert.is_false(allowed(p, "keyctl"))
    assert.are.same({ names = { "clone3" }, action = "SCMP_ACT_ERRNO", errnoRet = 38 },
      rule(p, "clone3"))
    assert.are.same({ { index = 0, value = 0x7E020000, valueTwo = 0, op = "SCMP_CMP_MASKED_EQ" } },
      rule(p, "clone").args)
    local caps = { "CAP_SYS_ADMIN", "CAP_SYS_MODULE" }
    p = seccomp.resolve(seccomp.DEFAULT, caps)
    assert.is_true(allowed(p, "mount"))
    assert.is_true(allowed(p, "clone"))
    assert.is_true(allowed(p, "clone3"))
    assert.is_true(allowed(p, "init_module"))
    assert.is_false(allowed(p, "chroot"))
  end)

  it("compiles the default profile with libseccomp", function()
    local p = seccomp.resolve(seccomp.DEFAULT, spec.CAPABILITIES)
    assert.is_true(core.seccomp.compile(p) > 100)
    assert.has_error(function()
      core.seccomp.compile({ defaultAction = "SCMP_ACT_ALLOW",
        syscalls = { { names = { "read" }, action = "SCMP_ACT_ERRNO",
                       args = { { index = 0, value = 1, op = "SCMP_CMP_ALMOST" } } } } })
    end, "spawn: linux.seccomp.syscalls[1].args[1]: unknown op 'SCMP_CMP_ALMOST'")
    assert.has_error(function()
      core.seccomp.compile({ defaultAction = "SCMP_ACT_ALLOW", architectures = { "SCMP_ARCH_Z80" } })
    end, "spawn: linux.seccomp.architectures[1]: unknown architecture 'SCMP_ARCH_Z80'")
  end)

  it("checks a profile's fields and names the wrong one", function()
    assert.is_nil(seccomp.check(seccomp.DEFAULT))
    assert.are.equal("p.syscalls[1]: field 'action' is missing",
      seccomp.check({ defaultAction = "SCMP_ACT_ALLOW", syscalls = { { names = { "read" } } } }, "p"))
    assert.are.equal("p.syscalls[1]: give either name or names",
      seccomp.check({ defaultAction = "SCMP_ACT_ALLOW",
        syscalls = { { name = "read", names = { "read" }, action = "SCMP_ACT_ALLOW" } } }, "p"))
    assert.are.equal("p: give either architectures or archMap, not both",
      seccomp.check({ defaultAction = "SCMP_ACT_ALLOW", architectures = {},
        archMap = {} }, "p"))
  end)

  it("loads Docker's own default.json shape, nulls included", function()
    local text = json.encode(seccomp.DEFAULT):gsub('"subArchitectures":%[%]', '"subArchitectures":null')
    local path = file("default.json", text)
    local p = assert(seccomp.load(path))
    assert.are.same(seccomp.resolve(seccomp.DEFAULT, spec.CAPABILITIES),
      seccomp.resolve(p, spec.CAPABILITIES))
  end)
end)

describe("luactr.spec capabilities", function()
  it("makes Docker's set, less cap_drop, plus cap_add", function()
    assert.are.same(spec.CAPABILITIES, spec.capability_list({}))
    assert.are.same({ "CAP_KILL", "CAP_NET_ADMIN" },
      spec.capability_list({ cap_drop = { "all" }, cap_add = { "kill", "CAP_NET_ADMIN" } }))
    local list = spec.capability_list({ cap_drop = { "NET_RAW", "mknod" } })
    assert.are.equal(12, #list)
    for _, c in ipairs(list) do
      assert.is_true(c ~= "CAP_NET_RAW" and c ~= "CAP_MKNOD")
    end
  end)

  it("gives a non-root user a bounding set and nothing in effect", function()
    local caps = spec.capabilities(spec.CAPABILITIES, 1000)
    assert.are.same(spec.CAPABILITIES, caps.bounding)
    assert.are.same({}, caps.effective)
    assert.are.same({}, caps.permitted)
    assert.are.equal("[]", json.encode(caps.ambient))
  end)
end)
