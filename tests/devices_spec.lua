-- Devices: the nodes a container gets in its /dev and the rules of its
-- devices cgroup (Docker's default: deny all but a few), --device and
-- --privileged. The v1 rules are tested for real in containers; the v2
-- device program is checked by running it in a small interpreter, and
-- then loaded into the kernel and attached to a cgroup2 folder made for
-- the test (#root).
local support = require "support"
local core = require "luactr.core"
local devices = require "luactr.spec.devices"
local cgroup = require "luactr.runtime.cgroup"

local q = support.q

-- Catches a luactr error, returns its message.
local function raised(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return type(e) == "table" and e.message or tostring(e)
end

describe("luactr.spec.devices", function()
  it("reads Docker's --device HOST[:CONTAINER][:PERMISSIONS]", function()
    assert.are.same({ host = "/dev/sdb", path = "/dev/sdb", access = "rwm" }, devices.parse("/dev/sdb"))
    assert.are.same({ host = "/dev/sdb", path = "/dev/xvdc", access = "rwm" }, devices.parse("/dev/sdb:/dev/xvdc"))
    assert.are.same({ host = "/dev/sdb", path = "/dev/sdb", access = "r" }, devices.parse("/dev/sdb:r"))
    assert.are.same({ host = "/dev/sdb", path = "/dev/xvdc", access = "rw" }, devices.parse("/dev/sdb:/dev/xvdc:rw"))
  end)

  it("refuses a malformed one, naming it", function()
    assert.are.equal("run: device[2]: 'sdb': sdb is not an absolute path to a device",
      raised(devices.parse, "sdb", "run: device[2]"))
    assert.matches("'/dev/a:/dev/b:rwx': invalid permissions 'rwx'", raised(devices.parse, "/dev/a:/dev/b:rwx"))
    assert.matches("'/dev/a:/dev/b:rr': invalid permissions 'rr'", raised(devices.parse, "/dev/a:/dev/b:rr"))
    assert.matches("expected HOST%[:CONTAINER%]%[:PERMISSIONS%]", raised(devices.parse, "/a:/b:r:w"))
    assert.matches("expected HOST", raised(devices.parse, ":/dev/b"))
    assert.matches("/dev/%.%./etc is not an absolute path", raised(devices.parse, "/dev/null:/dev/../etc"))
  end)

  it("has Docker's default rules, as cgroup v1 lines", function()
    local lines = {}
    for _, l in ipairs(devices.v1_lines(devices.DEFAULT_RULES)) do
      lines[#lines + 1] = l.file .. " " .. l.value
    end
    assert.are.same({
      "devices.deny a",
      "devices.allow c *:* m", "devices.allow b *:* m",
      "devices.allow c 1:3 rwm", "devices.allow c 1:8 rwm", "devices.allow c 1:7 rwm",
      "devices.allow c 5:0 rwm", "devices.allow c 1:5 rwm", "devices.allow c 1:9 rwm",
      "devices.allow c 5:1 rwm", "devices.allow c 136:* rwm", "devices.allow c 5:2 rwm",
      "devices.allow c 10:200 rwm",
    }, lines)
  end)

  it("makes the node of a --device from the host's, and a rule for it", function()
    local st = assert(core.fs.stat("/dev/null"))
    local nodes, rules = devices.prepare({ devices = { "/dev/null:/dev/mynull:rw" } })
    assert.are.same({ { path = "/dev/mynull", type = "c", major = 1, minor = 3,
                        fileMode = st.mode, uid = st.uid, gid = st.gid } }, nodes)
    assert.are.same({ allow = true, type = "c", major = 1, minor = 3, access = "rw" }, rules[#rules])
    assert.are.equal(#devices.DEFAULT_RULES + 1, #rules)
    assert.is_false(devices.allows_all(rules))
    assert.matches("run: device%[1%]: /etc/passwd is not a device node",
      raised(devices.prepare, { devices = { "/etc/passwd" } }))
    assert.matches("run: device%[1%]: stat /dev/no%-such: No such file or directory",
      raised(devices.prepare, { devices = { "/dev/no-such" } }))
  end)

  it("allows every device when privileged, with the host's nodes", function()
    local nodes, rules = devices.prepare({ privileged = true })
    assert.is_true(devices.allows_all(rules))
    local paths = {}
    for _, n in ipairs(nodes) do paths[n.path] = n end
    assert.are.same({ path = "/dev/loop0", type = "b", major = 7, minor = 0 },
      { path = paths["/dev/loop0"].path, type = paths["/dev/loop0"].type,
        major = paths["/dev/loop0"].major, minor = paths["/dev/loop0"].minor })
    assert.is_nil(paths["/dev/ptmx"])  -- the container's own, of its devpts
    assert.is_false(devices.allows_all({ { allow = true }, { allow = false, type = "c", major = 1, minor = 3 } }))
  end)
end)

describe("a recipe's devices", function()
  local recipe = require "luactr.build.recipe"
  local INLINE = support.TOP .. "/tests/recipes/inline.lua"
  local function container(field)
    return recipe.load_string('deploy "d" {\n  container "web" {\n    image = "busybox",\n'
      .. field .. "\n  },\n}", INLINE).deployments[1].containers[1]
  end

  it("are the --device strings, in a devices key", function()
    assert.are.same({ "/dev/fuse", "/dev/sdb:/dev/xvdc:r" },
      container('    devices = { "/dev/fuse", "/dev/sdb:/dev/xvdc:r" },').devices)
  end)

  it("are checked where the recipe gives them", function()
    local ok, e = pcall(container, '    devices = { "/dev/fuse:rwx:r" },')
    assert.is_false(ok)
    assert.are.equal(INLINE .. ":4: container 'web': devices[1]: expected a device "
      .. "'HOST[:CONTAINER][:rwm]', got '/dev/fuse:rwx:r'", e.message)
  end)
end)

-- {====== the v2 device program

-- Runs a device program (a string of struct bpf_insn) on one request, as
-- the kernel would: returns 1 (allow) or 0 (deny). Knows the instructions
-- a device program is made of, and fails on any other.
local function run_program(prog, type, access, major, minor)
  local ctx = { [0] = access << 16 | type, [4] = major, [8] = minor }
  local reg = { [1] = "ctx" }
  local insns = {}
  for i = 1, #prog, 8 do
    local code, regs, off, imm = string.unpack("<BBi2i4", prog, i)
    insns[#insns + 1] = { code = code, dst = regs & 0xf, src = regs >> 4, off = off, imm = imm }
  end
  local pc, steps = 1, 0
  while true do
    steps = steps + 1
    assert(steps < 10000, "no exit")
    local n = assert(insns[pc], "ran off the end")
    local c = n.code
    if c == 0x61 then            -- ldx w
      assert(reg[n.src] == "ctx")
      reg[n.dst] = ctx[n.off]
    elseif c == 0x54 then        -- and32 imm
      reg[n.dst] = reg[n.dst] & n.imm & 0xffffffff
    elseif c == 0x74 then        -- rsh32 imm
      reg[n.dst] = (reg[n.dst] & 0xffffffff) >> n.imm
    elseif c == 0xbc then        -- mov32 reg
      reg[n.dst] = reg[n.src] & 0xffffffff
    elseif c == 0xb7 then        -- mov64 imm
      reg[n.dst] = n.imm
    elseif c == 0x55 then        -- jne imm
      if reg[n.dst] ~= n.imm then pc = pc + n.off end
    elseif c == 0x5d then        -- jne reg
      if reg[n.dst] ~= reg[n.src] then pc = pc + n.off end
    elseif c == 0x95 then        -- exit
      return reg[0]
    else
      error(("unknown instruction 0x%02x"):format(c))
    end
    pc = pc + 1
  end
end

describe("core.devices.program", function()
  local CHAR, BLOCK = core.devices.DEV_CHAR, core.devices.DEV_BLOCK
  local M, R, W = 1, 2, 4  -- BPF_DEVCG_ACC_*

  it("denies all but Docker's default devices, and allows mknod of any node", function()
    local p = core.devices.program(devices.DEFAULT_RULES)
    for _, d in ipairs({ { 1, 3 }, { 1, 5 }, { 1, 7 }, { 1, 8 }, { 1, 9 }, { 5, 0 }, { 5, 1 },
                         { 5, 2 }, { 136, 0 }, { 136, 7 }, { 10, 200 } }) do
      assert.are.equal(1, run_program(p, CHAR, R | W, d[1], d[2]), ("c %d:%d rw"):format(d[1], d[2]))
      assert.are.equal(1, run_program(p, CHAR, M, d[1], d[2]))
    end
    assert.are.equal(0, run_program(p, BLOCK, R, 7, 0))        -- a loop device
    assert.are.equal(0, run_program(p, BLOCK, W, 8, 0))        -- a disk
    assert.are.equal(0, run_program(p, CHAR, R, 1, 1))         -- /dev/mem
    assert.are.equal(0, run_program(p, CHAR, R | M, 1, 1))     -- mknod alone only
    assert.are.equal(0, run_program(p, CHAR, R, 137, 0))
    assert.are.equal(1, run_program(p, BLOCK, M, 8, 0))
    assert.are.equal(1, run_program(p, CHAR, M, 1, 1))
  end)

  it("lets a later rule override an earlier one, as the v1 files do", function()
    local rules = { { allow = false, access = "rwm" },
                    { allow = true, type = "b", major = 7, access = "r" },
                    { allow = false, type = "b", major = 7, minor = 3, access = "rwm" } }
    local p = core.devices.program(rules)
    assert.are.equal(1, run_program(p, BLOCK, R, 7, 0))
    assert.are.equal(0, run_program(p, BLOCK, R | W, 7, 0))    -- write was not given
    assert.are.equal(0, run_program(p, BLOCK, R, 7, 3))        -- the last rule wins
    assert.are.equal(0, run_program(p, CHAR, R, 7, 0))         -- the type counts
  end)

  it("ends at a rule that matches every request", function()
    local p = core.devices.program(devices.ALLOW_ALL)
    assert.are.equal(8 * 8, #p)  -- the 6 loads, then allow and exit
    assert.are.equal(1, run_program(p, BLOCK, R | W | M, 8, 0))
    p = core.devices.program({ { allow = true }, { allow = false, type = "c", major = 1, minor = 1 } })
    assert.are.equal(0, run_program(p, CHAR, R, 1, 1))
    assert.are.equal(1, run_program(p, CHAR, R, 1, 3))
  end)

  it("refuses a malformed rule", function()
    assert.has_error(function() core.devices.program({ { allow = true, type = "x" } }) end,
      "devices: rules[1].type: expected a, b or c, got 'x'")
    assert.has_error(function() core.devices.program({ { allow = true, access = "rwx" } }) end,
      "devices: rules[1].access: expected letters of rwm, got 'rwx'")
    assert.has_error(function() core.devices.program({ { allow = true, mode = "r" } }) end)
  end)
end)

describe("core.spawn's linux.devices", function()
  local function spawn(d)
    local ok, err = pcall(core.spawn, { process = { args = { "/bin/true" }, cwd = "/" },
      root = { path = "/nonexistent" }, linux = { namespaces = { { type = "mount" } }, devices = d } })
    assert.is_false(ok)
    return err
  end

  it("refuses a malformed entry before anything starts", function()
    assert.are.equal("spawn: linux.devices[1].path: expected an absolute file path, got 'dev/x'",
      spawn({ { path = "dev/x", type = "c", major = 1, minor = 3 } }))
    assert.are.equal("spawn: linux.devices[1].path: expected an absolute file path, got '/dev/'",
      spawn({ { path = "/dev/", type = "c", major = 1, minor = 3 } }))
    assert.are.equal("spawn: linux.devices[2].type: expected b, c, u or p, got 'q'",
      spawn({ { path = "/dev/x", type = "p" }, { path = "/dev/y", type = "q", major = 1, minor = 3 } }))
    assert.are.equal("spawn: linux.devices[1]: major and minor are missing",
      spawn({ { path = "/dev/x", type = "c" } }))
    assert.are.equal("spawn: linux.devices[1].fileMode: expected an integer from 0 to 4095",
      spawn({ { path = "/dev/x", type = "c", major = 1, minor = 3, fileMode = 65536 } }))
    assert.are.equal("spawn: linux.devices[]: unknown field 'mode'",
      spawn({ { path = "/dev/x", type = "c", major = 1, minor = 3, mode = 1 } }))
  end)
end)

-- A cgroup2 folder of this test's own beneath luactr's own unified
-- cgroup, named as luactr names its folders, or nil on a host without
-- cgroup2. Removed (with anything left in it) by `drop`.
local function own_v2_folder()
  local layout = assert(cgroup.detect())
  if not layout.unified then return nil end
  local dir = layout.unified.dir .. "/" .. cgroup.name(("%012x"):format(core.sys.getpid()))
  assert(core.cgroup.create(dir))
  return dir, function()
    if core.fs.stat(dir) then
      core.cgroup.kill(dir)
      assert(core.cgroup.remove(dir, 2))
    end
  end
end

describe("a cgroup v2 device program #root", function()
  it("is loaded and, attached to a cgroup2 folder, denies what the rules deny", function()
    local dir, drop = own_v2_folder()
    if not dir then return pending("no cgroup2 hierarchy on this host") end
    finally(drop)
    local prog <close> = assert(core.devices.load(core.devices.program(devices.DEFAULT_RULES)))
    assert(prog:attach(dir))
    local tmp = support.tmpdir()
    local script = ([[
echo $$ > %s/cgroup.procs || exit 9
echo x > /dev/null && echo null
head -c 4 /dev/zero | wc -c
mknod %s/blk b 7 0 && echo made
head -c 1 %s/blk || echo denied-made
head -c 1 /dev/loop0 || echo denied-loop0
]]):format(dir, tmp, tmp)
    local st, out, err = support.sh("sh -c " .. q(script))
    assert.are.equal(0, st, err)
    assert.are.equal("null\n4\nmade\ndenied-made\ndenied-loop0\n", out)
    assert.matches("blk.*Operation not permitted", err)
    -- and the same process without the program is let through: it was the program
    assert(prog:detach(dir))
    st, out = support.sh(("sh -c %s"):format(q(("echo $$ > %s/cgroup.procs; head -c 1 /dev/loop0 >/dev/null && echo opened"):format(dir))))
    assert.are.equal(0, st)
    assert.are.equal("opened\n", out)
  end)

  it("says why the kernel refuses a program", function()
    -- a lone exit: R0 was never set
    local prog, err = core.devices.load(string.pack("<BBi2i4", 0x95, 0, 0, 0))
    assert.is_nil(prog)
    assert.matches("^bpf load: Permission denied: R0 !read_ok", err)
  end)
end)

-- }======

-- {====== containers

local function run(options, script)
  return support.run_sh(options, script)
end

describe("a default container's devices #root", function()
  it("can make a block device node but not open it", function()
    local st, out, err = run("", "mknod /dev/blk b 7 0 && echo made; head -c 1 /dev/blk; echo $?")
    assert.are.equal(0, st)
    assert.are.equal("made\n1\n", out)
    assert.matches("head: /dev/blk: Operation not permitted", err)
    -- nor a character device that is not one of the default ones (/dev/mem)
    st, out, err = run("", "mknod /dev/mem c 1 1 && echo made; head -c 1 /dev/mem; echo $?")
    assert.are.equal("made\n1\n", out)
    assert.matches("head: /dev/mem: Operation not permitted", err)
  end)

  it("uses the default devices", function()
    local st, out, err = run("", [[
echo x > /dev/null && echo null
head -c 3 /dev/zero | wc -c
head -c 3 /dev/urandom | wc -c
head -c 3 /dev/random | wc -c
echo x > /dev/full || echo full
ls -l /dev | grep '^c' | awk '{print $NF}' | sort | tr '\n' ' '
]])
    assert.are.equal(0, st, err)
    assert.are.equal("null\n3\n3\n3\nfull\nfull null random tty urandom zero ", out)
    assert.matches("No space left on device", err)
  end)

  it("gets a --device under its own name, and can use it", function()
    local st, out, err = run("--device /dev/null:/dev/mynull",
      "stat -c '%F %t:%T' /dev/mynull; echo hello > /dev/mynull && echo wrote; wc -c < /dev/mynull")
    assert.are.equal(0, st, err)
    assert.are.equal("character special file 1:3\nwrote\n0\n", out)
  end)

  it("gives a --device node the host node's mode and owner", function()
    local tmp = support.tmpdir()
    support.must(("mknod %s/n c 1 3 && chown 1234:5678 %s/n && chmod 0640 %s/n"):format(tmp, tmp, tmp))
    local st, out, err = run(("--device %s/n:/dev/deep/er/n"):format(tmp), "stat -c '%u %g %a %t:%T' /dev/deep/er/n")
    assert.are.equal(0, st, err)
    assert.are.equal("1234 5678 640 1:3\n", out)
  end)

  it("reads and writes a --device loop device, and only reads it when given :r", function()
    local tmp = support.tmpdir()
    support.must(("printf 'on the loop device' > %s/img && truncate -s 1M %s/img"):format(tmp, tmp))
    local p = assert(io.popen(("losetup -f --show %s/img"):format(tmp)))
    local loop = p:read("l")
    p:close()
    assert.matches("^/dev/loop%d+$", loop)
    finally(function() os.execute("losetup -d " .. loop) end)
    local st, out, err = run("--device " .. loop,
      ("head -c 18 %s; echo; printf written | dd of=%s conv=notrunc 2>/dev/null && echo ok"):format(loop, loop))
    assert.are.equal(0, st, err)
    assert.are.equal("on the loop device\nok\n", out)
    st, out, err = run(("--device %s:/dev/disk:r"):format(loop),
      "head -c 18 /dev/disk; echo; printf x > /dev/disk || echo refused")
    assert.are.equal(0, st, err)
    assert.are.equal("writtenloop device\nrefused\n", out)
    assert.matches("Operation not permitted", err)
    -- without --device the same node made by hand stays shut
    local major, minor = devices.numbers(core.fs.stat(loop).rdev)
    st, out = run("", ("mknod /dev/l b %d %d; head -c 1 /dev/l || echo refused"):format(major, minor))
    assert.are.equal("refused\n", out)
  end)

  it("refuses a bad --device with status 125 and a clear message", function()
    local cases = {
      { "/dev/null:/dev/x:rwq", "luactr: run: device[1]: '/dev/null:/dev/x:rwq': invalid permissions 'rwq' (some of r, w and m)\n" },
      { "null", "luactr: run: device[1]: 'null': null is not an absolute path to a device\n" },
      { "/dev/no-such", "luactr: run: device[1]: stat /dev/no-such: No such file or directory\n" },
      { "/etc/hostname", "luactr: run: device[1]: /etc/hostname is not a device node\n" },
    }
    for _, c in ipairs(cases) do
      local st, out, err = support.run("--device " .. q(c[1]), "true")
      assert.are.equal(125, st)
      assert.are.equal("", out)
      assert.are.equal(c[2], err)
    end
  end)

  it("gets every device when --privileged, as Docker's", function()
    local st, out, err = run("--privileged", "head -c 1 /dev/loop0 >/dev/null && echo loop0; "
      .. "mknod /dev/l0 b 7 0 && head -c 1 /dev/l0 >/dev/null && echo made")
    assert.are.equal(0, st, err)
    assert.are.equal("loop0\nmade\n", out)
  end)
end)

-- }======
