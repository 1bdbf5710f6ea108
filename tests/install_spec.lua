-- Installing luactr: `make install`, `luarocks make` with the rockspec, and
-- the checkout used as it is. An installed luactr must need nothing from
-- the checkout: it is run from / with Lua's own search paths pointing
-- nowhere, so it finds its modules, core.so and the stage only where it was
-- installed.
local support = require "support"

local sh, q = support.sh, support.q

local ROCKSPEC = "rockspec/luactr-scm-1.rockspec"

-- Runs an installed luactr from /, with LUA_PATH and LUA_CPATH leading
-- nowhere: status, stdout, stderr.
local function installed(bin, args)
  return sh(("env -C / LUA_PATH_5_4=%s LUA_CPATH_5_4=%s %s %s"):format(
    q("/nonexistent/?.lua"), q("/nonexistent/?.so"), q(bin), args))
end

local function first_line(path)
  local f = assert(io.open(path))
  local line = f:read("l")
  f:close()
  return line
end

-- The files under dir (a find(1) listing, sorted), or "" when there are none.
local function files_under(dir)
  local _, out = sh(("find %s -type f 2>/dev/null | sort"):format(q(dir)))
  return out
end

-- What the checkout says its version is.
local function checkout_version()
  local status, out, err = sh("bin/luactr version")
  assert(status == 0, err)
  return out
end

local function lua54()
  local _, out = sh("command -v lua5.4")
  return (out:gsub("\n$", ""))
end

-- The top level and rockspec/ of the checkout, to see what a build left.
local function checkout_entries()
  local _, out = sh("ls -A . rockspec")
  return out
end

-- Each way of installing is done once, on first use, into its own tree.
local by_make, by_luarocks

local function install_by_make()
  if not by_make then
    local prefix = support.tmpdir() .. "/prefix"
    local status, out, err = sh(("make install PREFIX=%s"):format(q(prefix)))
    assert(status == 0, "make install failed:\n" .. out .. err)
    by_make = prefix
  end
  return by_make
end

local function install_by_luarocks()
  if not by_luarocks then
    local tmp = support.tmpdir()
    local home, tree = tmp .. "/home", tmp .. "/tree"
    assert(os.execute("mkdir " .. q(home)))
    local before = checkout_entries()
    -- a private HOME (and XDG dirs, no LUAROCKS_CONFIG): no user tree,
    -- config or cache is read or written; --tree keeps off the system's.
    local status, out, err = sh(("env -u LUAROCKS_CONFIG HOME=%s XDG_CONFIG_HOME=%s XDG_CACHE_HOME=%s "
      .. "luarocks --lua-version=5.4 make --deps-mode=none %s --tree %s"):format(
      q(home), q(home .. "/.config"), q(home .. "/.cache"), ROCKSPEC, q(tree)))
    assert(status == 0, "luarocks make failed:\n" .. out .. err)
    assert.are.equal(before, checkout_entries(), "luarocks make left files in the checkout")
    by_luarocks = { tree = tree, home = home }
  end
  return by_luarocks.tree
end

-- The same behaviour, whichever way luactr was installed.
local function behaves_installed(how, install)
  describe("installed by " .. how, function()
    it("prints the version, as the checkout does, from any directory", function()
      local bin = install() .. "/bin/luactr"
      local status, out, err = installed(bin, "version")
      assert.are.equal("", err)
      assert.are.equal(0, status)
      assert.matches("^luactr %d+%.%d+%.%d+\n$", out)
      assert.are.equal(checkout_version(), out)
    end)

    it("starts with lua5.4 named by its absolute path, without env", function()
      local bin = install() .. "/bin/luactr"
      assert.are.equal("#!" .. lua54(), first_line(bin))
      assert.matches("^/", lua54())
    end)

    it("runs a container #root", function()
      local bin = install() .. "/bin/luactr"
      local status, out, err = installed(bin,
        ("run --rootfs %s -- echo hello"):format(q(support.rootfs())))
      assert.are.equal("", err)
      assert.are.equal(0, status)
      assert.are.equal("hello\n", out)
    end)

    it("runs the installed init as PID 1 with --init #root", function()
      local bin = install() .. "/bin/luactr"
      local script = [[echo $$; cat /proc/1/comm; exit 3]]
      local status, out, err = installed(bin,
        ("run --init --rootfs %s -- sh -c %s"):format(q(support.rootfs()), q(script)))
      assert.are.equal("", err)
      assert.are.equal(3, status)  -- the command's status, through init
      assert.are.same({ "2", "init" }, support.lines(out))
    end)
  end)
end

describe("make install", function()
  behaves_installed("make install PREFIX=DIR", install_by_make)

  it("puts the modules, core.so and the stage under PREFIX", function()
    local prefix = install_by_make()
    local files = files_under(prefix)
    for _, f in ipairs {
      "/bin/luactr",
      "/share/lua/5.4/luactr/init.lua",
      "/share/lua/5.4/luactr/cli/init.lua",
      "/lib/lua/5.4/luactr/core.so",
      "/lib/lua/5.4/luactr/stage",
    } do
      assert.truthy(files:find(prefix .. f .. "\n", 1, true), f .. " not installed")
    end
  end)
end)

describe("luarocks make " .. ROCKSPEC, function()
  behaves_installed("luarocks make --tree DIR", install_by_luarocks)

  it("is listed in the tree, and luarocks remove takes it all away", function()
    local tree = install_by_luarocks()
    local home = by_luarocks.home
    local env = ("env -u LUAROCKS_CONFIG HOME=%s XDG_CONFIG_HOME=%s XDG_CACHE_HOME=%s "):format(
      q(home), q(home .. "/.config"), q(home .. "/.cache"))
    local status, out, err = sh(env .. ("luarocks --lua-version=5.4 list --porcelain --tree %s"):format(q(tree)))
    assert.are.equal(0, status, err)
    assert.matches("^luactr\tscm%-1\tinstalled\t", out)
    status, out, err = sh(env .. ("luarocks --lua-version=5.4 remove luactr --tree %s"):format(q(tree)))
    assert.are.equal(0, status, out .. err)
    by_luarocks = nil  -- gone: a later test installs it again
    assert.are.equal("", files_under(tree .. "/bin"))
    assert.are.equal("", files_under(tree .. "/share"))
    assert.are.equal("", files_under(tree .. "/lib/lua"))
  end)
end)

describe("the checkout", function()
  it("gives the Lua layer and the native core with LUA_PATH and LUA_CPATH", function()
    local status, out, err = sh([[LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' ]]
      .. [[lua5.4 -e 'local l = require "luactr"; local c = require "luactr.core"; ]]
      .. [[print(type(l.run), type(c.spawn))']])
    assert.are.equal("", err)
    assert.are.equal(0, status)
    assert.are.equal("function\tfunction\n", out)
  end)
end)
