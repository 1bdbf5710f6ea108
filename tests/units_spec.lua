-- What users type for sizes, signals and the like: one grammar each
-- (luactr.units), and the ids and times luactr makes (luactr.ids).
local units = require "luactr.units"
local ids = require "luactr.ids"

describe("luactr.units", function()
  it("reads sizes as Docker does", function()
    assert.are.equal(512 * 1024, units.size("512k"))
    assert.are.equal(64 * 2 ^ 20, units.size("64m"))
    assert.are.equal(64 * 2 ^ 20, units.size("64M"))
    assert.are.equal(64 * 2 ^ 20, units.size("64MiB"))
    assert.are.equal(64 * 2 ^ 20, units.size("64MB"))
    assert.are.equal(64 * 2 ^ 20, units.size("64 m"))
    assert.are.equal(2 ^ 30, units.size("1g"))
    assert.are.equal(1536 * 2 ^ 20, units.size("1.5g"))
    assert.are.equal(1000, units.size("1000"))
    assert.are.equal(4096, units.size(4096))
    local n, err = units.size("64x")
    assert.is_nil(n)
    assert.are.equal("invalid size '64x' (e.g. 512k, 64m, 1g)", err)
    assert.is_nil(units.size({}))
  end)

  it("reads signals by name, with or without SIG, any case, or by number", function()
    for _, v in ipairs({ "KILL", "SIGKILL", "kill", "9", 9 }) do
      assert.are.equal(9, units.signal(v), tostring(v))
    end
    assert.are.equal(15, units.signal("term"))
    assert.is_nil(units.signal("NOPE"))
    assert.is_nil(units.signal(0))
    assert.is_nil(units.signal(65))
    local rtmin = require("luactr.core").sys.signals.RTMIN
    assert.are.equal(rtmin + 3, units.signal("SIGRTMIN+3"))
    assert.is_nil(units.signal("RTMIN-1"))
  end)

  it("names a signal as an image's StopSignal holds it", function()
    assert.are.equal("SIGTERM", units.signal_name("term"))
    assert.are.equal("SIGTERM", units.signal_name(15))
    assert.are.equal("SIGUSR1", units.signal_name("SIGusr1"))
    assert.are.equal("SIGRTMIN+2", units.signal_name("rtmin+2"))
    assert.is_nil(units.signal_name("SIGNOPE"))
  end)
end)

describe("luactr.ids", function()
  it("makes ids of 64 hex digits, never the same twice", function()
    local a, b = ids.new(), ids.new()
    assert.matches("^%x+$", a)
    assert.are.equal(64, #a)
    assert.are_not.equal(a, b)
    assert.matches("^%x%x%x%x%x%x%x%x$", ids.hex(4))
  end)

  it("gives the time as state files hold it, in UTC", function()
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", ids.now())
  end)
end)
