-- Bad input gets a clear error and loses nothing (issue 9, items 5, 6 and
-- 13): empty names, references that are not ones, numbers too big,
-- recipes that nest, loop, eat memory or forge their outcome, options
-- refused after something was made, names echoed raw, usage on stdout,
-- and tracebacks shown to a user.
local support = require "support"

local q = support.q

-- Writes a recipe `text` in a folder of its own; returns its path.
local function recipe_file(text)
  local path = support.tmpdir() .. "/recipe.lua"
  support.write(path, text)
  return path
end

-- `luactr ARGS` without a store (what runs before one is opened).
local function luactr(args)
  return support.sh(support.LUACTR .. " " .. args)
end

-- A Lua program run with luactr's modules, after `prefix` (shell words:
-- variables, or a command such as timeout): status, stdout, stderr.
local function lua(script, prefix)
  return support.sh(("%s env LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s lua5.4 -e %s")
    :format(prefix or "", q(support.BUILD .. "/?.so;;"), q(script)))
end

describe("a recipe", function()
  it("that catches a luactr error, changes it and raises it again, fails as the error did", function()
    local path = recipe_file([[
local ok, e = pcall(image, "Bad Name")
e.status = 0
e.message = "all built"
error(e)
]])
    local st, out, err = luactr("build " .. q(path))
    assert.are.equal(125, st)
    assert.are.equal("", out)
    assert.are.equal(("luactr: %s:1: image: expected a name (lowercase letters, digits, '.', '_', '-', "
      .. "'/' and an optional ':tag'), got 'Bad Name'\n"):format(path), err)
  end)

  it("that raises a table of its own fails with 125 at its line", function()
    local path = recipe_file('image "x" { from = "scratch" }\nerror({ status = 0, message = "all built" })\n')
    local st, _, err = luactr("build --dry-run " .. q(path))
    assert.are.equal(125, st)
    assert.are.equal(("luactr: %s:2: error object is a table value\n"):format(path), err)
  end)

  for _, name in ipairs({ "getmetatable", "setmetatable", "rawset", "rawget", "debug", "collectgarbage" }) do
    it("has no " .. name, function()
      local path = recipe_file("local x = " .. name .. "\nimage 'x' { from = 'scratch' }\n")
      local st, _, err = luactr("build --dry-run " .. q(path))
      assert.are.equal(125, st)
      assert.are.equal(("luactr: %s:1: unknown word '%s'\n"):format(path, name), err)
    end)
  end

  it("nested 1000 deep is an error naming the recipe, without a traceback", function()
    local path = recipe_file(("image \"x\" { from = \"scratch\", %s run \"true\" %s }\n")
      :format(("{ "):rep(1000), (" }"):rep(1000)))
    local st, out, err = luactr("build --dry-run " .. q(path))
    assert.are.equal(125, st)
    assert.are.equal("", out)
    assert.are.equal(("luactr: %s: C stack overflow (the recipe nests too deeply)\n"):format(path), err)
  end)

  it("may nest its lists of steps as deep as it builds them", function()
    local path = recipe_file([[
local steps = {}
for i = 1, 300000 do steps = { steps } end
image "x" { from = "scratch", steps, run "true" }
]])
    local st, out, err = luactr("build --dry-run " .. q(path))
    assert.are.equal(0, st, err)
    assert.matches("%[1/1%] RUN true\n", out)
  end)

  it("that uses too much memory stops at its line #rlimit", function()
    local path = recipe_file('local t = {}\nwhile true do t[#t + 1] = ("x"):rep(100000) .. #t end\n')
    -- at most 2 GiB: without the limit it would end out of memory
    local st, _, err = support.sh("ulimit -v 2097152; " .. support.LUACTR .. " build --dry-run " .. q(path))
    assert.are.equal(125, st)
    assert.are.equal(("luactr: %s:2: the recipe uses more than 256 MiB of memory\n"):format(path), err)
  end)

  it("that runs out of memory is said naming the recipe #rlimit", function()
    local path = recipe_file('local t = {}\n\nwhile true do t[#t + 1] = ("x"):rep(100000) .. #t end\n')
    local st, _, err = support.sh("ulimit -v 150000; " .. support.LUACTR .. " build --dry-run " .. q(path))
    assert.are.equal(125, st)
    assert.are.equal(("luactr: %s: not enough memory to evaluate the recipe (last seen at line 3)\n")
      :format(path), err)
  end)

  it("that never ends is stopped at its line, even when it catches the error", function()
    local path = recipe_file([[
image "x" { from = "scratch" }
while true do
  pcall(function() while true do end end)
end
]])
    -- the limit is 10 s; 1 s here, through the CLI's own entry point
    local st, _, err = lua(([[
require("luactr.build.recipe").limits.seconds = 1
os.exit(require("luactr.cli").main({ "build", "--dry-run", %q }))
]]):format(path), "timeout 60")
    assert.are.equal(125, st)
    assert.are.equal(("luactr: %s:3: the recipe has run for more than 1 seconds (a loop that never ends?)\n")
      :format(path), err)
  end)
end)

describe("the command line", function()
  it("says build's usage on stderr with 125 when no recipe is given, on stdout with --help", function()
    local st, out, err = luactr("build")
    assert.are.equal(125, st)
    assert.are.equal("", out)
    assert.are.equal("luactr: build: give a recipe (see 'luactr build --help')\n", err)
    st, out, err = luactr("build --help")
    assert.are.equal(0, st)
    assert.matches("^Usage: luactr build ", out)
    assert.are.equal("", err)
  end)

  it("says its usage on stderr with 125 when no command is given, on stdout with --help", function()
    local st, out, err = luactr("")
    assert.are.equal(125, st)
    assert.are.equal("", out)
    assert.matches("^Usage: luactr COMMAND", err)
    st, out, err = luactr("--help")
    assert.are.equal(0, st)
    assert.matches("^Usage: luactr COMMAND", out)
    assert.are.equal("", err)
  end)

  it("quotes a command or an option it does not know when it has control characters", function()
    local st, _, err = luactr(q("\27[31mred"))
    assert.are.equal(125, st)
    assert.are.equal("luactr: unknown command \"\\x1b[31mred\" (see 'luactr --help')\n", err)
    st, _, err = luactr("ps " .. q("--a\nb"))
    assert.are.equal(125, st)
    assert.are.equal("luactr: ps: unknown option \"--a\\nb\" (see 'luactr ps --help')\n", err)
  end)

  -- A bug: the store fails as no luactr error does.
  local FAILING_STORE = [[
package.loaded["luactr.storage"] = { open = function() local t = nil; return t.x end }
os.exit(require("luactr.cli").main({ "info" }))
]]

  it("says an internal error in one line, without a traceback", function()
    local st, out, err = lua(FAILING_STORE)
    assert.are.equal(125, st)
    assert.are.equal("", out)
    assert.matches("^luactr: internal error: %(command line%):1: attempt to index a nil value %(local 't'%)\n$", err)
  end)

  it("adds the traceback of an internal error when LUACTR_DEBUG is set", function()
    local st, _, err = lua(FAILING_STORE, "LUACTR_DEBUG=1")
    assert.are.equal(125, st)
    assert.matches("^luactr: internal error: %(command line%):1: attempt to index a nil value", err)
    assert.matches("\nstack traceback:\n", err)
  end)
end)

describe("bad input #root", function()
  -- A store with recipes/hello.lua built in it, and the container "keep"
  -- made (exited): no test here leaves a container that runs.
  local function hello_store()
    local root = support.store_root()
    finally(root.teardown)
    local st, _, err = root.luactr("build recipes/hello.lua")
    assert.are.equal(0, st, err)
    st, _, err = root.luactr("run --name keep hello true")
    assert.are.equal(0, st, err)
    return root
  end

  local function containers(root)
    return support.listing("ls " .. q(root.path .. "/store/containers"))
  end

  local function images(root)
    return support.listing("ls " .. q(root.path .. "/store/images"))
  end

  it("an empty or blank container name names no container, for any verb", function()
    local root = hello_store()
    local before = containers(root)
    assert.are.equal(1, #before)
    for _, verb in ipairs({ "rm -f", "rm", "inspect --type container", "logs", "start", "stop",
                            "kill", "wait", "attach", "pause", "top", "stats --no-stream" }) do
      for _, name in ipairs({ "''", "' '" }) do
        local st, _, err = root.luactr(verb .. " " .. name)
        assert.are.equal(125, st, verb .. " " .. name)
        assert.matches("no such container: \"%s?\" %(give a name or an id%)\n$", err)
      end
    end
    local st, _, err = root.luactr("exec '' true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: exec: no such container: \"\" (give a name or an id)\n", err)
    assert.are.same(before, containers(root))
  end)

  it("refuses to tag an image with what is not a reference, and makes nothing", function()
    local root = hello_store()
    local before = images(root)
    for ref, why in pairs({
      ["a/../../../../x"] = "each part of the name is lowercase letters and digits, joined by '.', '_', '__' or '-'",
      ["Hello"] = "the name must be lowercase",
      ["a b"] = "each part of the name is lowercase letters and digits, joined by '.', '_', '__' or '-'",
      ["x:.v"] = "a tag is letters, digits, '_', '.' and '-' (128 at most), not first '.' or '-'",
      [""] = "it is empty",
    }) do
      local st, _, err = root.luactr("tag hello " .. q(ref))
      assert.are.equal(125, st, ref)
      assert.are.equal(("luactr: invalid reference %s: %s\n"):format(
        (ref == "" or ref:find(" ")) and '"' .. ref .. '"' or ref, why), err)
    end
    local st, _, err = root.luactr("tag hello x@sha256:" .. ("a"):rep(64))
    assert.are.equal(125, st)
    assert.matches(": the store names images by name:tag, not by digest\n$", err)
    assert.are.same(before, images(root))
    -- a registry host with a port is a part of a reference
    st, _, err = root.luactr("tag hello localhost:5000/team/app:1.0")
    assert.are.equal(0, st, err)
    local out
    st, out = root.luactr("run --rm localhost:5000/team/app:1.0 echo tagged")
    assert.are.equal(0, st)
    assert.are.equal("tagged\n", out)
  end)

  it("keeps an image named before references were checked: it runs and goes", function()
    local root = hello_store()
    local dir = root.path .. "/store/images/"
    support.must(("cp %s %s"):format(q(dir .. "hello:latest.json"), q(dir .. "Old..Name:v1.json")))
    local st, out = root.luactr("run --rm Old..Name:v1 echo old")
    assert.are.equal(0, st)
    assert.are.equal("old\n", out)
    st, out = root.luactr("rmi Old..Name:v1")
    assert.are.equal(0, st)
    assert.are.equal("Untagged: Old..Name:v1\n", out)
  end)

  it("refuses a uid or gid too big, and never runs as what it wraps to", function()
    for _, user in ipairs({ "99999999999999999999", "4294967296", "0:4294967296", "2147483648" }) do
      local st, out, err = support.run("-u " .. user, "id -u")
      assert.are.equal(125, st, user)
      assert.are.equal("", out)
      assert.are.equal(("luactr: run: user %s: uids and gids must be in range 0-2147483647\n"):format(user), err)
    end
    local st, out = support.run("-u 2147483647", "id -u")
    assert.are.equal(0, st)
    assert.are.equal("2147483647\n", out)
  end)

  it("leaves nothing made by a run -d whose options are refused", function()
    local root = hello_store()
    local before = containers(root)
    for option, why in pairs({
      ["--restart bogus"] = "run: restart: expected no, always, unless-stopped or on-failure[:N], got 'bogus'",
      ["--restart on-failure:x"] = "run: restart: expected no, always, unless-stopped or on-failure[:N], got 'on-failure:x'",
      ["--rm --restart always"] = "run: --restart and --rm do not go together",
      ["--log-opt max-size=x"] = "run: log-opt max-size: bad size 'x'",
      ["--detach-keys ctrl-1"] = "detach keys: expected ctrl-<letter> or one character, got 'ctrl-1'",
    }) do
      local st, out, err = root.luactr("run -d " .. option .. " hello true")
      assert.are.equal(125, st, option)
      assert.are.equal("", out)
      assert.are.equal("luactr: " .. why .. "\n", err)
      assert.are.same(before, containers(root), option)
    end
  end)

  it("quotes names with newlines or escape codes in its messages", function()
    local root = hello_store()
    local st, _, err = root.luactr("run --name " .. q("a\nb") .. " hello true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: run: invalid container name \"a\\nb\"\n", err)
    st, _, err = root.luactr("rm " .. q("\27[31mred"))
    assert.are.equal(125, st)
    assert.are.equal("luactr: no such container: \"\\x1b[31mred\"\n", err)
    st, _, err = root.luactr("rmi " .. q("\27[2J"))
    assert.are.equal(125, st)
    assert.are.equal("luactr: rmi: no such image: \"\\x1b[2J\"\n", err)
    st, _, err = root.luactr("run " .. q("x\ny") .. " true")
    assert.are.equal(125, st)
    assert.are.equal("luactr: run: no such image: \"x\\ny\"\n", err)
  end)

  it("says 'no such image' to a run whose image rmi removed after it was looked up", function()
    local root = hello_store()
    assert.are.equal(0, (root.luactr("rm keep")))
    -- the run's lookup, then rmi, then the run makes its container
    local st, out, err = lua(([[
local store = require("luactr.storage").open()
local img = store:image("hello")
assert(os.execute(%q))
local ok, e = pcall(require("luactr.runtime.containers").create, store,
  { id = require("luactr").new_id(), image = img })
print(ok, e)
]]):format(support.LUACTR .. " rmi hello >/dev/null"), root.env())
    assert.are.equal(0, st, err)
    assert.are.equal("false\tno such image: hello:latest\n", out)
    assert.are.same({}, containers(root))
  end)
end)
