-- What a container must never reach of the host's: the runtime's own
-- binary (CVE-2019-5736), the host's root through a process that joins
-- it, the host's folders through fds the caller holds (CVE-2024-21626),
-- the caller's terminal's input. Each test plays the attack; each would
-- succeed against a runtime without the protection (and did against
-- luactr before it).
local support = require "support"

local q = support.q

-- The interpreter that runs luactr (bin/luactr's first line).
local function interpreter()
  local f = assert(io.open(support.LUACTR))
  local line = f:read("l")
  f:close()
  return assert(line:match("^#!(%S+)"))
end

-- The shared libraries `program` needs (ld.so included), by ldd.
local function libraries(program)
  local list = {}
  for path in io.popen("ldd " .. q(program)):read("a"):gmatch("(/%S+)") do
    list[#list + 1] = path
  end
  return list
end

local lua_root
-- A copy of the busybox fixture in which the host's interpreter could
-- run: its libraries are there (so a runtime that exposes its binary
-- shows it), and /evil, a Lua script whose first line is
-- "#!/proc/self/exe", says so if it ever runs.
local function interpreter_rootfs()
  if not lua_root then
    local dir = support.tmpdir() .. "/rootfs"
    support.must(("cp -a %s %s"):format(q(support.rootfs()), q(dir)))
    for _, lib in ipairs(libraries(interpreter())) do
      support.must(("mkdir -p %s && cp -L %s %s"):format(q(dir .. lib:match("^(.*)/")),
        q(lib), q(dir .. lib)))
    end
    support.write(dir .. "/evil", "#!/proc/self/exe\nprint('the host interpreter ran')\n")
    support.must("chmod 755 " .. q(dir .. "/evil"))
    lua_root = dir
  end
  return lua_root
end

-- A store with an image "lua-libs" of that root, and its teardown.
local function lua_libs_store()
  local root = support.store_root()
  finally(function()
    local _, ids = root.luactr("ps -a -q")
    for id in (ids or ""):gmatch("%x+") do root.luactr("rm -f " .. id) end
    root.teardown()
  end)
  local dir = support.tmpdir()
  support.write(dir .. "/image.lua", ("image 'lua-libs' { from = 'scratch', copy { host = %q, to = '/' } }\n")
    :format(interpreter_rootfs() .. "/"))
  local st, _, err = root.luactr("build " .. q(dir .. "/image.lua"))
  assert.are.equal(0, st, err)
  return root
end

-- The sha256 of a file.
local function digest(path)
  return require("luactr.core").digest.file(path)
end

describe("the runtime's binary #root", function()
  it("is not what a command whose first line is #!/proc/self/exe runs", function()
    local st, out, err = support.sh(("%s run --rootfs %s -- /evil"):format(support.LUACTR,
      q(interpreter_rootfs())))
    assert.is_falsy(out:find("the host interpreter ran", 1, true))
    assert.are_not.equal(0, st)
    assert.matches("only luactr runs this", err)
  end)

  it("is not what --init's PID 1 runs: that is a sealed copy of luactr's init", function()
    local st, out, err = support.sh(("%s run --rootfs %s --init -- sh -c %s"):format(support.LUACTR,
      q(interpreter_rootfs()), q("readlink /proc/1/exe; /evil; echo $?")))
    assert.are.equal(0, st, err)
    local exe, status = out:match("^(.-)\n(%d+)\n$")
    assert.matches("^/memfd:luactr%-stage", exe)
    assert.are_not.equal("0", status)
    assert.is_falsy(out:find("the host interpreter ran", 1, true))
    -- from the command's first instruction on: PID 1 became the stage
    -- before the command could run
    for _ = 1, 20 do
      st, out, err = support.sh(("%s run --rootfs %s --init -- readlink /proc/1/exe"):format(
        support.LUACTR, q(support.rootfs())))
      assert.are.equal(0, st, err)
      assert.matches("^/memfd:luactr%-stage", out)
    end
    -- the copy cannot be written, by root in the container either
    st, out = support.sh(("%s run --rootfs %s --init -- sh -c %s"):format(support.LUACTR,
      q(interpreter_rootfs()), q("echo x >> /proc/1/exe && echo written")))
    assert.are_not.equal(0, st)
    assert.is_falsy(out:find("written", 1, true))
  end)

  it("cannot be overwritten through /proc/PID/exe of a process exec'd into a container", function()
    local root = lua_libs_store()
    -- luactr runs from a private copy of its interpreter: that is the file
    -- the attack would overwrite
    local dir = support.tmpdir()
    local lua = dir .. "/" .. interpreter():match("[^/]+$")
    support.must(("cp %s %s"):format(q(interpreter()), q(lua)))
    local before = digest(lua)
    local st, _, err = root.luactr("run -d --name target lua-libs sleep 1000")
    assert.are.equal(0, st, err)
    -- /pwn, were it run by the interpreter: a process left behind holds
    -- the interpreter open and, once nothing runs it, writes to it
    local pwn = [[#!/proc/self/exe
local pid = io.open("/proc/self/stat"):read("n")
os.execute(("sh -c 'exec 3</proc/%d/exe; while [ -e /proc/%d/stat ]; do sleep 0.05; done; echo pwned >/proc/self/fd/3' >/dev/null 2>&1 &"):format(pid, pid))
print("the host interpreter ran")
]]
    st, _, err = root.luactr("exec -i target sh -c 'cat > /pwn && chmod 755 /pwn'", pwn)
    assert.are.equal(0, st, err)
    local out
    st, out = support.sh(("%s %s %s exec target /pwn"):format(root.env(), q(lua), q(support.LUACTR)))
    assert.is_falsy(out:find("the host interpreter ran", 1, true))
    assert.are_not.equal(0, st)
    support.eventually(function() return digest(lua) ~= before end, 2)
    assert.are.equal(before, digest(lua))
  end)
end)

describe("a process exec'd into a container #root", function()
  it("is out of the container's sight until it has the container's root", function()
    local root = lua_libs_store()
    -- a file only the host has, and a container that looks for it through
    -- the root of every process it can see (ptrace rights: /proc/PID/root)
    local secret = support.tmpdir() .. "/secret"
    support.write(secret, "host only\n")
    local scan = ("while :; do for d in /proc/[0-9]*; do cat $d/root%s >> /found 2>/dev/null; done; done")
      :format(secret)
    local st, _, err = root.luactr(("run -d --name scanner --cap-add SYS_PTRACE lua-libs sh -c %s")
      :format(q(scan)))
    assert.are.equal(0, st, err)
    -- the exec's setns is held up for a second by strace: long enough for
    -- the scanner to find a process that is in sight before it is inside
    st, _, err = support.sh(("%s strace -f -qq -o /dev/null -e trace=setns -e inject=setns:delay_enter=1000000 %s exec scanner true")
      :format(root.env(), support.LUACTR))
    assert.are.equal(0, st, err)
    local out
    st, out, err = root.luactr("exec scanner cat /found")
    assert.are.equal(0, st, err)
    assert.are.equal("", out)
  end)

  it("cannot start in a host folder through a fd the caller holds", function()
    local root = lua_libs_store()
    local host = support.tmpdir()
    support.write(host .. "/host-marker", "")
    local st, _, err = root.luactr("run -d --name c lua-libs sleep 1000")
    assert.are.equal(0, st, err)
    st, _, err = root.luactr("exec c ln -s /proc/self/fd/7 /wd")
    assert.are.equal(0, st, err)
    local out
    st, out, err = support.sh(("exec 7<%s; %s %s exec -w /wd c ls"):format(q(host), root.env(), support.LUACTR))
    assert.is_falsy(out:find("host-marker", 1, true))
    assert.are.equal(125, st)
    assert.matches("chdir /wd", err)
  end)
end)

describe("a container run #root", function()
  it("cannot start in a host folder through a fd the caller holds", function()
    local rootfs = support.tmpdir() .. "/rootfs"
    support.must(("cp -a %s %s && ln -s /proc/self/fd/7 %s/wd"):format(q(support.rootfs()),
      q(rootfs), q(rootfs)))
    local host = support.tmpdir()
    support.write(host .. "/host-marker", "")
    local st, out, err = support.sh(("exec 7<%s; %s run --rootfs %s -w /wd -- ls"):format(q(host),
      support.LUACTR, q(rootfs)))
    assert.is_falsy(out:find("host-marker", 1, true))
    assert.are.equal(125, st)
    assert.matches("/wd", err)
  end)

  it("cannot push input into the caller's terminal without -t", function()
    local function typed(options)
      -- script(1) gives the run a terminal of its own, as a user's shell has
      local _, out = support.sh(("script -qec %s /dev/null"):format(q(("%s run --rootfs %s %s -- /bin/probe tiocsti")
        :format(support.LUACTR, q(support.probe_rootfs()), options))))
      return out:match("tiocsti: [^\r\n]*")
    end
    assert.are.equal("tiocsti: Operation not permitted", typed(""))
    -- the control: CAP_SYS_ADMIN may push into any terminal
    assert.are.equal("tiocsti: ok", typed("--privileged"))
  end)

  it("cannot set up an io_uring, as Docker's profile refuses it", function()
    local function probe(options)
      local _, out = support.sh(("%s run --rootfs %s %s -- /bin/probe io_uring"):format(support.LUACTR,
        q(support.probe_rootfs()), options))
      return out
    end
    assert.are.equal("io_uring: Operation not permitted\n", probe(""))
    assert.are.equal("io_uring: ok\n", probe("--security-opt seccomp=unconfined"))
  end)
end)
