-- The state machine of a container (luactr.runtime.state): its
-- transitions, what every verb asks of a state, what a record means now
-- (a fake store and fake cgroup folders stand in for the real ones: the
-- processes are this test's own), and the OCI runtime's view of it.
local support = require "support"
local state = require "luactr.runtime.state"
local core = require "luactr.core"
local json = require "luactr.json"

local STATUSES = { "created", "running", "paused", "restarting", "exited", "damaged" }
local ALLOWED = {
  created = { running = true, exited = true },
  running = { paused = true, exited = true, restarting = true },
  paused = { running = true, exited = true },
  restarting = { running = true, exited = true },
  exited = { running = true, restarting = true },
  damaged = {},
}

-- A store of one container whose state.json is `record`, in a folder of
-- its own (for exit.json).
local function store_of(record)
  local dir = support.tmpdir()
  local s = { unmounted = 0 }
  -- a fresh table each time, as a file read gives
  function s:read_state() return json.decode(json.encode(record)) end
  function s:container_dir() return dir end
  function s:unmount_container() self.unmounted = self.unmounted + 1 end
  function s:read_config() return nil end
  return s, dir
end

-- A folder that reads as a cgroup holding `pids` (and frozen, if asked).
local function fake_cgroup(pids, frozen)
  local dir = support.tmpdir()
  support.write(dir .. "/cgroup.procs", table.concat(pids, "\n") .. (#pids > 0 and "\n" or ""))
  support.write(dir .. "/freezer.state", frozen and "FROZEN\n" or "THAWED\n")
  return dir
end

local me = core.sys.getpid()

describe("luactr.runtime.state", function()
  it("moves only along its transitions", function()
    for _, from in ipairs(STATUSES) do
      for _, to in ipairs(STATUSES) do
        local st = { id = "abc", status = from }
        local ok = pcall(state.set, st, to)
        local want = from == to or ALLOWED[from][to] == true
        assert.are.equal(want, ok, from .. " -> " .. to)
        assert.are.equal(want and to or from, st.status)
      end
    end
  end)

  it("answers what verbs ask, for each status", function()
    local function asks(status, damaged)
      local st = { status = status, damaged = damaged }
      return { state.is_running(st), state.is_active(st), state.is_paused(st),
        state.is_created(st), state.is_restarting(st), state.is_exited(st), state.is_damaged(st) }
    end
    assert.are.same({ false, false, false, true, false, false, false }, asks("created"))
    assert.are.same({ true, true, false, false, false, false, false }, asks("running"))
    assert.are.same({ true, true, true, false, false, false, false }, asks("paused"))
    assert.are.same({ false, true, false, false, true, false, false }, asks("restarting"))
    assert.are.same({ false, false, false, false, false, true, false }, asks("exited"))
    assert.are.same({ false, false, false, false, false, false, true }, asks("damaged", "empty"))
    assert.is_false(state.is_running(nil))
    assert.is_false(state.is_active(nil))
  end)

  describe("reads a record as what is true now", function()
    it("keeps a running one whose PID 1 lives", function()
      local s = store_of({ id = "a", status = "running", pid = me, pid_start = state.start_time(me) })
      assert.are.equal("running", state.read(s, "a").status)
    end)

    it("says exited, stale, when its PID 1 is gone and nobody recorded the end", function()
      local s = store_of({ id = "a", status = "running", pid = me, pid_start = -1 })
      local st = state.read(s, "a")
      assert.are.equal("exited", st.status)
      assert.is_true(st.stale)
      assert.are.equal(1, s.unmounted)
    end)

    it("gives the code the monitor recorded, and restarting while it starts it again", function()
      local s, dir = store_of({ id = "a", status = "running", pid = me, pid_start = -1,
        monitor = true, runner = me, runner_start = state.start_time(me) })
      support.write(dir .. "/exit.json", '{"how":"signal","code":15,"finished":"2026-01-01T00:00:00Z"}')
      local st = state.read(s, "a")
      assert.are.equal("exited", st.status)
      assert.are.equal(143, st.exit_code)
      support.write(dir .. "/exit.json", '{"how":"exit","code":3,"restarting":true}')
      st = state.read(s, "a")
      assert.are.equal("restarting", st.status)
      assert.are.equal(3, st.exit_code)
    end)

    it("keeps it running while a live recorder has not recorded the end yet", function()
      -- the recorder is another process of ours: a shell that sleeps
      local p = io.popen("sleep 30 >/dev/null & echo $!")
      local pid = math.tointeger(tonumber(p:read("l")))
      p:close()
      finally(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)
      local s = store_of({ id = "a", status = "running", pid = me, pid_start = -1,
        monitor = true, runner = pid, runner_start = state.start_time(pid) })
      assert.are.equal("running", state.read(s, "a").status)
    end)

    it("says running when its cgroup holds processes, whatever the file says", function()
      local dir = fake_cgroup({ me })
      local s = store_of({ id = "a", status = "created", cgroups = { pids = dir } })
      assert.are.equal("running", state.read(s, "a").status)
      s = store_of({ id = "a", status = "exited", cgroups = { pids = dir } })
      assert.are.equal("running", state.read(s, "a").status)
    end)

    it("says exited, stale, of a created one whose runner went after making its cgroup", function()
      local s = store_of({ id = "a", status = "created", cgroups = { pids = fake_cgroup({}) },
        runner = me, runner_start = -1 })
      local st = state.read(s, "a")
      assert.are.equal("exited", st.status)
      assert.is_true(st.stale)
    end)

    it("asks the freezer whether it is paused", function()
      local record = { id = "a", status = "running", pid = me, pid_start = state.start_time(me) }
      record.cgroups = { freezer = fake_cgroup({ me }, true) }
      assert.are.equal("paused", state.read(store_of(record), "a").status)
      record.cgroups = { freezer = fake_cgroup({ me }, false) }
      assert.are.equal("running", state.read(store_of(record), "a").status)
    end)
  end)

  it("shows a state as the OCI runtime's state command does", function()
    local st = { id = "abc", status = "running", pid = 42 }
    assert.are.same({ ociVersion = "1.0.2", id = "abc", status = "running", pid = 42,
      bundle = "/b", annotations = {} }, state.oci(st, "/b"))
    assert.are.equal("stopped", state.oci({ id = "abc", status = "exited", pid = 42 }, "/b").status)
    assert.are.equal(0, state.oci({ id = "abc", status = "exited", pid = 42 }, "/b").pid)
    assert.are.equal("created", state.oci({ id = "abc", status = "created" }, "/b").status)
  end)
end)
