-- `luactr run --rootfs DIR`: the container a user gets, seen from inside
-- and from the host.
local support = require "support"
local spec = require "luactr.spec"

local run, run_sh, sh, q = support.run, support.run_sh, support.sh, support.q

local function host_ns(kind)
  local p = io.popen("readlink /proc/self/ns/" .. kind)
  local v = p:read("l")
  p:close()
  return v
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- The mount points of a mountinfo text, with their options.
local function mountpoints(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do
    local fields = {}
    for w in line:gmatch("%S+") do fields[#fields + 1] = w end
    local sep
    for i, w in ipairs(fields) do
      if w == "-" then sep = i break end
    end
    t[fields[5]] = { options = fields[6], fstype = fields[sep + 1] }
  end
  return t
end

local function has_option(options, opt)
  return ("," .. options .. ","):find("," .. opt .. ",", 1, true) ~= nil
end

describe("luactr run #root", function()
  describe("namespaces", function()
    it("gives the container its own pid, mount, uts, ipc, net and cgroup namespaces", function()
      local kinds = { "pid", "mnt", "uts", "ipc", "net", "cgroup" }
      local script = {}
      for _, k in ipairs(kinds) do script[#script + 1] = "readlink /proc/self/ns/" .. k end
      local st, out = run_sh("", table.concat(script, "; "))
      assert.are.equal(0, st)
      local inside = support.lines(out)
      assert.are.equal(#kinds, #inside)
      for i, k in ipairs(kinds) do
        assert.matches("^" .. k .. ":%[%d+%]$", inside[i])
        assert.are_not.equal(host_ns(k), inside[i])
      end
    end)

    it("makes the command PID 1", function()
      local st, out = run_sh("", "echo $$")
      assert.are.equal(0, st)
      assert.are.equal("1\n", out)
    end)

    it("has lo up and no other interface in its network namespace", function()
      local st, out = run_sh("", "ls /sys/class/net; cat /sys/class/net/lo/flags")
      assert.are.equal(0, st)
      -- 0x9 = IFF_UP | IFF_LOOPBACK
      assert.are.equal("lo\n0x9\n", out)
    end)

    it("keeps the host's network namespace with --network host", function()
      local st, out = run("--network host", "readlink /proc/self/ns/net")
      assert.are.equal(0, st)
      assert.are.equal(host_ns("net") .. "\n", out)
    end)
  end)

  describe("root filesystem", function()
    it("pivots into the root and leaves no host mount visible", function()
      local st, out = run("", "cat /proc/self/mountinfo")
      assert.are.equal(0, st)
      local allowed = { ["/"] = true, ["/proc"] = true, ["/dev"] = true,
        ["/dev/pts"] = true, ["/dev/shm"] = true, ["/dev/mqueue"] = true,
        ["/sys"] = true }
      for _, p in ipairs(spec.MASKED_PATHS) do allowed[p] = true end
      for _, p in ipairs(spec.READONLY_PATHS) do allowed[p] = true end
      local points = mountpoints(out)
      assert.is_truthy(points["/"])
      for point in pairs(points) do
        assert.is_true(allowed[point] or false, "unexpected mount " .. point)
      end
      -- the root is the fixture, entered by pivot_root: the process's root
      -- is the namespace's "/", not a chroot inside the host's tree
      st, out = run("", "readlink /proc/1/root")
      assert.are.equal("/\n", out)
    end)

    it("leaves the host's mounts and their propagation as they were", function()
      local before = support.mounts()
      -- mounting needs CAP_SYS_ADMIN, which a default container lacks
      local st = run_sh("--cap-add SYS_ADMIN", "mount -t tmpfs none /tmp && touch /tmp/x")
      assert.are.equal(0, st)
      assert.are.same(before, support.mounts())
    end)

    it("mounts the root read-only with --read-only", function()
      local st, _, err = run("--read-only", "touch /new")
      assert.are.equal(1, st)
      assert.matches("Read%-only file system", err)
      st = run("--read-only", "touch /dev/shm/ok")
      assert.are.equal(0, st)
      st = run("", "touch /new-" .. tostring(os.time()))
      assert.are.equal(0, st)
      os.execute("rm -f " .. support.rootfs() .. "/new-*")
    end)
  end)

  describe("/proc, /sys and /dev", function()
    it("has a fresh /proc that shows only the container's processes", function()
      local st, out = run("", "ls /proc")
      assert.are.equal(0, st)
      local pids = {}
      for _, name in ipairs(support.lines(out)) do
        if name:match("^%d+$") then pids[#pids + 1] = name end
      end
      assert.are.same({ "1" }, pids)
    end)

    it("mounts /sys read-only", function()
      local st, out = run("", "cat /proc/self/mountinfo")
      assert.are.equal(0, st)
      local sys = mountpoints(out)["/sys"]
      assert.are.equal("sysfs", sys.fstype)
      assert.is_true(has_option(sys.options, "ro"))
      local st2, _, err = run_sh("", "echo 1 > /sys/kernel/uevent_helper")
      assert.are_not.equal(0, st2)
      assert.matches("Read%-only file system", err)
    end)

    it("gives /dev exactly the default devices and links, no host node", function()
      local st, out = run("", "ls -A /dev")
      assert.are.equal(0, st)
      assert.are.same({ "core", "fd", "full", "mqueue", "null", "ptmx", "pts",
        "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero" },
        support.lines(out))
      st, out = run("", "stat -c '%n %t %T %F %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty")
      assert.are.equal(0, st)
      assert.are.same({
        "/dev/null 1 3 character special file 666",
        "/dev/zero 1 5 character special file 666",
        "/dev/full 1 7 character special file 666",
        "/dev/random 1 8 character special file 666",
        "/dev/urandom 1 9 character special file 666",
        "/dev/tty 5 0 character special file 666",
      }, support.lines(out))
      st, out = run_sh("", "for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done")
      assert.are.same({ "/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1",
        "/proc/self/fd/2", "pts/ptmx" }, support.lines(out))
    end)

    it("has a devpts of its own, /dev/shm and /dev/mqueue", function()
      local st, out = run("", "cat /proc/self/mountinfo")
      assert.are.equal(0, st)
      local points = mountpoints(out)
      assert.are.equal("devpts", points["/dev/pts"].fstype)
      assert.are.equal("tmpfs", points["/dev/shm"].fstype)
      assert.are.equal("mqueue", points["/dev/mqueue"].fstype)
      assert.are.equal("tmpfs", points["/dev"].fstype)
      -- a new devpts instance holds no host terminal
      st, out = run("", "ls /dev/pts")
      assert.are.equal("ptmx\n", out)
      st = run_sh("", "echo x > /dev/shm/f && cat /dev/shm/f")
      assert.are.equal(0, st)
    end)

    it("masks Docker's masked paths", function()
      local checks = {}
      for _, p in ipairs(spec.MASKED_PATHS) do
        checks[#checks + 1] = ("p=%s; if [ -d $p ]; then echo \"$p $(ls -A $p | wc -l)\"; "
          .. "elif [ -e $p ]; then echo \"$p $(cat $p | wc -c)\"; else echo \"$p absent\"; fi"):format(p)
      end
      local st, out = run_sh("", table.concat(checks, "\n"))
      assert.are.equal(0, st)
      local seen = 0
      for i, line in ipairs(support.lines(out)) do
        local p = spec.MASKED_PATHS[i]
        if exists(p) then
          -- present on the host (and so in the container), but empty there
          assert.are.equal(p .. " 0", line)
          seen = seen + 1
        else
          assert.are.equal(p .. " absent", line)
        end
      end
      assert.is_true(seen >= 3, "too few masked paths exist on this host to test")
    end)

    it("makes Docker's read-only paths read-only", function()
      local st, out = run("", "cat /proc/self/mountinfo")
      assert.are.equal(0, st)
      local points = mountpoints(out)
      for _, p in ipairs(spec.READONLY_PATHS) do
        if exists(p) then
          assert.is_truthy(points[p], p .. " is not a mount")
          assert.is_true(has_option(points[p].options, "ro"), p .. " is writable")
        end
      end
      local st2, _, err = run_sh("", "echo x > /proc/sys/kernel/domainname")
      assert.are_not.equal(0, st2)
      assert.matches("Read%-only file system", err)
    end)
  end)

  describe("options", function()
    it("sets the host name, and makes one up otherwise", function()
      local st, out = run_sh("--hostname box1", "hostname; echo $HOSTNAME")
      assert.are.equal(0, st)
      assert.are.equal("box1\nbox1\n", out)
      st, out = run_sh("", "hostname; echo $HOSTNAME")
      local lines = support.lines(out)
      assert.matches("^%x+$", lines[1])
      assert.are.equal(12, #lines[1])
      assert.are.equal(lines[1], lines[2])
    end)

    it("starts from a clean environment with -e added", function()
      local st, out = sh(("SECRET=host FROM_HOST=yes %s run --rootfs %s -h h -e A=1 -e B=x=y -e FROM_HOST -e A=2 -- env"):format(
        support.LUACTR, q(support.rootfs())))
      assert.are.equal(0, st)
      assert.are.same({
        "PATH=" .. spec.DEFAULT_PATH, "HOSTNAME=h", "HOME=/root",
        "A=2", "B=x=y", "FROM_HOST=yes",
      }, support.lines(out))
    end)

    it("sets the working directory, making it when missing", function()
      local st, out = run("-w /tmp", "pwd")
      assert.are.equal(0, st)
      assert.are.equal("/tmp\n", out)
      local dir = "/made/by-" .. tostring(os.time())
      st, out = run("-w " .. dir, "pwd")
      assert.are.equal(0, st)
      assert.are.equal(dir .. "\n", out)
      os.execute("rm -rf " .. support.rootfs() .. "/made")
    end)

    it("runs as another user, by name or number, with groups and HOME", function()
      local st, out = run_sh("-u user", "id; echo $HOME")
      assert.are.equal(0, st)
      assert.are.equal("uid=1000(user) gid=1000(user) groups=29(audio),100(users)\n/home/user\n", out)
      st, out = run_sh("-u 1000:100", "id -u; id -g")
      assert.are.equal("1000\n100\n", out)
      st, out = run_sh("-u 4242", "id -u; id -g; echo $HOME")
      assert.are.equal("4242\n0\n/\n", out)
      local err
      st, _, err = run("-u 1000", "touch /root/x")
      assert.are.equal(1, st)
      assert.matches("Permission denied", err)
      st, _, err = run("-u nobody-here", "true")
      assert.are.equal(125, st)
      assert.are.equal("luactr: run: unable to find user nobody-here: no matching entries in passwd file\n", err)
    end)

    it("rejects an unknown option with exit status 125", function()
      local st, _, err = run("--frobnicate", "true")
      assert.are.equal(125, st)
      assert.matches("^luactr: run: unknown option %-%-frobnicate", err)
      st, _, err = run("-Z", "true")
      assert.are.equal(125, st)
      assert.matches("^luactr: run: unknown option %-Z", err)
    end)
  end)

  describe("--init", function()
    it("puts a tiny init in front as PID 1 and the command as PID 2", function()
      local st, out = run_sh("--init", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
      assert.are.equal(0, st)
      local lines = support.lines(out)
      assert.are.equal("2", lines[1])
      -- PID 1 is the init program, not a copy of luactr's command line
      assert.matches("^luactr%-init 2 ?$", lines[2])
    end)

    it("reaps orphaned zombies", function()
      local st, out = run_sh("--init",
        "(sleep 0.1 &); sleep 0.6; grep -l 'State:.*Z' /proc/[0-9]*/status | wc -l")
      assert.are.equal(0, st)
      assert.are.equal("0\n", out)
    end)

    it("exits with the command's status", function()
      assert.are.equal(3, (run_sh("--init", "exit 3")))
      assert.are.equal(137, (run_sh("--init", "kill -9 $$")))
    end)
  end)

  describe("file descriptors and stdio", function()
    it("passes no fd of luactr's into the container, only 0, 1 and 2", function()
      local st, out = sh(("%s run --rootfs %s -- sh -c 'ls /proc/$$/fd; true' 5</etc/hostname 7>/dev/null 9<&0"):format(
        support.LUACTR, q(support.rootfs())))
      assert.are.equal(0, st)
      assert.are.equal("0\n1\n2\n", out)
    end)

    it("passes stdout and stderr straight through, apart", function()
      local st, out, err = run_sh("", "echo to-out; echo to-err >&2")
      assert.are.equal(0, st)
      assert.are.equal("to-out\n", out)
      assert.are.equal("to-err\n", err)
    end)

    it("keeps stdin open with -i, and gives /dev/null without it", function()
      local st, out = run("-i", "cat", "line one\nline two\n")
      assert.are.equal(0, st)
      assert.are.equal("line one\nline two\n", out)
      st, out = run("", "cat", "not read\n")
      assert.are.equal(0, st)
      assert.are.equal("", out)
    end)
  end)

  describe("-t", function()
    -- `script` gives luactr a real terminal (a pty of its own).
    local function in_terminal(cmd)
      return sh("script -qec " .. q(cmd) .. " /dev/null")
    end

    it("gives the container a terminal of the caller's size, and TERM", function()
      local st, out = in_terminal(("stty cols 123 rows 45; %s run -t --rootfs %s -- sh -c 'tty; stty size; echo $TERM; exit 3'"):format(
        support.LUACTR, q(support.rootfs())))
      assert.are.equal(3, st)
      assert.are.same({ "/dev/pts/0", "45 123", "xterm" }, support.lines(out:gsub("\r", "")))
    end)

    it("puts the caller's terminal in raw mode and restores it", function()
      local st, out = in_terminal(("stty -g > /dev/shm/luactr-before.$$; "
        .. "(sleep 0.5; stty -g < /dev/tty > /dev/shm/luactr-during.$$) & "
        .. "%s run -t --rootfs %s -- sleep 1.2; wait; stty -g > /dev/shm/luactr-after.$$; "
        .. "cat /dev/shm/luactr-before.$$ /dev/shm/luactr-during.$$ /dev/shm/luactr-after.$$; "
        .. "rm -f /dev/shm/luactr-*.$$"):format(support.LUACTR, q(support.rootfs())))
      assert.are.equal(0, st)
      local lines = support.lines(out:gsub("\r", ""))
      assert.are.equal(3, #lines)
      assert.are_not.equal(lines[1], lines[2])  -- raw while it runs
      assert.are.equal(lines[1], lines[3])      -- restored after
    end)

    it("follows window-size changes", function()
      local st, out = in_terminal(("stty cols 80 rows 24; (sleep 0.6; stty cols 77 rows 22 < /dev/tty) & "
        .. "%s run -t --rootfs %s -- sh -c 'stty size; sleep 1.5; stty size'; wait"):format(
        support.LUACTR, q(support.rootfs())))
      assert.are.equal(0, st)
      assert.are.same({ "24 80", "22 77" }, support.lines(out:gsub("\r", "")))
    end)

    it("relays input to the container with -it", function()
      local st, out = sh(("(sleep 0.5; printf 'echo $((6*7))\\nexit 5\\n') | script -qec %s /dev/null"):format(
        q(support.LUACTR .. " run -it --rootfs " .. q(support.rootfs()) .. " -- sh")))
      assert.are.equal(5, st)
      assert.matches("\n42\r?\n", out)
    end)
  end)

  describe("signals", function()
    -- Starts luactr in the background, waits for the container to say
    -- "ready", sends `sig` to luactr, and returns its status and output.
    local function signal_run(options, sig, script)
      local dir = support.tmpdir()
      return sh(([[
%s run --rootfs %s %s -- sh -c %s > %s/out 2>&1 &
p=$!
i=0; while ! grep -q ready %s/out && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
kill -%s $p; wait $p; st=$?; cat %s/out; exit $st]]):format(support.LUACTR, q(support.rootfs()),
        options, q(script), dir, dir, sig, dir))
    end

    for _, sig in ipairs({ "INT", "TERM", "HUP", "QUIT", "USR1", "USR2" }) do
      it("forwards SIG" .. sig .. " to the container", function()
        local st, out = signal_run("", sig,
          ("trap 'echo got %s; exit 9' %s; echo ready; while :; do sleep 0.05; done"):format(sig, sig))
        assert.are.equal(9, st)
        assert.are.equal("ready\ngot " .. sig .. "\n", out)
      end)
    end

    it("forwards signals through --init", function()
      local st, out = signal_run("--init", "TERM",
        "trap 'echo got TERM; exit 4' TERM; echo ready; while :; do sleep 0.05; done")
      assert.are.equal(4, st)
      assert.are.equal("ready\ngot TERM\n", out)
    end)
  end)

  describe("exit status", function()
    it("is the container's own", function()
      assert.are.equal(0, (run_sh("", "exit 0")))
      assert.are.equal(7, (run_sh("", "exit 7")))
    end)

    it("is 128+N when the container dies of signal N", function()
      local st = sh(([[
%s run --rootfs %s -- sleep 30 & p=$!
i=0; while [ -z "$(cat /proc/$p/task/$p/children 2>/dev/null)" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
sleep 0.1; kill -KILL $(cat /proc/$p/task/$p/children); wait $p]]):format(support.LUACTR, q(support.rootfs())))
      assert.are.equal(137, st)
    end)

    it("is 125 with the failed step when luactr fails", function()
      local st, out, err = run("--read-only -w /not-there", "true")
      assert.are.equal(125, st)
      assert.are.equal("", out)
      assert.are.equal("luactr: run: mkdir /not-there: Read-only file system\n", err)
      st, _, err = sh(support.LUACTR .. " run --rootfs /does/not/exist -- true")
      assert.are.equal(125, st)
      assert.are.equal("luactr: run: rootfs /does/not/exist: No such file or directory\n", err)
    end)

    it("is 126 when the command cannot be executed", function()
      local st, _, err = run("", "/etc/passwd")
      assert.are.equal(126, st)
      assert.are.equal("luactr: run: exec /etc/passwd: Permission denied\n", err)
    end)

    it("is 127 when the command does not exist", function()
      local st, _, err = run("", "no-such-command")
      assert.are.equal(127, st)
      assert.are.equal("luactr: run: exec no-such-command: No such file or directory\n", err)
    end)
  end)

  describe("when the container ends", function()
    it("leaves no mount, no process and no temporary file behind", function()
      -- what is in dir, without what other runs beside this one make
      local function listing(dir)
        local p = io.popen("ls -A " .. dir)
        local names = {}
        for name in p:lines() do
          if not support.foreign(dir .. "/" .. name) then names[#names + 1] = name .. "\n" end
        end
        p:close()
        return table.concat(names)
      end
      local mounts = support.mounts()
      local tmp, shm = listing("/tmp"), listing("/dev/shm")
      local root = support.ROOT
      local st = run_sh("--init", "sleep 5 & sleep 5 & echo started")
      assert.are.equal(0, st)
      assert.are.same(mounts, support.mounts())
      assert.are.equal(tmp, listing("/tmp"))
      assert.are.equal(shm, listing("/dev/shm"))
      -- nothing, but the compiled seccomp filters kept for the next start
      -- and the folder of cgroup records, empty (luactr.cgroup.claim)
      local left = listing(root)
      if left == "run\n" then
        assert.are.equal("", listing(root .. "/run/cgroups"))
        left = listing(root .. "/run"):gsub("^cgroups\n", ""):gsub("^seccomp\n$", "")
      end
      assert.are.equal("", left)
      -- no process has the fixture as its root any more
      local _, out = sh("for p in /proc/[0-9]*; do readlink $p/root; done | grep -c " .. q(support.rootfs()) .. " || true")
      assert.are.equal("0\n", out)
    end)
  end)
end)
