-- What is done to containers that run: stop, kill, pause and unpause,
-- wait, top, ps -q and --format json, inspect, through the command line
-- and the Lua API. Each container runs attached, under a `luactr run`
-- that the test starts in the background and ends in its teardown.
local support = require "support"
local json = require "luactr.json"
local core = require "luactr.core"

local q = support.q

local function readfile(path) return support.readfile(path) end

local alive, wait_until = support.alive, support.wait_until

-- A store with recipes/hello.lua built, and a way to start containers
-- in it; everything started is ended and the store torn down by the
-- one finally busted keeps per test.
local function session()
  local root = support.store_root()
  local runners, names = {}, {}
  local S = { root = root }

  function S.luactr(args, stdin) return root.luactr(args, stdin) end

  -- inspect NAME -> its table, or nil
  function S.inspect(name)
    local st, out = root.luactr("inspect --type container " .. q(name))
    if st ~= 0 then return nil end
    return json.decode(out)[1]
  end

  -- start(name, "run options and words") -> the pid of its `luactr run`,
  -- once the container runs
  function S.start(name, words)
    local st, out, err = support.sh(("%s %s run --name %s %s >/dev/null 2>&1 & echo $!")
      :format(root.env(), support.LUACTR, q(name), words))
    assert.are.equal(0, st, err)
    local pid = assert(out:match("%d+"))
    runners[#runners + 1], names[#names + 1] = pid, name
    local running = wait_until(function()
      local c = S.inspect(name)
      return (c and c.State.Running) or not alive(pid)
    end)
    assert.is_true(running and alive(pid), "container " .. name .. " did not start")
    return pid
  end

  -- detach(name, "run options and words") -> its id: run -d
  function S.detach(name, words)
    names[#names + 1] = name
    local st, out, err = root.luactr(("run -d --name %s %s"):format(q(name), words))
    assert.are.equal(0, st, err)
    return (out:match("%x+"))
  end

  -- the host folder of its rootfs
  function S.rootfs(name) return S.inspect(name).GraphDriver.Data.MergedDir end

  finally(function()
    -- luactr kill thaws a paused one; its runner then records the end
    for _, name in ipairs(names) do root.luactr("kill " .. q(name)) end
    for _, pid in ipairs(runners) do
      if not wait_until(function() return not alive(pid) end, 5) then
        os.execute("kill -9 " .. pid)
      end
    end
    for _, name in ipairs(names) do root.luactr("rm -f " .. q(name)) end
    root.teardown()
  end)
  local st, _, err = root.luactr("build recipes/hello.lua")
  assert.are.equal(0, st, err)
  return S
end

-- The seconds `fn` takes, and what it returns.
local function timed(fn)
  local t0 = core.sys.monotonic()
  local a, b, c = fn()
  return core.sys.monotonic() - t0, a, b, c
end

-- ps -a's STATUS of container `name` (its line, columns 3+ spaces apart).
local function ps_status(S, name)
  local _, out = S.luactr("ps -a --format json")
  for _, line in ipairs(support.lines(out)) do
    local c = json.decode(line)
    if c.Names == name then return c.Status, c.State end
  end
end

describe("container control #root", function()
  describe("luactr stop", function()
    it("sends SIGTERM and returns once the container has exited (143), long before the grace period", function()
      local S = session()
      local runner = S.start("a", "--init busybox sleep 1000")
      local secs, st, out, err = timed(function() return S.luactr("stop a") end)
      assert.are.equal(0, st, err)
      assert.are.equal("a\n", out)
      assert.is_true(secs < 9, "stop took " .. secs .. " s")
      local status, state = ps_status(S, "a")
      assert.matches("^Exited %(143%)", status)
      assert.are.equal("exited", state)
      local c = S.inspect("a")
      assert.are.equal(143, c.State.ExitCode)
      assert.is_false(c.State.Running)
      assert.is_true(wait_until(function() return not alive(runner) end, 5))
      -- the marker a restart policy reads
      local dir = S.root.path .. "/store/containers/" .. c.Id
      assert.is_truthy(core.fs.stat(dir .. "/stopping"))
    end)

    it("kills with SIGKILL after -t seconds a container that ignores SIGTERM (137)", function()
      local S = session()
      S.start("deaf", [[busybox sh -c 'trap "" TERM; sleep 1000']])
      local secs, st, out, err = timed(function() return S.luactr("stop -t 1 deaf") end)
      assert.are.equal(0, st, err)
      assert.are.equal("deaf\n", out)
      assert.is_true(secs >= 1 and secs < 9, "stop -t 1 took " .. secs .. " s")
      assert.matches("^Exited %(137%)", (ps_status(S, "deaf")))
      assert.are.equal(137, S.inspect("deaf").State.ExitCode)
    end)

    it("sends the image's StopSignal instead of SIGTERM", function()
      local S = session()
      local dir = support.tmpdir()
      support.write(dir .. "/recipe.lua", [[
image "usr1" {
  from = "busybox",
  stop_signal = "SIGUSR1",
}
]])
      local st, _, err = S.luactr("build " .. q(dir .. "/recipe.lua"))
      assert.are.equal(0, st, err)
      -- PID 1 handles USR1 alone: SIGTERM would leave it to the SIGKILL
      S.start("u", [[usr1 sh -c 'trap "exit 42" USR1; sleep 1000 & wait']])
      -- another signal is not a stop: a restart policy still holds
      local marker = S.root.path .. "/store/containers/" .. S.inspect("u").Id .. "/stopping"
      assert.are.equal(0, (S.luactr("kill -s USR2 u")))
      assert.is_nil(core.fs.stat(marker))
      assert.is_true(S.inspect("u").State.Running)
      local out
      st, out, err = S.luactr("stop -t 5 u")
      assert.are.equal(0, st, err)
      assert.are.equal("u\n", out)
      -- 42, not 137: USR1 ended it, no SIGKILL after the grace period
      assert.are.equal(42, S.inspect("u").State.ExitCode)
      assert.is_truthy(core.fs.stat(marker))
    end)

    it("stops several at once, and leaves a stopped container as it is", function()
      local S = session()
      assert.are.equal(3, (S.luactr("run --name done busybox sh -c 'exit 3'")))
      S.start("b1", "--init busybox sleep 1000")
      S.start("b2", "--init busybox sleep 1000")
      local st, out, err = S.luactr("stop b1 done b2")
      assert.are.equal(0, st, err)
      assert.are.equal("b1\ndone\nb2\n", out)
      assert.matches("^Exited %(143%)", (ps_status(S, "b1")))
      assert.matches("^Exited %(143%)", (ps_status(S, "b2")))
      assert.matches("^Exited %(3%)", (ps_status(S, "done")))
    end)
  end)

  describe("luactr kill", function()
    it("delivers the signal given by name or number, and SIGKILL by default", function()
      local S = session()
      S.start("k", [[busybox sh -c 'trap "echo \$((n=n+1)) >/got" USR1; while :; do sleep 1 & wait; done']])
      local got = S.rootfs("k") .. "/got"
      local st, out, err = S.luactr("kill -s USR1 k")
      assert.are.equal(0, st, err)
      assert.are.equal("k\n", out)
      assert.is_true(wait_until(function() return readfile(got) == "1\n" end, 5))
      -- the number, and Docker's other spellings, name the same signal
      assert.are.equal(0, (S.luactr("kill -s 10 k")))
      assert.is_true(wait_until(function() return readfile(got) == "2\n" end, 5))
      assert.are.equal(0, (S.luactr("kill --signal=sigusr1 k")))
      assert.is_true(wait_until(function() return readfile(got) == "3\n" end, 5))
      assert.is_true(S.inspect("k").State.Running)
      -- with no stop signal set, any signal stops a restart policy
      local marker = S.root.path .. "/store/containers/" .. S.inspect("k").Id .. "/stopping"
      assert.is_truthy(core.fs.stat(marker))
      st, out, err = S.luactr("kill k")
      assert.are.equal(0, st, err)
      assert.are.equal("k\n", out)
      local c = S.inspect("k")
      assert.are.equal("exited", c.State.Status)
      assert.are.equal(137, c.State.ExitCode)
      st, out, err = S.luactr("kill k")
      assert.are.equal(125, st)
      assert.are.equal("", out)
      assert.are.equal("luactr: kill: container k is not running\n", err)
    end)

    it("refuses a signal it does not know", function()
      local S = session()
      S.start("k", "busybox sleep 1000")
      local st, _, err = S.luactr("kill -s NOPE k")
      assert.are.equal(125, st)
      assert.are.equal("luactr: kill: invalid signal: NOPE\n", err)
      assert.is_true(S.inspect("k").State.Running)
    end)
  end)

  describe("luactr pause and unpause", function()
    it("freeze every process of the container and thaw them", function()
      local S = session()
      S.start("p", [[busybox sh -c 'while :; do echo $((n=n+1)) >/tick; sleep 0.05; done']])
      local tick = S.rootfs("p") .. "/tick"
      local freezer = S.inspect("p").Cgroups.freezer
      local function frozen()
        local v2 = readfile(freezer .. "/cgroup.freeze")
        if v2 then return v2 == "1\n" end
        return readfile(freezer .. "/freezer.state") == "FROZEN\n"
      end
      assert.is_true(wait_until(function() return readfile(tick) ~= nil end))
      local st, out, err = S.luactr("pause p")
      assert.are.equal(0, st, err)
      assert.are.equal("p\n", out)
      assert.is_true(frozen())
      local status, state = ps_status(S, "p")
      assert.matches("^Up .* %(Paused%)$", status)
      assert.are.equal("paused", state)
      local c = S.inspect("p")
      assert.are.same({ "paused", true, true }, { c.State.Status, c.State.Running, c.State.Paused })
      -- nothing runs: the counter stands still
      local before = readfile(tick)
      os.execute("sleep 0.4")
      assert.are.equal(before, readfile(tick))
      st, _, err = S.luactr("pause p")
      assert.are.equal(125, st)
      assert.are.equal("luactr: pause: container p is already paused\n", err)

      st, out, err = S.luactr("unpause p")
      assert.are.equal(0, st, err)
      assert.are.equal("p\n", out)
      assert.is_false(frozen())
      assert.is_true(wait_until(function() return readfile(tick) ~= before end, 5))
      status, state = ps_status(S, "p")
      assert.matches("^Up ", status)
      assert.is_nil(status:find("Paused", 1, true))
      assert.are.equal("running", state)
      assert.is_false(S.inspect("p").State.Paused)
      st, _, err = S.luactr("unpause p")
      assert.are.equal(125, st)
      assert.are.equal("luactr: unpause: container p is not paused\n", err)
    end)

    it("leave a paused container to kill and to stop", function()
      local S = session()
      S.start("pk", "busybox sleep 1000")
      S.start("ps", "--init busybox sleep 1000")
      assert.are.equal(0, (S.luactr("pause pk ps")))
      local secs, st, _, err = timed(function() return S.luactr("kill pk") end)
      assert.are.equal(0, st, err)
      assert.is_true(secs < 9, "kill took " .. secs .. " s")
      assert.are.equal(137, S.inspect("pk").State.ExitCode)
      -- frozen, it cannot act on SIGTERM: SIGKILL after the grace period
      secs, st, _, err = timed(function() return S.luactr("stop -t 1 ps") end)
      assert.are.equal(0, st, err)
      assert.is_true(secs < 9, "stop took " .. secs .. " s")
      local c = S.inspect("ps")
      assert.are.equal("exited", c.State.Status)
      assert.are.equal(137, c.State.ExitCode)
      st, _, err = S.luactr("pause ps")
      assert.are.equal(125, st)
      assert.are.equal("luactr: pause: container ps is not running\n", err)
    end)

    it("leave a paused container to rm -f, its cgroup with it", function()
      local S = session()
      S.start("pr", "busybox sleep 1000")
      local freezer = S.inspect("pr").Cgroups.freezer
      assert.are.equal(0, (S.luactr("pause pr")))
      local st, _, err = S.luactr("rm pr")
      assert.are.equal(125, st)
      assert.matches("is paused", err)
      local secs
      secs, st, _, err = timed(function() return S.luactr("rm -f pr") end)
      assert.are.equal(0, st, err)
      assert.is_true(secs < 9, "rm -f took " .. secs .. " s")
      assert.is_nil(core.fs.stat(freezer))
      assert.is_nil(S.inspect("pr"))
    end)
  end)

  describe("luactr top", function()
    it("lists the container's processes as ps -ef shows them", function()
      local S = session()
      S.start("t", "--init busybox sleep 1000")
      local st, out, err = S.luactr("top t")
      assert.are.equal(0, st, err)
      local lines = support.lines(out)
      local header = {}
      for w in lines[1]:gmatch("%S+") do header[#header + 1] = w end
      assert.are.same({ "UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD" }, header)
      -- the init and its sleep, nothing of the host
      assert.are.equal(3, #lines)
      assert.matches(" sleep 1000$", lines[3])
      local init = lines[2]:match("^%S+%s+(%d+)")
      assert.are.equal(S.inspect("t").State.Pid, tonumber(init))
      assert.are.equal(init, lines[3]:match("^%S+%s+%d+%s+(%d+)"))
      -- ps's own environment variables are not luactr's to pass on
      local again
      st, again = support.sh(("%s PS_PERSONALITY=bsd %s top t"):format(S.root.env(), support.LUACTR))
      assert.are.equal(0, st)
      assert.are.equal(lines[1], support.lines(again)[1])
      -- ps options of one's own
      st, out = S.luactr("top t -o pid,comm")
      assert.are.equal(0, st)
      lines = support.lines(out)
      assert.matches("^PID%s+COMMAND$", lines[1])
      assert.are.equal(3, #lines)
      assert.matches("^%d+%s+sleep$", lines[3])
      S.luactr("kill t")
      st, _, err = S.luactr("top t")
      assert.are.equal(125, st)
      assert.are.equal("luactr: top: container t is not running\n", err)
    end)
  end)

  describe("luactr wait", function()
    it("blocks until the container exits and prints its exit code", function()
      local S = session()
      S.start("w", [[busybox sh -c 'until test -e /go; do sleep 0.05; done; exit 3']])
      local go = S.rootfs("w") .. "/go"
      local secs, st, out, err = timed(function()
        return support.sh(("(sleep 1; touch %s) & %s %s wait w")
          :format(q(go), S.root.env(), support.LUACTR))
      end)
      assert.are.equal(0, st, err)
      assert.are.equal("3\n", out)
      assert.is_true(secs >= 0.9, "wait returned after " .. secs .. " s")
      -- an exited one at once; each of several, in order
      assert.are.equal(0, (S.luactr("run --name z busybox true")))
      st, out = S.luactr("wait w z")
      assert.are.equal(0, st)
      assert.are.equal("3\n0\n", out)
    end)
  end)

  describe("luactr ps", function()
    it("prints only ids with -q, and one JSON object a line with --format json", function()
      local S = session()
      assert.are.equal(5, (S.luactr("run --name old busybox sh -c 'exit 5'")))
      S.start("new", "busybox sleep 1000")
      local new, old = S.inspect("new").Id, S.inspect("old").Id
      local st, out = S.luactr("ps -q")
      assert.are.equal(0, st)
      assert.are.equal(new:sub(1, 12) .. "\n", out)
      st, out = S.luactr("ps -aq")
      assert.are.equal(0, st)
      local ids = support.lines(out)
      table.sort(ids)
      local want = { new:sub(1, 12), old:sub(1, 12) }
      table.sort(want)
      assert.are.same(want, ids)
      st, out = S.luactr("ps -a --format json")
      assert.are.equal(0, st)
      local lines = support.lines(out)
      assert.are.equal(2, #lines)
      local a, b = json.decode(lines[1]), json.decode(lines[2])
      if a.Names == "old" then a, b = b, a end
      assert.are.same({ new:sub(1, 12), "new", "busybox:latest", '"sleep 1000"', "running" },
        { a.ID, a.Names, a.Image, a.Command, a.State })
      assert.matches("^Up ", a.Status)
      assert.are.same({ old:sub(1, 12), "old", "exited" }, { b.ID, b.Names, b.State })
      assert.matches("^Exited %(5%)", b.Status)
      st, out = S.luactr("ps --format json")
      assert.are.equal(1, #support.lines(out))
      local err
      st, _, err = S.luactr("ps --format '{{.ID}}'")
      assert.are.equal(125, st)
      assert.are.equal("luactr: ps: --format: expected table or json, got '{{.ID}}'\n", err)
    end)
  end)

  describe("luactr inspect CONTAINER", function()
    it("shows it in docker inspect's shape, running and then exited", function()
      local S = session()
      S.start("i", "--init hello sleep 1000")
      local st, out, err = S.luactr("inspect i")
      assert.are.equal(0, st, err)
      local c = json.decode(out)[1]
      assert.matches("^" .. ("%x"):rep(64) .. "$", c.Id)
      assert.are.equal("/i", c.Name)
      assert.are.same({ "sleep", { "1000" } }, { c.Path, c.Args })
      assert.matches("^sha256:%x+$", c.Image)
      assert.are.equal("hello:latest", c.Config.Image)
      assert.are.same({ "sleep", "1000" }, c.Config.Cmd)
      assert.are.equal("/srv", c.Config.WorkingDir)
      assert.are.equal("1000:1000", c.Config.User)
      assert.is_truthy(table.concat(c.Config.Env, "\n"):find("GREETING=hello", 1, true))
      assert.are.same({ "running", true, false, false, 0 },
        { c.State.Status, c.State.Running, c.State.Paused, c.State.OOMKilled, c.State.ExitCode })
      assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+", c.State.StartedAt)
      assert.are.equal("0001-01-01T00:00:00Z", c.State.FinishedAt)
      -- Pid is the host pid of its PID 1, in its cgroup
      assert.is_truthy(readfile("/proc/" .. c.State.Pid .. "/cmdline"):find("luactr-init", 1, true))
      local procs = readfile(c.Cgroups.pids .. "/cgroup.procs")
      assert.is_truthy(("\n" .. procs):find("\n" .. c.State.Pid .. "\n", 1, true))
      assert.is_truthy(readfile(c.GraphDriver.Data.MergedDir .. "/srv/greeting.txt"))
      assert.are.equal(c.Driver, c.GraphDriver.Name)

      assert.are.equal(0, (S.luactr("stop i")))
      c = S.inspect("i")
      assert.are.same({ "exited", false, 143, 0 },
        { c.State.Status, c.State.Running, c.State.ExitCode, c.State.Pid })
      assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+", c.State.FinishedAt)
    end)

    it("looks among images first, and only among the --type given", function()
      local S = session()
      assert.are.equal(0, (S.luactr("run --name c1 busybox true")))
      local st, out = S.luactr("inspect hello c1")
      assert.are.equal(0, st)
      local list = json.decode(out)
      assert.are.equal(2, #list)
      assert.are.equal("linux", list[1].os)  -- the image, as its config
      assert.are.equal("/c1", list[2].Name)
      local err
      st, _, err = S.luactr("inspect --type container hello")
      assert.are.equal(125, st)
      assert.are.equal("luactr: inspect: no such container: hello\n", err)
      st, _, err = S.luactr("inspect --type image c1")
      assert.are.equal(125, st)
      assert.are.equal("luactr: inspect: no such image: c1\n", err)
      st, out = S.luactr("inspect --type container c1")
      assert.are.equal(0, st)
      assert.are.equal("/c1", json.decode(out)[1].Name)
    end)
  end)

  describe("every verb", function()
    it("finds a container by name, full id or unique id prefix, and names one it cannot find", function()
      local S = session()
      S.start("n", "busybox sleep 1000")
      local id = S.inspect("n").Id
      assert.are.equal(0, (S.luactr("pause " .. id)))
      assert.are.equal(0, (S.luactr("unpause " .. id:sub(1, 5))))
      local st, out = S.luactr("top " .. id:sub(1, 12))
      assert.are.equal(0, st)
      assert.are.equal(2, #support.lines(out))
      for _, verb in ipairs({ "stop", "kill", "pause", "unpause", "wait", "top" }) do
        local err
        st, out, err = S.luactr(verb .. " nope")
        assert.are.equal(125, st, verb)
        assert.are.equal("", out, verb)
        assert.are.equal(("luactr: %s: no such container: nope\n"):format(verb), err)
      end
      -- the others are still done
      local err
      st, out, err = S.luactr("kill nope n")
      assert.are.equal(125, st)
      assert.are.equal("n\n", out)
      assert.are.equal("luactr: kill: no such container: nope\n", err)
      assert.are.equal(137, S.inspect("n").State.ExitCode)
    end)
  end)

  describe("a detached container (run -d)", function()
    it("is paused, listed by top, and stopped for good despite --restart always", function()
      local S = session()
      local id = S.detach("d", "--restart always --init busybox sleep 1000")
      assert.are.equal(64, #id)
      local c = S.inspect("d")
      assert.is_true(c.State.Running)
      local st, out = S.luactr("top d")
      assert.are.equal(0, st)
      assert.matches(" sleep 1000\n$", out)
      assert.are.equal(0, (S.luactr("pause d")))
      assert.are.equal("paused", S.inspect("d").State.Status)
      assert.are.equal(0, (S.luactr("unpause d")))
      local secs, err
      secs, st, out, err = timed(function() return S.luactr("stop d") end)
      assert.are.equal(0, st, err)
      assert.are.equal("d\n", out)
      assert.is_true(secs < 9, "stop took " .. secs .. " s")
      -- its monitor would restart it within 100 ms: it stays exited
      os.execute("sleep 1")
      c = S.inspect("d")
      assert.are.same({ "exited", 143 }, { c.State.Status, c.State.ExitCode })
      st, out = S.luactr("wait d")
      assert.are.equal(0, st)
      assert.are.equal("143\n", out)
    end)
  end)

  describe("the Lua API", function()
    it("stops, kills, pauses, waits for, lists and inspects containers", function()
      local S = session()
      S.start("l1", "--init busybox sleep 1000")
      S.start("l2", [[busybox sh -c 'trap "exit 9" USR2; sleep 1000 & wait']])
      local script = [[
local luactr = require "luactr"
local function show(...) print(...) io.stdout:flush() end
for _, st in ipairs(luactr.containers()) do show("list", st.name, st.status, st.pid ~= nil) end
local t = luactr.top("l1")
show("top", t.titles[2], t.processes[2][#t.titles])
show("pause", luactr.pause("l1").paused, luactr.inspect("l1").State.Status)
show("unpause", luactr.unpause("l1").paused)
luactr.kill("l2", "SIGUSR2")
show("wait", luactr.wait("l2"))
local st = luactr.stop("l1", { timeout = 5 })
show("stop", st.status, st.exit_code)
show("inspect", luactr.inspect("l1").State.ExitCode)
show("error", pcall(luactr.stop, "nope"))
]]
      local st, out, err = support.sh(("%s LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s lua5.4 -e %s")
        :format(S.root.env(), q(support.BUILD .. "/?.so;;"), q(script)))
      assert.are.equal(0, st, err)
      local lines = support.lines(out)
      if lines[1] > lines[2] then lines[1], lines[2] = lines[2], lines[1] end  -- same second
      assert.are.same({
        "list\tl1\trunning\ttrue",
        "list\tl2\trunning\ttrue",
        "top\tPID\tsleep 1000",
        "pause\ttrue\tpaused",
        "unpause\tfalse",
        "wait\t9",
        "stop\texited\t143",
        "inspect\t143",
        "error\tfalse\tstop: no such container: nope",
      }, lines)
    end)
  end)
end)

describe("core.sys.signal", function()
  it("signals a pid only while it is the process that started at the time given", function()
    local p = io.popen("sleep 30 >/dev/null & echo $!")
    local pid = math.tointeger(tonumber(p:read("l")))
    p:close()
    finally(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)
    local start = require("luactr.runtime.state").start_time(pid)
    assert.is_number(start)
    -- another start time: another process that had the pid once
    local ok, err, errno = core.sys.signal(pid, start + 1, core.sys.signals.KILL)
    assert.is_nil(ok)
    assert.matches("No such process", err)
    assert.are.equal(core.sys.errno.ESRCH, errno)
    assert.is_true(alive(pid))
    assert.is_true(core.sys.signal(pid, start, core.sys.signals.TERM))
    assert.is_true(wait_until(function() return not alive(pid) end, 5))
  end)
end)
