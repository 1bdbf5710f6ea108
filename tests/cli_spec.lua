-- The command line's option parsing and the schema checks behind the
-- Lua API: no root, no kernel.
local cli = require "luactr.cli.flags"
local check = require "luactr.check"
local errors = require "luactr.errors"

local SPEC = {
  env = { short = "e", arg = true, list = true },
  interactive = { short = "i" },
  tty = { short = "t" },
  workdir = { short = "w", arg = true },
  ["read-only"] = { key = "read_only" },
}

local function raised(f)
  local ok, e = pcall(f)
  assert.is_false(ok)
  assert.is_true(errors.is(e), tostring(e))
  return e
end

describe("luactr.cli.flags parse", function()
  it("reads grouped short flags and stops at the first operand", function()
    local o, rest = cli.parse("run", SPEC, { "-it", "image", "-i" })
    assert.are.same({ interactive = true, tty = true }, o)
    assert.are.same({ "image", "-i" }, rest)
  end)

  it("takes values after '=', glued to a short flag, or as the next word", function()
    local o = cli.parse("run", SPEC, { "--env=A=1", "-eB=2", "-e", "C=3", "--workdir", "/x", "x" })
    assert.are.same({ "A=1", "B=2", "C=3" }, o.env)
    assert.are.equal("/x", o.workdir)
  end)

  it("ends options at --", function()
    local o, rest = cli.parse("run", SPEC, { "-t", "--", "-i", "x" })
    assert.are.same({ tty = true }, o)
    assert.are.same({ "-i", "x" }, rest)
  end)

  it("maps an option to its key", function()
    assert.are.same({ read_only = true }, (cli.parse("run", SPEC, { "--read-only" })))
  end)

  it("rejects unknown options, missing values and values on flags with 125", function()
    local e = raised(function() cli.parse("run", SPEC, { "--nope" }) end)
    assert.are.equal(125, e.status)
    assert.matches("unknown option %-%-nope", e.message)
    e = raised(function() cli.parse("run", SPEC, { "-x" }) end)
    assert.matches("unknown option %-x", e.message)
    e = raised(function() cli.parse("run", SPEC, { "--workdir" }) end)
    assert.matches("option %-%-workdir needs a value", e.message)
    e = raised(function() cli.parse("run", SPEC, { "--tty=yes" }) end)
    assert.matches("option %-%-tty takes no value", e.message)
  end)
end)

describe("cli.main", function()
  it("exits 125 for an unknown command, and says so on stderr", function()
    local real, said = io.stderr, {}
    io.stderr = { write = function(self, ...)
      for _, piece in ipairs({ ... }) do said[#said + 1] = piece end
      return self
    end }
    local ok, st = pcall(require("luactr.cli").main, { "frobnicate" })
    io.stderr = real
    assert.is_true(ok, st)
    assert.are.equal(125, st)
    assert.are.equal("luactr: unknown command 'frobnicate' (see 'luactr --help')\n",
      table.concat(said))
  end)
end)

describe("check", function()
  local schema = check.record({
    name = check.string,
    n = check.integer,
    tags = check.array(check.string),
    mode = check.enum("a", "b"),
    env = check.either(check.array(check.string), check.map(check.string)),
  }, { "name" })

  it("accepts a value that fits", function()
    assert.is_nil(schema({ name = "x", n = 3, tags = { "a" }, mode = "b", env = { A = "1" } }, "t"))
    assert.is_nil(schema({ name = "x", env = { "A=1" } }, "t"))
  end)

  it("names the full path of the field that does not fit", function()
    assert.are.equal("t: unknown field 'nmae'", schema({ name = "x", nmae = 1 }, "t"))
    assert.are.equal("t: field 'name' is missing", schema({}, "t"))
    assert.are.equal("t.n: expected integer, got number", schema({ name = "x", n = 1.5 }, "t"))
    assert.are.equal("t.tags[2]: expected string, got integer", schema({ name = "x", tags = { "a", 2 } }, "t"))
    assert.are.equal("t.mode: expected one of a, b, got 'c'", schema({ name = "x", mode = "c" }, "t"))
  end)
end)
