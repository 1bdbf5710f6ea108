-- Detached containers and their monitor: run -d, logs, attach, start,
-- restart policies, rm, and what happens when a part is killed.
local support = require "support"
local json = require "luactr.json"

local q = support.q

local readfile, eventually, alive = support.readfile, support.eventually, support.alive

-- A store with busybox (recipes/hello.lua) built in it; every container
-- left in it is removed with -f before the store goes.
local function busybox_store(driver)
  local root = support.store_root(driver)
  finally(function()
    local _, ids = root.luactr("ps -a -q")
    for id in (ids or ""):gmatch("%x+") do root.luactr("rm -f " .. id) end
    root.teardown()
  end)
  local st, _, err = root.luactr("build recipes/hello.lua")
  assert.are.equal(0, st, err)
  -- a shell command line with this root in its environment
  function root.shell(cmd)
    return support.sh("export " .. root.env() .. "\n" .. cmd)
  end
  function root.state(id)
    local dir = root.path .. "/store/containers/"
    for _, full in ipairs(support.listing("ls " .. q(dir))) do
      if full:sub(1, #id) == id then
        return json.decode(readfile(dir .. full .. "/state.json")), dir .. full
      end
    end
  end
  -- `run -d ARGS`: the id it printed
  function root.detach(args)
    local st, out, err = root.luactr("run -d " .. args)
    assert.are.equal(0, st, err)
    local id = out:match("^(%x+)\n$")
    assert.is_truthy(id, "run -d printed: " .. out)
    return id
  end
  function root.status(id)
    local _, out = root.luactr("inspect --type container " .. id)
    local t = json.decode(out or "")
    return t and t[1] and t[1].State and t[1].State.Status
  end
  return root
end

describe("run -d #root", function()
  it("prints the container's id and returns while it runs", function()
    local root = busybox_store()
    local id = root.detach("--name bg busybox sleep 1000")
    assert.are.equal(64, #id)
    local st = root.state(id)
    assert.are.equal("running", st.status)
    assert.is_true(alive(st.pid))
    local _, out = root.luactr("ps")
    assert.matches(id:sub(1, 12) .. ".-Up .-bg", out)
    -- its monitor is the container's parent, and not a Lua interpreter
    local stat = readfile("/proc/" .. st.pid .. "/stat")
    local ppid = tonumber(stat:match("%) %a (%d+)"))
    assert.are.equal(st.runner, ppid)
    assert.matches("^luactr%-monitor\0", readfile("/proc/" .. ppid .. "/cmdline"))
  end)

  it("records the exit code and the time when the command ends", function()
    local root = busybox_store()
    local id = root.detach("busybox sh -c 'exit 3'")
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    local _, out = root.luactr("inspect --type container " .. id)
    local state = json.decode(out)[1].State
    assert.are.equal(3, state.ExitCode)
    assert.matches("^%d%d%d%d%-", state.FinishedAt)
    local _, ps = root.luactr("ps -a")
    assert.matches("Exited %(3%)", ps)
  end)

  it("keeps running after the terminal and session it was started from are gone", function()
    local root = busybox_store()
    local st, out = root.shell(("timeout 20 script -qec %s /dev/null")
      :format(q(support.LUACTR .. " run -d --name orphan busybox sleep 1000")))
    assert.are.equal(0, st, out)
    os.execute("sleep 0.5")
    assert.are.equal("running", root.status("orphan"))
  end)

  it("removes itself when it ends with --rm", function()
    local root = busybox_store()
    local id = root.detach("--rm busybox sh -c 'sleep 0.3'")
    assert.is_truthy(eventually(function() return root.state(id) == nil end))
    local _, left = root.luactr("ps -a -q")
    assert.are.equal("", left)
  end)

  it("gives it a terminal with -t, whose output is logged", function()
    local root = busybox_store()
    local id = root.detach("-t busybox sh -c 'tty; echo on-tty'")
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    local _, out = root.luactr("logs " .. id)
    assert.matches("^/dev/pts/0\r?\non%-tty\r?\n$", out)
  end)

  it("reports a command that is not there as run does, with 127", function()
    local root = busybox_store()
    local st, _, err = root.luactr("run -d busybox /no/such/program")
    assert.are.equal(127, st)
    assert.matches("luactr: run: .*/no/such/program", err)
  end)

  it("keeps the monitor's private memory under 256 KiB", function()
    local root = busybox_store()
    local id = root.detach("busybox sleep 1000")
    local runner = root.state(id).runner
    local rollup = readfile("/proc/" .. runner .. "/smaps_rollup")
    local kib = tonumber(rollup:match("Pss_Anon:%s+(%d+) kB"))
    assert.is_true(kib <= 256, "Pss_Anon " .. kib .. " KiB")
  end)

  it("is removed with rm -f: its monitor, its run folder and its cgroup go too", function()
    local root = busybox_store()
    local id = root.detach("busybox sleep 1000")
    local st = root.state(id)
    local cg = st.cgroups.pids or st.cgroups.memory
    assert.are.equal(1, os.execute("test -d " .. q(cg)) and 1 or 0)
    local s, _, err = root.luactr("rm " .. id)
    assert.are.equal(125, s)
    assert.matches("is running", err)
    assert.are.equal(0, (root.luactr("rm -f " .. id)))
    assert.is_falsy(alive(st.pid))
    assert.is_falsy(alive(st.runner))
    assert.is_nil(root.state(id))
    assert.is_nil(readfile(root.path .. "/run/" .. id .. "/sock"))
    assert.is_falsy(os.execute("test -e " .. q(root.path .. "/run/" .. id)))
    assert.is_falsy(os.execute("test -d " .. q(cg)))
  end)
end)

describe("logs #root", function()
  it("keeps stdout and stderr apart, with --tail, -t and --since", function()
    local root = busybox_store()
    local id = root.detach([[busybox sh -c 'for i in 1 2 3; do echo "out $i"; echo "err $i" >&2; done']])
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    local st, out, err = root.luactr("logs " .. id)
    assert.are.equal(0, st)
    assert.are.equal("out 1\nout 2\nout 3\n", out)
    assert.are.equal("err 1\nerr 2\nerr 3\n", err)
    local seq = root.detach("busybox seq 1 5")
    assert.is_truthy(eventually(function() return root.status(seq) == "exited" end))
    _, out = root.luactr("logs --tail 2 " .. seq)
    assert.are.equal("4\n5\n", out)
    _, out = root.luactr("logs --tail 0 " .. seq)
    assert.are.equal("", out)
    _, out = root.luactr("logs -t " .. id .. " 2>/dev/null")
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z out 1\n", out)
    _, out = root.luactr("logs --since 2099-01-01T00:00:00Z " .. id)
    assert.are.equal("", out)
    _, out = root.luactr("logs --since 1h " .. id .. " 2>/dev/null")
    assert.are.equal("out 1\nout 2\nout 3\n", out)
  end)

  it("keeps odd bytes as they were: quotes, backslashes, tabs, control characters", function()
    local root = busybox_store()
    local id = root.detach([[busybox sh -c 'printf "a\"b\\\\c\td\001e\n"']])
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    local _, out = root.luactr("logs " .. id)
    assert.are.equal('a"b\\c\td\1e\n', out)
    local log = readfile(root.state(id) and select(2, root.state(id)) .. "/log.json")
    for line in log:gmatch("[^\n]+") do assert.is_truthy(json.decode(line), line) end
  end)

  it("follows a running container with -f until it exits", function()
    local root = busybox_store()
    local id = root.detach([[busybox sh -c 'for i in 1 2 3 4 5; do echo "tick $i"; sleep 0.2; done']])
    local st, out = root.luactr("logs -f " .. id)
    assert.are.equal(0, st)
    assert.are.equal("tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n", out)
  end)

  it("loses no line of a container writing fast to stdout and stderr", function()
    local root = busybox_store()
    local id = root.detach([[busybox sh -c 'seq 1 20000 & seq 1 20000 >&2; wait']])
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end, 60))
    local _, out, err = root.luactr("logs " .. id)
    local function count(s) local n = 0 for _ in s:gmatch("\n") do n = n + 1 end return n end
    assert.are.equal(20000, count(out))
    assert.are.equal(20000, count(err))
    assert.matches("^1\n2\n3\n", out)
    assert.matches("\n20000\n$", err)
  end)

  it("rotates by size with --log-opt max-size and max-file", function()
    local root = busybox_store()
    local id = root.detach("--log-opt max-size=4k --log-opt max-file=3 busybox seq 1 2000")
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    local _, dir = root.state(id)
    assert.is_truthy(readfile(dir .. "/log.json.1"))
    assert.is_truthy(readfile(dir .. "/log.json.2"))
    assert.is_nil(readfile(dir .. "/log.json.3"))
    local total = 0
    for _, f in ipairs({ "/log.json", "/log.json.1", "/log.json.2" }) do
      local s = readfile(dir .. f) or ""
      assert.is_true(#s < 4096 + 200, f .. " is " .. #s .. " bytes")
      total = total + #s
    end
    local _, out = root.luactr("logs " .. id)
    assert.matches("\n2000\n$", out)  -- the newest lines are kept
    assert.is_falsy(out:match("^1\n"))  -- the oldest went
    assert.is_true(total > 8192)
  end)

  it("refuses a log option it does not know", function()
    local root = busybox_store()
    local st, _, err = root.luactr("run -d --log-opt max-age=3 busybox true")
    assert.are.equal(125, st)
    assert.matches("unsupported option 'max%-age=3'", err)
  end)
end)

describe("attach and detach #root", function()
  -- Runs `luactr ARGS` on a terminal (script(1)), typing `keys` (a list
  -- of { delay, text }); returns the status and what the terminal showed.
  local function on_terminal(root, args, keys)
    local feed = {}
    for _, k in ipairs(keys) do
      feed[#feed + 1] = ("sleep %s; printf %s"):format(k[1], q(k[2]))
    end
    feed[#feed + 1] = "sleep 1"
    return root.shell(("(%s) | timeout 20 script -qec %s /dev/null")
      :format(table.concat(feed, "; "), q(root.env() .. " " .. support.LUACTR .. " " .. args)))
  end

  it("runs -it attached, detaches with ctrl-p ctrl-q, attaches again", function()
    local root = busybox_store()
    local st, out = on_terminal(root, "run -it --name term busybox sh",
      { { 1, "echo hel''lo\n" }, { 0.5, "\16\17" } })
    assert.are.equal(0, st)
    assert.matches("hello", out)
    assert.are.equal("running", root.status("term"))
    st, out = on_terminal(root, "attach term", { { 1, "echo ag''ain; tty\n" }, { 0.5, "exit 7\n" } })
    assert.are.equal(7, st)
    assert.matches("again", out)
    assert.matches("/dev/pts/0", out)
    assert.is_truthy(eventually(function() return root.status("term") == "exited" end))
  end)

  it("attaches to a container without a terminal: stdout and stderr apart, its status", function()
    local root = busybox_store()
    local id = root.detach("busybox sh -c 'sleep 1; echo to-out; echo to-err >&2; exit 4'")
    local st, out, err = root.luactr("attach " .. id)
    assert.are.equal(4, st)
    assert.are.equal("to-out\n", out)
    assert.are.equal("to-err\n", err)
  end)

  it("refuses to attach to a container that is not running", function()
    local root = busybox_store()
    local id = root.detach("busybox true")
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    local st, _, err = root.luactr("attach " .. id)
    assert.are.equal(125, st)
    assert.matches("is not running", err)
  end)

  it("takes other detach keys with --detach-keys", function()
    local root = busybox_store()
    local st = on_terminal(root, "run -it --detach-keys ctrl-a,x --name k busybox sh",
      { { 1, "\16\17echo still\n" }, { 0.5, "\1x" } })
    assert.are.equal(0, st)
    assert.are.equal("running", root.status("k"))
  end)

  it("shows all of a command that ends at once, and removes it with --rm", function()
    local root = busybox_store()
    for _ = 1, 3 do
      local st, out = on_terminal(root, "run --rm -it busybox sh -c 'tty; exit 6'", {})
      assert.are.equal(6, st, out)
      assert.matches("/dev/pts/0", out)
    end
    assert.is_truthy(eventually(function()
      local _, left = root.luactr("ps -a -q")
      return left == ""
    end))
  end)

  it("returns the container's status when it exits while attached", function()
    local root = busybox_store()
    local st, out = on_terminal(root, "run -it busybox sh", { { 1, "exit 5\n" } })
    assert.are.equal(5, st, out)
  end)
end)

describe("start and restart policies #root", function()
  it("starts a stopped container again with its writable layer kept", function()
    local root = busybox_store()
    local id = root.detach([[busybox sh -c 'cat /count 2>/dev/null; echo x >> /count']])
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    assert.are.equal(0, (root.luactr("start " .. id)))
    assert.is_truthy(eventually(function()
      local _, out = root.luactr("logs " .. id)
      return out == "x\n"
    end))
  end)

  it("restart stops a running container and starts it again", function()
    local root = busybox_store()
    local id = root.detach("busybox sh -c 'echo start; sleep 1000'")
    local pid = root.state(id).pid
    assert.are.equal(0, (root.luactr("restart -t 1 " .. id)))
    assert.is_falsy(alive(pid))
    assert.are.equal("running", root.status(id))
    assert.is_truthy(eventually(function()
      local _, out = root.luactr("logs " .. id)
      return out == "start\nstart\n"
    end))
  end)

  it("restarts on failure as often as asked, then leaves it exited", function()
    local root = busybox_store()
    local id = root.detach("--restart on-failure:2 busybox sh -c 'echo run; exit 1'")
    assert.is_truthy(eventually(function()
      local st = root.state(id)
      return st.restarts == 2 and root.status(id) == "exited"
    end, 20))
    local _, out = root.luactr("logs " .. id)
    assert.are.equal("run\nrun\nrun\n", out)
  end)

  it("does not restart on success with on-failure", function()
    local root = busybox_store()
    local id = root.detach("--restart on-failure busybox sh -c 'echo once'")
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    os.execute("sleep 0.5")
    local _, out = root.luactr("logs " .. id)
    assert.are.equal("once\n", out)
  end)

  it("restarts always until stop, which it obeys", function()
    local root = busybox_store()
    local id = root.detach("--restart always busybox sh -c 'echo up; sleep 0.2'")
    assert.is_truthy(eventually(function() return (root.state(id).restarts or 0) >= 2 end, 20))
    assert.are.equal(0, (root.luactr("stop -t 1 " .. id)))
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    local _, before = root.luactr("logs " .. id)
    os.execute("sleep 1")
    local _, after = root.luactr("logs " .. id)
    assert.are.equal(before, after)
    assert.are.equal("exited", root.status(id))
  end)

  -- the times of a container's lines of output, in seconds (logs -t)
  local function line_times(root, id)
    local _, out = root.luactr("logs -t " .. id)
    local times = {}
    for y, mo, d, h, mi, sec in out:gmatch("(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):([%d.]+)Z") do
      local whole = os.time({ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
        hour = tonumber(h), min = tonumber(mi), sec = 0 })
      times[#times + 1] = whole + tonumber(sec)
    end
    return times
  end

  it("waits longer before each restart: 100, 200, then 400 ms", function()
    local root = busybox_store()
    local id = root.detach("--restart on-failure:3 busybox sh -c 'echo run; exit 1'")
    assert.is_truthy(eventually(function()
      return root.state(id).restarts == 3 and root.status(id) == "exited"
    end, 20))
    local t = line_times(root, id)
    assert.are.equal(4, #t)
    for i, least in ipairs({ 0.1, 0.2, 0.4 }) do
      local gap = t[i + 1] - t[i]
      assert.is_true(gap >= least, ("restart %d came %.3f s after the run before"):format(i, gap))
    end
  end)

  it("says Restarting while it waits, and a stop then ends the wait at once", function()
    local root = busybox_store()
    local id = root.detach("--restart always busybox sh -c 'echo up; exit 1'")
    -- five quick failures: the wait before the sixth run is 3.2 s
    assert.is_truthy(eventually(function()
      return root.state(id).restarts == 5 and root.status(id) == "restarting"
    end, 20))
    local _, ps = root.luactr("ps")
    assert.matches(id:sub(1, 12) .. ".-Restarting %(1%)", ps)
    local t0 = os.time()
    assert.are.equal(0, (root.luactr("stop " .. id)))
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end, 1.5),
      "the stop did not end the back-off")
    assert.is_true(os.time() - t0 <= 2)
    local _, before = root.luactr("logs " .. id)
    os.execute("sleep 3.5")  -- past the end of the wait it cut short
    local _, after = root.luactr("logs " .. id)
    assert.are.equal(before, after)
    assert.are.equal(5, root.state(id).restarts)
    local _, ps_after = root.luactr("ps -a")
    assert.matches(id:sub(1, 12) .. ".-Exited %(1%)", ps_after)
  end)

  it("refuses a policy it does not know", function()
    local root = busybox_store()
    local st, _, err = root.luactr("run -d --restart sometimes busybox true")
    assert.are.equal(125, st)
    assert.matches("restart: expected no, always", err)
  end)
end)

describe("the restart policy", function()
  local monitor = require "luactr.runtime.monitor"

  -- the delay restart_delay gives a container of policy `restart`
  -- (retries), restarted `restarts` times, last after `backoff` ms,
  -- whose run ended with `status` after `ran` ms
  local function delay(restart, retries, restarts, backoff, status, ran)
    return monitor.restart_delay({ detached = { restart = restart, retries = retries },
      restarts = restarts, backoff = backoff }, status, ran or 50)
  end

  it("restarts always, unless-stopped alike, whatever the status", function()
    assert.are.equal(100, delay("always", nil, 0, nil, 0))
    assert.are.equal(100, delay("always", nil, 0, nil, 137))
    assert.are.equal(100, delay("unless-stopped", nil, 0, nil, 0))
    assert.is_nil(delay("no", nil, 0, nil, 1))
    assert.is_nil(monitor.restart_delay({ detached = {} }, 1, 50))
  end)

  it("restarts on failure only, and then as often as the retries say", function()
    assert.is_nil(delay("on-failure", 2, 0, nil, 0))
    assert.are.equal(100, delay("on-failure", 2, 0, nil, 1))
    assert.are.equal(200, delay("on-failure", 2, 1, 100, 1))
    assert.is_nil(delay("on-failure", 2, 2, 200, 1))
    -- no retries given: without end
    assert.are.equal(60000, delay("on-failure", 0, 40, 60000, 1))
  end)

  it("doubles the wait up to a minute, and starts from 100 ms after a run of 10 s", function()
    local waits, last = {}, nil
    for restarts = 0, 11 do
      last = delay("always", nil, restarts, last, 1)
      waits[#waits + 1] = last
    end
    assert.are.same({ 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000 }, waits)
    assert.are.equal(100, delay("always", nil, 12, 60000, 1, 10000))
    assert.are.equal(60000, delay("always", nil, 12, 60000, 1, 9999))
    -- and doubles from there again
    assert.are.equal(200, delay("always", nil, 13, 100, 1, 50))
  end)
end)

describe("when a part is killed #root", function()
  it("kill -9 of the monitor ends the container; ps says exited, rm cleans", function()
    local root = busybox_store()
    local id = root.detach("busybox sleep 1000")
    local st = root.state(id)
    os.execute("kill -9 " .. st.runner)
    assert.is_truthy(eventually(function() return not alive(st.pid) end))
    local _, out = root.luactr("ps -a")
    assert.matches("Exited", out)
    assert.are.equal(0, (root.luactr("rm " .. id)))
    assert.is_nil(root.state(id))
  end)

  it("kill -9 of the container's PID 1 is recorded as 137", function()
    local root = busybox_store()
    local id = root.detach("busybox sleep 1000")
    os.execute("kill -9 " .. root.state(id).pid)
    assert.is_truthy(eventually(function() return root.status(id) == "exited" end))
    local _, out = root.luactr("inspect --type container " .. id)
    assert.are.equal(137, json.decode(out)[1].State.ExitCode)
  end)

  it("kill -9 of the CLI during run -d leaves what ps reports truly and rm cleans", function()
    local root = busybox_store()
    -- killed at once, and after a while: whatever the moment, rm -f cleans
    for _, delay in ipairs({ "0.01", "0.05", "0.1" }) do
      root.shell(("%s run -d --name k%s busybox sleep 1000 >/dev/null & sleep %s; kill -9 $! 2>/dev/null; wait")
        :format(support.LUACTR, delay:gsub("%.", ""), delay))
    end
    local _, ps = root.luactr("ps -a")
    for line in ps:gmatch("[^\n]+") do
      assert.is_truthy(line:match("^CONTAINER") or line:match("Up ") or line:match("Created")
        or line:match("Exited"), line)
    end
    local _, ids = root.luactr("ps -a -q")
    for cid in ids:gmatch("%x+") do assert.are.equal(0, (root.luactr("rm -f " .. cid))) end
    local _, left = root.luactr("ps -a -q")
    assert.are.equal("", left)
  end)
end)

describe("fifty detached containers #root #slow", function()
  it("start in parallel, then stop and go in parallel, leaving nothing", function()
    local root = busybox_store()
    local cmd = {}
    for i = 1, 50 do
      cmd[#cmd + 1] = ("%s run -d --name c%d busybox sleep 1000 >/dev/null &"):format(support.LUACTR, i)
    end
    cmd[#cmd + 1] = "wait"
    root.shell(table.concat(cmd, "\n"))
    local _, out = root.luactr("ps -q")
    local ids = {}
    for id in out:gmatch("%x+") do ids[#ids + 1] = id end
    assert.are.equal(50, #ids)
    local runners = {}
    for _, id in ipairs(ids) do runners[#runners + 1] = root.state(id).runner end
    cmd = {}
    for i = 1, 50 do cmd[#cmd + 1] = ("%s rm -f c%d >/dev/null &"):format(support.LUACTR, i) end
    cmd[#cmd + 1] = "wait"
    root.shell(table.concat(cmd, "\n"))
    local _, left = root.luactr("ps -a -q")
    assert.are.equal("", left)
    for _, pid in ipairs(runners) do assert.is_falsy(alive(pid)) end
    assert.are.same({}, support.listing("ls " .. q(root.path .. "/store/containers")))
    for _, entry in ipairs(support.listing("ls " .. q(root.path .. "/run"))) do
      assert.is_falsy(entry:match("^%x+$"), "run folder left: " .. entry)
    end
    for _, id in ipairs(ids) do
      assert.are.same({}, support.listing("find /sys/fs/cgroup -maxdepth 4 -name luactr-" .. id:sub(1, 12)))
    end
  end)
end)

describe("the Lua API #root", function()
  it("runs detached and gives a container to logs, inspect and rm", function()
    local root = busybox_store()
    local script = [[
      local luactr = require "luactr"
      local c = luactr.run{ image = "busybox", detach = true,
                            cmd = { "sh", "-c", "echo from-lua; sleep 1000" } }
      for _ = 1, 100 do
        if #c:logs() > 0 then break end
        require("luactr.core").sys.sleep(0.05)
      end
      io.write(c:logs()[1].log, c:inspect().State.Status, "\n")
      c:rm{ force = true }
      io.write(pcall(c.inspect, c) and "still there\n" or "gone\n")
    ]]
    local st, out, err = root.shell("lua5.4 -e " .. q(
      ("package.path='%s/lua/?.lua;%s/lua/?/init.lua;'..package.path package.cpath='%s/?.so;'..package.cpath")
        :format(support.TOP, support.TOP, support.BUILD)) .. " -e " .. q(script))
    assert.are.equal(0, st, err)
    assert.are.equal("from-lua\nrunning\ngone\n", out)
    local _, left = root.luactr("ps -a -q")
    assert.are.equal("", left)
  end)

  it("gives the container's verbs as methods: exec, stats, kill, wait, stop, start", function()
    local root = busybox_store()
    local script = [[
      local luactr = require "luactr"
      local c = luactr.run{ image = "busybox", detach = true, name = "api",
                            cmd = { "sh", "-c", "trap 'exit 9' USR1; while :; do sleep 0.1; done" } }
      local ok, how, code = c:exec{ cmd = { "sh", "-c", "exit 4" } }
      print("exec", ok, how, code)
      local s = c:stats()
      print("stats", s.running, s.pids and s.pids > 0)
      c:kill("USR1")
      print("wait", c:wait())
      c:start()
      print("again", luactr.container("api"):inspect().State.Status)
      c:stop{ timeout = 1 }
      print("stopped", c:inspect().State.Status)
      local n = 0
      for _, st in ipairs(luactr.containers()) do if st.name == "api" then n = n + 1 end end
      print("listed", n)
      c:rm()
    ]]
    local st, out, err = root.shell("lua5.4 -e " .. q(
      ("package.path='%s/lua/?.lua;%s/lua/?/init.lua;'..package.path package.cpath='%s/?.so;'..package.cpath")
        :format(support.TOP, support.TOP, support.BUILD)) .. " -e " .. q(script))
    assert.are.equal(0, st, err)
    assert.are.equal("exec\tnil\texit\t4\nstats\ttrue\ttrue\nwait\t9\n"
      .. "again\trunning\nstopped\texited\nlisted\t1\n", out)
  end)
end)
