-- luactr exec: a command in a running container, through the command
-- line and the Lua API. One container runs for the whole file, under a
-- `luactr run` that the setup starts in the background; the teardown ends
-- it (SIGKILL to its PID 1, which the setup saw start), waits for its
-- runner to record the end and tears the store down.
local support = require "support"
local json = require "luactr.json"
local core = require "luactr.core"

local q = support.q

local NAME = "exec-box"

local alive, wait_until = support.alive, support.wait_until

local function readlink(path)
  local p = io.popen("readlink " .. q(path) .. " 2>/dev/null")
  local s = p:read("l")
  p:close()
  return s
end

-- The lines of /proc/PID/status that start with one of `keys`.
local function status_lines(pid, keys)
  local t = {}
  for line in io.lines("/proc/" .. pid .. "/status") do
    for _, k in ipairs(keys) do
      if line:sub(1, #k + 1) == k .. ":" then t[#t + 1] = line end
    end
  end
  return table.concat(t, "\n") .. "\n"
end

describe("exec #root", function()
  local root     -- the private store
  local runner   -- the pid of the background `luactr run`
  local pid1     -- the container's PID 1, as the host sees it
  local pid1_start
  local state    -- its state.json, once it runs

  -- `luactr exec ARGS` (shell words): status, stdout, stderr
  local function exec(args, stdin)
    return root.luactr("exec " .. args, stdin)
  end

  local function state_of(name)
    local dir = root.path .. "/store/containers"
    for _, id in ipairs(support.listing("ls " .. q(dir))) do
      local text = support.readfile(dir .. "/" .. id .. "/state.json")
      local st = text and json.decode(text)
      if st and st.name == name then return st end
    end
  end

  setup(function()
    root = support.store_root()
    local st, _, err = root.luactr("build recipes/hello.lua busybox")
    assert.are.equal(0, st, err)
    -- the container leaves a file and a folder, then becomes `sleep`
    local out
    st, out, err = support.sh(("%s %s run --name %s --hostname exec-box -e FROM_RUN=1 -e KEEP=run busybox "
      .. "sh -c 'echo made-here > /made; mkdir /work; exec sleep 1000' >/dev/null 2>&1 & echo $!")
      :format(root.env(), support.LUACTR, NAME))
    assert.are.equal(0, st, err)
    runner = assert(tonumber(out:match("%d+")))
    assert.is_true(wait_until(function()
      state = state_of(NAME)
      if state and state.status == "running" and state.pid then
        pid1, pid1_start = state.pid, state.pid_start  -- for the teardown, whatever fails next
        local cmd = support.readfile("/proc/" .. state.pid .. "/cmdline")
        return cmd == "sleep\0" .. "1000\0"
      end
      return not alive(runner)
    end), "the container did not start")
    assert.is_true(alive(runner), "the container's runner ended")
    local _, ps = root.luactr("ps")
    assert.is_truthy(ps:find(NAME, 1, true), ps)
  end)

  teardown(function()
    -- its PID 1 is ours (the setup saw it start): SIGKILL ends the pid
    -- namespace and every exec'd process with it; the runner records it
    if pid1 and require("luactr.runtime.state").start_time(pid1) == pid1_start then
      core.sys.kill(pid1, 9)
    end
    if runner and not wait_until(function() return not alive(runner) end, 10) then
      core.sys.kill(runner, 9)
    end
    if root then
      local _, ids = root.luactr("ps -aq")
      for _, id in ipairs(support.lines(ids)) do root.luactr("rm -f " .. id) end
      root.teardown()
    end
  end)

  describe("joins the running container", function()
    it("runs in its pid namespace, where its command is PID 1", function()
      local st, out, err = exec(NAME .. [[ sh -c 'echo $$; tr "\0" " " < /proc/1/cmdline; echo; ps -o comm; true']])
      assert.are.equal(0, st, err)
      local lines = support.lines(out)
      assert.is_true(tonumber(lines[1]) < 10, "its own pid: " .. lines[1])
      assert.are.equal("sleep 1000 ", lines[2])
      local ps = { table.unpack(lines, 3) }
      table.sort(ps)
      -- the container's own processes, and no other
      assert.are.same({ "COMMAND", "ps", "sh", "sleep" }, ps)
    end)

    it("is in every namespace of the container's PID 1", function()
      local kinds = { "pid", "mnt", "uts", "ipc", "net", "cgroup" }
      local words = {}
      for _, k in ipairs(kinds) do words[#words + 1] = "readlink /proc/self/ns/" .. k end
      local st, out, err = exec(NAME .. " sh -c " .. q(table.concat(words, "; ")))
      assert.are.equal(0, st, err)
      local want = {}
      for i, k in ipairs(kinds) do
        want[i] = readlink("/proc/" .. pid1 .. "/ns/" .. k)
        -- and not luactr's own: the container has its own of each
        assert.are_not.equal(readlink("/proc/self/ns/" .. k), want[i])
      end
      assert.are.same(want, support.lines(out))
    end)

    it("has the container's host name", function()
      local st, out = exec(NAME .. " hostname")
      assert.are.equal(0, st)
      assert.are.equal("exec-box\n", out)
    end)

    it("sees the container's files: its root and mounts", function()
      local st, out = exec(NAME .. " sh -c 'cat /made; grep -c . /proc/mounts >/dev/null && ls /dev/pts/ptmx'")
      assert.are.equal(0, st)
      assert.are.equal("made-here\n/dev/pts/ptmx\n", out)
      -- and what it makes, the container sees
      st = exec(NAME .. " sh -c 'echo from-exec > /work/note'")
      assert.are.equal(0, st)
      local rootfs = json.decode(support.readfile(root.path .. "/store/containers/" .. state.id
        .. "/config.json")).root.path
      assert.are.equal("from-exec\n", support.readfile(rootfs .. "/work/note"))
    end)

    it("is in the container's cgroup, in every hierarchy", function()
      local st, out = exec(NAME .. " sh -c 'cat /proc/self/cgroup; echo --; cat /proc/1/cgroup'")
      assert.are.equal(0, st)
      local mine, its = out:match("^(.-)%-%-\n(.*)$")
      assert.are.equal(its, mine)
      -- as the host sees it: the very folders of the container's state
      local dir = support.tmpdir()
      st = support.sh(("%s %s exec %s sleep 2.5 >/dev/null 2>&1 & echo $! > %s/pid")
        :format(root.env(), support.LUACTR, NAME, dir))
      assert.are.equal(0, st)
      local cli = tonumber(support.readfile(dir .. "/pid"))
      local ns = readlink("/proc/" .. pid1 .. "/ns/pid")
      local found
      assert.is_true(wait_until(function()
        for _, name in ipairs(core.fs.readdir("/proc") or {}) do
          if name:match("^%d+$") and support.readfile("/proc/" .. name .. "/cmdline") == "sleep\0" .. "2.5\0"
             and readlink("/proc/" .. name .. "/ns/pid") == ns then
            found = name
            return true
          end
        end
      end), "the exec'd sleep did not show")
      mine, its = support.readfile("/proc/" .. found .. "/cgroup"), support.readfile("/proc/" .. pid1 .. "/cgroup")
      assert.is_true(wait_until(function() return not alive(cli) end))
      assert.are.equal(its, mine)
      for _, dir in pairs(state.cgroups) do
        assert.matches("luactr%-" .. state.id:sub(1, 12), dir)
        assert.is_truthy(its:find(dir:match("(/[^/]*)$"), 1, true), dir)
      end
    end)

    it("has the container's capabilities, seccomp filter and no_new_privs", function()
      local keys = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                     "Seccomp_filters" }
      local st, out = exec(NAME .. " grep -E '^(" .. table.concat(keys, "|") .. "):' /proc/self/status")
      assert.are.equal(0, st)
      assert.are.equal(status_lines(pid1, keys), out)
      assert.matches("NoNewPrivs:%s+1\n", out)
      assert.matches("Seccomp:%s+2\n", out)
      assert.matches("CapEff:%s+00000000a80425fb\n", out)  -- Docker's default set
    end)

    it("passes it no fd but 0, 1 and 2", function()
      local st, out = support.sh(("%s %s exec %s sh -c 'ls /proc/$$/fd; true' 5</etc/hostname 7>/dev/null")
        :format(root.env(), support.LUACTR, NAME))
      assert.are.equal(0, st)
      assert.are.equal("0\n1\n2\n", out)
    end)
  end)

  describe("the process", function()
    it("gets the container's environment (image, then run -e), then exec -e on top", function()
      local st, out = exec("-e KEEP=exec -e NEW=x " .. NAME .. " env")
      assert.are.equal(0, st)
      local env = {}
      for _, line in ipairs(support.lines(out)) do
        local k, v = line:match("^([^=]*)=(.*)$")
        env[k] = v
      end
      assert.are.equal("/bin", env.PATH)          -- the image's
      assert.are.equal("1", env.FROM_RUN)         -- run -e
      assert.are.equal("exec", env.KEEP)          -- exec -e over run -e
      assert.are.equal("x", env.NEW)
      assert.are.equal("exec-box", env.HOSTNAME)
      assert.are.equal("/root", env.HOME)
    end)

    it("runs as the container's user in its working directory, or as -u in -w", function()
      local st, out = exec(NAME .. " sh -c 'id -u; id -g; pwd'")
      assert.are.equal(0, st)
      assert.are.equal("0\n0\n/\n", out)
      st, out = exec("-u 1000:1001 -w /work " .. NAME
        .. " sh -c 'id -u; id -g; pwd; grep -E \"^Cap(Eff|Bnd):\" /proc/self/status'")
      assert.are.equal(0, st)
      assert.are.same({ "1000", "1001", "/work", "CapEff:\t0000000000000000",
                        "CapBnd:\t00000000a80425fb" }, support.lines(out))
    end)

    it("fails on a working directory that is not there, and makes none", function()
      local st, out, err = exec("-w /nowhere " .. NAME .. " pwd")
      assert.are.equal(125, st)
      assert.are.equal("", out)
      assert.matches("^luactr: exec: chdir /nowhere: No such file or directory\n$", err)
      st = exec(NAME .. " test -e /nowhere")
      assert.are.equal(1, st)
    end)

    it("gets every capability with --privileged, the seccomp filter stays", function()
      local st, out = exec("--privileged " .. NAME .. " grep -E '^(CapEff|Seccomp):' /proc/self/status")
      assert.are.equal(0, st)
      local eff = tonumber(out:match("CapEff:%s+(%x+)"), 16)
      assert.are_not.equal(0, eff & (1 << 21))  -- CAP_SYS_ADMIN
      assert.matches("Seccomp:%s+2\n", out)
    end)
  end)

  describe("exit status", function()
    it("is the command's", function()
      assert.are.equal(0, (exec(NAME .. " true")))
      assert.are.equal(3, (exec(NAME .. " sh -c 'exit 3'")))
      assert.are.equal(137, (exec(NAME .. " sh -c 'kill -9 $$'")))
    end)

    it("is 126 for a command that cannot be run, 127 for one not found", function()
      local st, _, err = exec(NAME .. " /made")
      assert.are.equal(126, st)
      assert.are.equal("luactr: exec: exec /made: Permission denied\n", err)
      st, _, err = exec(NAME .. " no-such-command")
      assert.are.equal(127, st)
      assert.are.equal("luactr: exec: exec no-such-command: No such file or directory\n", err)
    end)

    it("is 125 with a clear message for a container that is not running, or none", function()
      local st, _, err = root.luactr("run --name exec-stopped busybox true")
      assert.are.equal(0, st, err)
      local out
      st, out, err = exec("exec-stopped true")
      assert.are.equal(125, st)
      assert.are.equal("", out)
      assert.are.equal("luactr: exec: container exec-stopped is not running\n", err)
      -- a paused one: its process would freeze in its cgroup
      st, _, err = root.luactr("pause " .. NAME)
      assert.are.equal(0, st, err)
      finally(function() root.luactr("unpause " .. NAME) end)
      st, out, err = exec(NAME .. " true")
      assert.are.equal(125, st)
      assert.are.equal("luactr: exec: container exec-box is paused: unpause it first\n", err)
      st, _, err = root.luactr("unpause " .. NAME)
      assert.are.equal(0, st, err)
      st, _, err = exec("no-such-box true")
      assert.are.equal(125, st)
      assert.are.equal("luactr: exec: no such container: no-such-box\n", err)
      st, _, err = exec(NAME)
      assert.are.equal(125, st)
      assert.are.equal("luactr: exec: no command given\n", err)
    end)
  end)

  describe("stdio", function()
    it("keeps stdin open with -i, and gives /dev/null without it", function()
      local st, out = exec("-i " .. NAME .. " cat", "line one\nline two\n")
      assert.are.equal(0, st)
      assert.are.equal("line one\nline two\n", out)
      st, out = exec(NAME .. " cat", "not read\n")
      assert.are.equal(0, st)
      assert.are.equal("", out)
    end)

    it("gives a terminal from the container's devpts with -t, of the caller's size", function()
      local cmd = ("stty cols 123 rows 45; %s %s exec -t %s sh -c 'tty; echo $TERM; stty size; ls -1 /dev/pts; exit 4'")
        :format(root.env(), support.LUACTR, NAME)
      local st, out = support.sh("script -qec " .. q(cmd) .. " /dev/null")
      assert.are.equal(4, st)
      local lines = support.lines(out:gsub("\r", ""))
      local n = lines[1]:match("^/dev/pts/(%d+)$")
      assert.is_truthy(n, lines[1])
      assert.are.equal("xterm", lines[2])
      assert.are.equal("45 123", lines[3])
      -- the container's own devpts: its pty is listed there
      local listed = {}
      for i = 4, #lines do listed[lines[i]] = true end
      assert.is_true(listed[n] and listed.ptmx)
      -- and no terminal without -t
      st, out = exec(NAME .. " tty")
      assert.are.equal(1, st)
      assert.are.equal("not a tty\n", out)
    end)

    it("relays input with -it", function()
      local st, out = support.sh(("(sleep 0.5; printf 'echo $((6*7))\\nexit 5\\n') | script -qec %s /dev/null")
        :format(q(root.env() .. " " .. support.LUACTR .. " exec -it " .. NAME .. " sh")))
      assert.are.equal(5, st)
      assert.matches("\n42\r?\n", out)
    end)
  end)

  describe("the Lua API", function()
    it("luactr.exec returns as luactr.run, and leaves luactr's own namespaces alone", function()
      local script = support.tmpdir() .. "/exec.lua"
      support.write(script, ([[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = %q .. "/?.so;" .. package.cpath
local luactr = require "luactr"
local function ns(p) local f = io.popen("readlink " .. p); local s = f:read("l"); f:close(); return s end
local pid = require("luactr.core").sys.getpid()
print(luactr.exec{ container = %q, cmd = { "sh", "-c", "test \"$A\" = 1 && exit 4" }, env = { A = "1" } })
print(luactr.exec{ container = %q, cmd = { "true" }, user = 1000, workdir = "/work" })
print(luactr.exec{ container = %q, cmd = { "sh", "-c", "kill -TERM $$" } })
print(ns("/proc/" .. pid .. "/ns/pid_for_children") == ns("/proc/" .. pid .. "/ns/pid"))
print(pcall(luactr.exec, { container = %q, cmd = { "true" }, bogus = 1 }))
print(pcall(luactr.exec, { container = %q, cmd = { "no-such" } }))
]]):format(support.BUILD, NAME, NAME, NAME, NAME, NAME))
      local st, out, err = support.sh(("LUACTR_ROOT=%s lua5.4 %s"):format(q(root.path), q(script)))
      assert.are.equal(0, st, err)
      assert.are.same({
        "nil\texit\t4",
        "true\texit\t0",
        "nil\tsignal\t15",
        "true",
        "false\texec: unknown field 'bogus'",
        "false\texec: exec no-such: No such file or directory",
      }, support.lines(out))
    end)
  end)
end)
