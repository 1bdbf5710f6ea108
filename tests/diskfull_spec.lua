-- A full store during a build, as a user meets it: the step that runs out
-- of space fails with its recipe line and leaves nothing cached, the image
-- is not registered, and once there is room again the step runs again
-- and the image has the whole file. Space that btrfs is still freeing
-- (deleted layers, not yet cleaned) is waited for rather than reported
-- as missing. Each test has a small store of its own (a 200 MiB btrfs
-- image, or a 40 MiB tmpfs for the overlay driver), torn down even when
-- it fails.
local support = require "support"
local core = require "luactr.core"

local fs, btrfs = core.fs, core.btrfs
local q = support.q

local STORE_SIZE = "200m"
local MiB = 1 << 20

-- {====== helpers ======

-- A fresh root of `driver`; with `tmpfs_mib`, its store folder is a
-- tmpfs of that many MiB (the overlay driver's store is full when it
-- is). Torn down when the test ends, passed or failed.
local function new_root(driver, tmpfs_mib)
  local root = support.store_root(driver)
  local frozen
  function root.freeze(path)  -- chattr +i, undone at the end
    support.must("chattr +i " .. q(path))
    frozen = path
  end
  finally(function()
    if frozen then os.execute("chattr -i " .. q(frozen)) end
    root.teardown()  -- unmounts the store, tmpfs or btrfs image
  end)
  if tmpfs_mib then
    support.must("mkdir " .. q(root.path .. "/store"))
    support.must(("mount -t tmpfs -o size=%dm luactr-test %s"):format(tmpfs_mib, q(root.path .. "/store")))
  end
  return root
end

-- `luactr ARGS` against `root` (a new store is STORE_SIZE): status, out, err.
local function luactr(root, args)
  return support.sh(("LUACTR_STORE_SIZE=%s %s %s %s"):format(STORE_SIZE, root.env(), support.LUACTR, args))
end

local function ok(root, args)
  local status, out, err = luactr(root, args)
  assert.are.equal(0, status, ("luactr %s: %s%s"):format(args, out, err))
  return out, err
end

-- A file of `mib` MiB of random data (nothing a filesystem could compress).
local function random_file(path, mib)
  support.must(("head -c %d /dev/urandom > %s"):format(mib * MiB, q(path)))
end

local function sha256(path)
  local _, out = support.sh("sha256sum " .. q(path))
  return out:match("^(%x+)")
end

-- The free space of the store, once btrfs has committed what it freed.
local function avail(root)
  local dir = root.path .. "/store"
  if btrfs.is_subvolume(dir) then assert(btrfs.sync(dir)) end
  local st = assert(fs.statfs(dir))
  return st.bavail * st.bsize
end

-- Fills the store with a file of its own (outside any layer) until only
-- `mib` MiB are left; returns its path.
local function fill_to(root, mib)
  local filler = root.path .. "/store/filler"
  support.must(("fallocate -l %d %s"):format(avail(root) - mib * MiB, q(filler)))
  return filler
end

local function layers(root)
  local t = {}
  for _, name in ipairs(fs.readdir(root.path .. "/store/layers") or {}) do
    if name:match("^%x+$") then t[#t + 1] = name end
  end
  table.sort(t)
  return t
end

-- A recipe in a folder of its own: a busybox image "base" (line 1), and
-- an image for each of `images` ({ name, step }) on it, each on its own
-- lines; returns its path, its folder and the line of each image's step.
-- With `stored`, the images are on the "base" of the store instead, and
-- the recipe has no base.
local function recipe(images, stored)
  local dir = support.tmpdir()
  local lines = stored and {} or {
    'local base = image "base" {',
    '  from = "scratch",',
    '  copy { host = "/bin/busybox", to = "/bin/busybox" },',
    '  run { "/bin/busybox", "--install", "-s", "/bin" },',
    '  env { PATH = "/bin" },',
    '}',
  }
  local at = {}
  for _, image in ipairs(images) do
    lines[#lines + 1] = ('image %q {'):format(image[1])
    lines[#lines + 1] = stored and '  from = "base",' or "  from = base,"
    lines[#lines + 1] = "  " .. image[2] .. ","
    at[image[1]] = #lines
    lines[#lines + 1] = "}"
  end
  local path = dir .. "/recipe.lua"
  support.write(path, table.concat(lines, "\n") .. "\n")
  return path, dir, at
end

-- }======

describe("a build on a full store #root", function()
  for _, driver in ipairs({ "btrfs", "overlay" }) do
    it("fails a copy step that runs out of space with its recipe line, caches nothing of it, "
      .. "and copies the whole file once there is room (" .. driver .. ")", function()
      local root = new_root(driver, driver == "overlay" and 40 or nil)
      local path, dir, at = recipe({ { "big", 'copy { "big.bin", "/big.bin" }' } })
      random_file(dir .. "/big.bin", 48)
      ok(root, "build " .. q(path) .. " base")
      local before = layers(root)
      local filler = driver == "btrfs" and fill_to(root, 24)

      local status, out, err = luactr(root, "build " .. q(path))
      assert.are.equal(125, status, out .. err)
      assert.matches(("%s:%d: COPY big.bin /big.bin: write "):format(path, at.big), err, 1, true)
      assert.matches("/big.bin: No space left on device\n", err, 1, true)
      assert.not_matches("images/", err, 1, true)
      assert.are.same({ "base" }, root.image_names())
      assert.are.same(before, layers(root))

      -- room again: the step runs (it is not CACHED) and copies it all
      if driver == "btrfs" then
        assert(os.remove(filler))
      else
        support.must(("mount -o remount,size=160m %s"):format(q(root.path .. "/store")))
      end
      out, err = ok(root, "build " .. q(path))
      assert.matches("[1/1] COPY big.bin /big.bin\n", err, 1, true)
      assert.not_matches("CACHED", err:match("=> big.*$"), 1, true)
      assert.are.same({ "base", "big" }, root.image_names())
      out = ok(root, "run --rm big sh -c 'wc -c < /big.bin; sha256sum /big.bin'")
      assert.are.equal(tostring(48 * MiB), out:match("^(%d+)"))
      assert.are.equal(sha256(dir .. "/big.bin"), out:match("\n(%x+)"))
    end)
  end

  it("names the image and its recipe line when the image cannot be registered, and registers nothing", function()
    local root = new_root()
    local path = recipe({})
    ok(root, "images")  -- the store, made
    root.freeze(root.path .. "/store/images")
    local status, out, err = luactr(root, "build " .. q(path))
    assert.are.equal(125, status, out .. err)
    assert.matches(("%s:1: image base:latest: write %s/store/images/base:latest.json: "
      .. "Operation not permitted\n"):format(path, root.path), err, 1, true)
    assert.are.same({}, root.image_names())
  end)
end)

describe("a build right after layers were removed from a full store #root", function()
  local COPY = { "copy", 'copy { "big.bin", "/big.bin" }', "COPY big.bin /big.bin" }
  local RUN = { "run", 'run "head -c 50331648 /dev/urandom > /big.bin"',
    "RUN head -c 50331648 /dev/urandom > /big.bin" }

  -- A root whose store holds "base", and "fill" on it, made to leave
  -- `left` MiB; the recipe's "big" image (`case`'s step, 48 MiB) is on
  -- the store's base (`stored`) or on the recipe's own. btrfs's periodic
  -- commit, which would free the space of removed layers at a moment of
  -- its own (every 30 s), is put off (commit=300): only luactr makes it
  -- come sooner.
  -- Returns the root, the recipe's path and the line of the big step.
  local function full_store(case, stored, left)
    local root = new_root()
    local base = recipe({})
    ok(root, "build " .. q(base))
    support.must("mount -o remount,commit=300 " .. q(root.path .. "/store"))
    local path, dir, at = recipe({
      { "fill", 'copy { "fill.bin", "/fill.bin" }' },
      { "big", case[2] },
    }, stored)
    random_file(dir .. "/big.bin", 48)
    random_file(dir .. "/fill.bin", (avail(root) - left * MiB) // MiB)
    ok(root, "build " .. q(path) .. " fill")
    -- committed, as the periodic commit would have done by the time of an rmi
    assert(btrfs.sync(root.path .. "/store"))
    return root, path, at
  end

  -- Builds "big" where it does not fit: it fails, and leaves its work to
  -- be freed too.
  local function too_big(root, path, at, case)
    local status, out, err = luactr(root, "build " .. q(path) .. " big")
    assert.are.equal(case[1] == "copy" and 125 or 1, status, out .. err)
    assert.matches(("%s:%d: %s: "):format(path, at.big, case[3]), err, 1, true)
  end

  local function big_is_whole(root)
    assert.are.same({ "base", "big" }, root.image_names())
    local out = ok(root, "run --rm big wc -c /big.bin")
    assert.are.equal(tostring(48 * MiB), out:match("^%s*(%d+)"))
  end

  local function pattern(text)
    return (text:gsub("%p", "%%%0"))
  end

  for _, case in ipairs({ COPY, RUN }) do
    it("waits for btrfs to free their space before a " .. case[1] .. " step, which succeeds", function()
      local root, path, at = full_store(case, true, 32)
      too_big(root, path, at, case)
      -- the filling image removed, and at once the big one built again
      ok(root, "rmi fill")
      local status, out, err = luactr(root, "build " .. q(path) .. " big")
      assert.are.equal(0, status, out .. err)
      assert.matches(pattern("[1/1] " .. case[3] .. "\n       the store is low on space: waiting for btrfs "
        .. "to free the space of 2 deleted subvolumes\n       done in"), err)
      big_is_whole(root)
    end)
  end

  it("runs a step that ran out of space again once btrfs has freed theirs, and it succeeds", function()
    -- enough room left that the store is not short of space at the start
    local root, path = full_store(COPY, true, 28)
    ok(root, "rmi fill")
    local status, out, err = luactr(root, "build " .. q(path) .. " big")
    assert.are.equal(0, status, out .. err)
    assert.matches(pattern("[1/1] COPY big.bin /big.bin\n       the store is full: waiting for btrfs "
      .. "to free the space of 1 deleted subvolume\n[1/1] COPY big.bin /big.bin (again)\n       done in"), err)
    big_is_whole(root)
  end)

  it("waits for btrfs to free their space wherever the build needs room, and succeeds", function()
    -- here the recipe's base is registered again first, and that needs room
    local root, path, at = full_store(COPY, false, 32)
    too_big(root, path, at, COPY)
    ok(root, "rmi fill")
    local status, out, err = luactr(root, "build " .. q(path) .. " big")
    assert.are.equal(0, status, out .. err)
    assert.matches("[3/3] ENV PATH=/bin\n       the store is low on space: waiting for btrfs", err, 1, true)
    big_is_whole(root)
  end)
end)
