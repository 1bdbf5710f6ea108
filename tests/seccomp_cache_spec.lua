-- The cache of compiled seccomp filters (src/seccomp.c): a start loads
-- the filter an earlier start compiled, and a cache file that is damaged,
-- forged or writable by others is never used: the profile is compiled
-- again, and the container is filtered all the same.
local support = require "support"
local core = require "luactr.core"
local seccomp = require "luactr.spec.seccomp"
local spec = require "luactr.spec"

local q, fs = support.q, core.fs

-- The files of the cache folder `dir` (not the temporary ones).
local function cache_files(dir)
  local names = {}
  for _, name in ipairs(fs.readdir(dir) or {}) do
    if name:sub(1, 1) ~= "." then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

describe("core.seccomp.compile's cache", function()
  local default = seccomp.resolve(seccomp.DEFAULT, spec.CAPABILITIES)

  it("compiles a profile once, then loads it, and again when its file is damaged", function()
    local dir = support.tmpdir() .. "/run/seccomp"
    local function compile(profile) return core.seccomp.compile(profile, { cache = dir }) end
    local n, filters, cached = compile(default)
    assert.is_false(cached)
    assert.are.equal(1, #cache_files(dir))
    assert.are.same({ n, filters, true }, { compile(default) })
    -- another profile, another file
    local admin = seccomp.resolve(seccomp.DEFAULT, { "CAP_SYS_ADMIN" })
    assert.is_false(select(3, compile(admin)))
    assert.is_true(select(3, compile(admin)))
    assert.are.equal(2, #cache_files(dir))
    assert.are.equal(tonumber("700", 8), fs.stat(dir).mode & tonumber("777", 8))
    -- a truncated file is compiled over, and good again after
    for _, name in ipairs(cache_files(dir)) do
      local path = dir .. "/" .. name
      write(path, support.readfile(path):sub(1, 100))
    end
    assert.are.same({ n, filters, false }, { compile(default) })
    assert.are.same({ n, filters, true }, { compile(default) })
    -- without a folder, nothing is kept, and the folder's file is not read
    assert.is_false(select(3, core.seccomp.compile(default)))
    assert.is_false(select(3, core.seccomp.compile(default, {})))
    assert.is_true(select(3, compile(default)))
  end)

  it("raises on a profile it would raise on without the cache", function()
    local opts = { cache = support.tmpdir() }
    local bad = { defaultAction = "SCMP_ACT_ALLOW",
      syscalls = { { names = { "mkdir" }, action = "SCMP_ACT_SOMETIMES" } } }
    for _ = 1, 2 do
      assert.has_error(function() core.seccomp.compile(bad, opts) end,
        "spawn: linux.seccomp.syscalls[1]: unknown action 'SCMP_ACT_SOMETIMES'")
    end
    bad.syscalls[1] = { names = { "mkdir" }, action = "SCMP_ACT_ERRNO", errnoRet = "x" }
    assert.has_error(function() core.seccomp.compile(bad, opts) end,
      "spawn: linux.seccomp.syscalls[1].errnoRet: expected an integer")
    bad.syscalls[1] = { names = { "mkdir" }, action = "SCMP_ACT_ERRNO", extra = 1 }
    assert.has_error(function() core.seccomp.compile(bad, opts) end,
      "spawn: linux.seccomp.syscalls[1]: unknown field 'extra'")
  end)

  it("takes only an absolute folder, and no other option", function()
    assert.has_error(function() core.seccomp.compile(default, { cache = "run/seccomp" }) end,
      "seccomp cache 'run/seccomp': expected an absolute path")
    assert.has_error(function() core.seccomp.compile(default, { cache = 1 }) end)
    assert.has_error(function() core.seccomp.compile(default, { folder = "/tmp" }) end,
      "seccomp.compile: opts: unknown field 'folder'")
    local spec_of = { process = { args = { "/bin/true" } }, root = { path = "/" },
      linux = { namespaces = { { type = "mount" } }, seccomp = default } }
    assert.has_error(function() core.spawn(spec_of, { seccomp_cache = "run/seccomp" }) end,
      "seccomp cache 'run/seccomp': expected an absolute path")
  end)
end)

describe("the seccomp cache in luactr run #root", function()
  local rootfs = support.probe_rootfs

  local runroot, dir
  before_each(function()
    runroot = support.tmpdir()
    dir = runroot .. "/seccomp"
  end)

  -- keyctl is outside Docker's profile: EPERM, when the filter applies.
  local function assert_filtered(why)
    local st, out, err = support.sh(("LUACTR_RUNROOT=%s %s run --rootfs %s -- probe keyctl")
      :format(q(runroot), support.LUACTR, q(rootfs())))
    assert.are.equal("keyctl: Operation not permitted\n", out, why .. ": " .. err)
    assert.are.equal(1, st, why)
  end

  -- Is the file at `path` `good` again (compiled and kept again)?
  local function assert_rewritten(path, good, why)
    assert.is_true(support.readfile(path) == good, why .. ": the file was not written again")
  end

  -- The one file of the cache: its path and content.
  local function the_file()
    local names = cache_files(dir)
    assert.are.equal(1, #names)
    local path = dir .. "/" .. names[1]
    return path, support.readfile(path)
  end

  it("keeps the filter a start compiles, and the next start loads it", function()
    assert_filtered("compiled")
    local path = the_file()
    local ino = fs.stat(path).ino
    assert_filtered("loaded")
    assert.are.equal(ino, fs.stat(path).ino)  -- read, not written again
    -- it is the default profile's, as the library finds it
    local _, _, cached = core.seccomp.compile(seccomp.resolve(seccomp.DEFAULT, spec.CAPABILITIES),
      { cache = dir })
    assert.is_true(cached)
  end)

  it("keeps the filter of a build step too, which a run of the image then loads", function()
    local root = support.store_root()
    finally(root.teardown)
    local st, _, err = root.luactr("build recipes/hello.lua")  -- a `run` step
    assert.are.equal(0, st, err)
    dir = root.path .. "/run/seccomp"
    local path = the_file()
    local ino = fs.stat(path).ino
    local out
    st, out, err = root.luactr("run --rm busybox echo hi")
    assert.are.equal(0, st, err)
    assert.are.equal("hi\n", out)
    assert.are.equal(ino, fs.stat(path).ino)
    assert.are.equal(1, #cache_files(dir))
  end)

  it("never uses a damaged, forged or foreign file: it compiles again", function()
    assert_filtered("compiled")
    local path, good = the_file()
    -- a filter that allows every call, in a well-formed file whose digest
    -- is not its own (see the file layout in src/seccomp.c)
    local SECCOMP_RET_ALLOW, BPF_RET_K = 0x7fff0000, 0x06
    local allow_all = string.pack("=c8I4I4I2BBI4", good:sub(1, 8), 1, 1,
      BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW) .. good:sub(-32)
    local damages = {
      { "allowing all", allow_all },
      { "truncated", good:sub(1, #good // 2) },
      { "empty", "" },
      { "one bit flipped", good:sub(1, 99) .. string.char(good:byte(100) ~ 1) .. good:sub(101) },
      { "a byte longer", good .. "\0" },
    }
    for _, d in ipairs(damages) do
      write(path, d[2])
      assert_filtered(d[1])
      assert_rewritten(path, good, d[1])
    end
    -- another profile's file under this one's name
    support.must(("LUACTR_RUNROOT=%s %s run --rootfs %s --cap-add SYS_ADMIN -- true")
      :format(q(runroot), support.LUACTR, q(rootfs())))
    local other
    for _, name in ipairs(cache_files(dir)) do
      if dir .. "/" .. name ~= path then other = dir .. "/" .. name end
    end
    assert.is_not_nil(other)
    assert.is_true(fs.rename(other, path))
    assert_filtered("foreign")
    assert_rewritten(path, good, "foreign")
    -- a file, or a folder, that others may write is not trusted
    fs.chmod(path, tonumber("620", 8))
    write(path, allow_all)
    assert_filtered("group-writable file")
    assert_rewritten(path, good, "group-writable file")
    fs.chmod(dir, tonumber("777", 8))
    write(path, allow_all)
    assert_filtered("world-writable folder")
  end)
end)
