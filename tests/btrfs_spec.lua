-- luactr.core.btrfs and core.loop on a real btrfs: a sparse image file,
-- formatted, attached to a loop device and mounted, per test. Each test
-- unmounts in the end, failed or not, and then checks that neither a
-- mount nor a loop device of its image is left.
local support = require "support"
local core = require "luactr.core"

local fs, btrfs, loop, E = core.fs, core.btrfs, core.loop, core.sys.errno
local q = support.q

-- Checks the failure triple: nil, a message starting with `prefix`, errno
-- (any number when `errno` is false).
local function fails(errno, prefix, ok, msg, got)
  assert.is_nil(ok)
  assert.is_string(msg)
  if errno then assert.are.equal(errno, got, msg) else assert.is_number(got) end
  if prefix then assert.are.equal(prefix, msg:sub(1, #prefix)) end
end

-- The mount points under `dir`, deepest first.
local function mounts_under(dir)
  local t = {}
  for _, line in ipairs(support.mounts()) do
    local point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if point and (point == dir or point:sub(1, #dir + 1) == dir .. "/") then t[#t + 1] = point end
  end
  table.sort(t, function(a, b) return #a > #b end)
  return t
end

-- What `losetup -j` says of `img`: the loop devices it backs.
local function loops_of(img)
  local _, out = support.sh("losetup -j " .. q(img))
  return out
end

local write = support.write

-- Makes a btrfs image, attaches and mounts it, runs fn(mnt, dev, img) and
-- always unmounts; then checks that no mount and no loop device of the
-- image remain (autoclear frees the device at the unmount).
local function with_btrfs(fn)
  local dir = support.tmpdir()
  local img, mnt = dir .. "/store.img", dir .. "/mnt"
  assert(fs.mkdir(mnt))
  local st, _, err = support.sh(("truncate -s 256M %s && mkfs.btrfs -q %s"):format(q(img), q(img)))
  assert(st == 0, "mkfs.btrfs: " .. tostring(err))
  local dev, mounted
  local ok, failure = pcall(function()
    dev = assert(loop.attach(img))
    assert(core.mount.mount(dev, mnt, "btrfs", {}))
    mounted = true
    assert.is_true(loop.release(dev))  -- from now on the mount holds it
    fn(mnt, dev, img)
  end)
  -- cleanup: what a failed test left mounted beneath, then the image
  local left = mounts_under(dir)
  for _, point in ipairs(left) do
    if point ~= mnt then core.mount.umount(point, { "detach" }) end
  end
  if mounted then
    local uok, uerr = core.mount.umount(mnt)
    if not uok then core.mount.umount(mnt, { "detach" }) end
    assert(ok == false or uok, uerr)
  elseif dev then
    loop.detach(dev)
  end
  if not ok then error(failure, 0) end
  assert.are.same({}, mounts_under(dir))
  -- autoclear runs at the unmount's last close: give it a moment (a
  -- mount namespace made meanwhile by another run holds a copy a while)
  local t0 = core.sys.monotonic()
  while loops_of(img) ~= "" and core.sys.monotonic() - t0 < 20 do os.execute("sleep 0.05") end
  assert.are.equal("", loops_of(img))
  if dev then assert.is_nil(loop.backing_file(dev)) end
end

-- The paths of all subvolumes of the filesystem at `mnt`, as `btrfs
-- subvolume list` shows them.
local function subvolumes(mnt)
  local st, out, err = support.sh("btrfs subvolume list " .. q(mnt))
  assert(st == 0, err)
  local t = {}
  for _, line in ipairs(support.lines(out)) do t[#t + 1] = line:match(" path (.*)$") end
  table.sort(t)
  return t
end

describe("core.btrfs #root", function()
  it("attaches an image to a loop device backed by it", function()
    with_btrfs(function(mnt, dev, img)
      assert.matches("^/dev/loop%d+$", dev)
      assert.are.equal(img, loop.backing_file(dev))
      assert.matches("^" .. dev:gsub("%p", "%%%0") .. ": ", loops_of(img))
      assert.are.equal("btrfs", fs.statfs(mnt).type)
      assert.is_false(loop.release(dev))  -- released already
    end)
  end)

  it("creates subvolumes and tells them from folders", function()
    with_btrfs(function(mnt)
      assert.is_true(btrfs.create(mnt .. "/sv"))
      assert.are.equal(256, fs.stat(mnt .. "/sv").ino)
      assert(fs.mkdir(mnt .. "/plain"))
      assert.is_true(btrfs.is_subvolume(mnt .. "/sv"))
      assert.is_true(btrfs.is_subvolume(mnt))  -- the top-level subvolume
      assert.is_false(btrfs.is_subvolume(mnt .. "/plain"))
      assert.is_false(btrfs.is_subvolume(support.TOP))  -- not on btrfs
      fails(E.ENOENT, "btrfs is_subvolume " .. mnt .. "/none: ", btrfs.is_subvolume(mnt .. "/none"))
      fails(E.EEXIST, "btrfs create " .. mnt .. "/sv: ", btrfs.create(mnt .. "/sv"))
      assert.are.same({ "plain", "sv" }, (function(t) table.sort(t) return t end)(fs.readdir(mnt)))
      assert.are.same({ "sv" }, subvolumes(mnt))
      assert.is_true(btrfs.sync(mnt))
    end)
  end)

  it("snapshots: a copy that changes apart from its source", function()
    with_btrfs(function(mnt)
      assert(btrfs.create(mnt .. "/a"))
      write(mnt .. "/a/f", "from a")
      assert.is_true(btrfs.snapshot(mnt .. "/a", mnt .. "/b"))
      assert.are.equal("from a", fs.read(mnt .. "/b/f"))
      write(mnt .. "/b/f", "changed in b")
      assert.are.equal("from a", fs.read(mnt .. "/a/f"))
      assert.is_false(btrfs.is_readonly(mnt .. "/b"))
      fails(E.EEXIST, "btrfs snapshot " .. mnt .. "/b: ", btrfs.snapshot(mnt .. "/a", mnt .. "/b"))
      assert(fs.mkdir(mnt .. "/plain"))
      fails(E.EINVAL, nil, btrfs.snapshot(mnt .. "/plain", mnt .. "/c"))
      assert.has_error(function() btrfs.snapshot(mnt .. "/a", mnt .. "/c", { ro = true }) end,
        "btrfs.snapshot: unknown field 'ro'")
    end)
  end)

  it("makes subvolumes read-only and snapshots them writable unless asked", function()
    with_btrfs(function(mnt)
      assert(btrfs.create(mnt .. "/layer"))
      write(mnt .. "/layer/f", "layer")
      assert.is_true(btrfs.set_readonly(mnt .. "/layer", true))
      assert.is_true(btrfs.is_readonly(mnt .. "/layer"))
      local f, msg = io.open(mnt .. "/layer/new", "w")
      assert.is_nil(f)
      assert.matches("Read%-only file system", msg)
      local _, m = btrfs.create(mnt .. "/layer/inner")
      assert.matches(": Read%-only file system$", m)
      -- a snapshot of a read-only subvolume is writable by default
      assert.is_true(btrfs.snapshot(mnt .. "/layer", mnt .. "/rootfs"))
      assert.is_false(btrfs.is_readonly(mnt .. "/rootfs"))
      write(mnt .. "/rootfs/new", "x")
      assert.is_true(btrfs.snapshot(mnt .. "/layer", mnt .. "/layer2", { readonly = true }))
      assert.is_true(btrfs.is_readonly(mnt .. "/layer2"))
      assert.are.equal("layer", fs.read(mnt .. "/layer2/f"))
      assert.is_true(btrfs.set_readonly(mnt .. "/layer", false))
      assert.is_false(btrfs.is_readonly(mnt .. "/layer"))
      write(mnt .. "/layer/new", "now writable")
      assert(fs.mkdir(mnt .. "/plain"))
      fails(E.EINVAL, "btrfs is_readonly " .. mnt .. "/plain: ", btrfs.is_readonly(mnt .. "/plain"))
      assert.has_error(function() btrfs.set_readonly(mnt .. "/layer", "yes") end)
    end)
  end)

  it("deletes subvolumes, nested ones only when recursive", function()
    with_btrfs(function(mnt)
      assert(btrfs.create(mnt .. "/n"))
      assert(btrfs.create(mnt .. "/n/c1"))
      assert(btrfs.create(mnt .. "/n/c1/c2"))
      assert(fs.mkdirs(mnt .. "/n/d"))
      assert(btrfs.create(mnt .. "/n/d/c3"))
      fails(E.ENOTEMPTY, "btrfs delete " .. mnt .. "/n: ", btrfs.delete(mnt .. "/n"))
      assert.is_true(btrfs.delete(mnt .. "/n/c1/c2"))
      assert.is_true(btrfs.delete(mnt .. "/n", { recursive = true }))
      assert.is_nil(fs.lstat(mnt .. "/n"))
      -- read-only, with a subvolume inside: libbtrfsutil alone gives EROFS
      assert(btrfs.create(mnt .. "/ro"))
      assert(btrfs.create(mnt .. "/ro/inner"))
      assert(btrfs.set_readonly(mnt .. "/ro", true))
      assert.is_true(btrfs.delete(mnt .. "/ro", { recursive = true }))
      assert.are.same({}, subvolumes(mnt))
      fails(E.ENOENT, nil, btrfs.delete(mnt .. "/n"))
      assert.has_error(function() btrfs.delete(mnt .. "/x", { force = true }) end,
        "btrfs.delete: unknown field 'force'")
    end)
  end)

  it("counts deleted subvolumes until the cleaner has dropped them, and gives their space back", function()
    with_btrfs(function(mnt)
      assert.are.equal(0, btrfs.deleted(mnt))
      assert(btrfs.create(mnt .. "/sv"))
      local st = support.sh("head -c 64M /dev/urandom > " .. q(mnt .. "/sv/data") .. " && sync")
      assert.are.equal(0, st)
      local function avail() local s = fs.statfs(mnt); return s.bavail * s.bsize end
      local before = avail()
      assert.is_true(btrfs.delete(mnt .. "/sv"))
      -- deleted, not cleaned: the space is still taken
      assert.are.equal(1, btrfs.deleted(mnt))
      assert.is_true(btrfs.sync(mnt))  -- wakes the cleaner
      assert.is_true(support.wait_until(function() return btrfs.deleted(mnt) == 0 end, 20))
      assert.is_true(btrfs.sync(mnt))  -- commits what it freed
      assert.is_true(avail() > before + (48 << 20), ("%d then %d"):format(before, avail()))
      fails(E.ENOENT, "btrfs deleted " .. mnt .. "/none: ", btrfs.deleted(mnt .. "/none"))
    end)
  end)

  it("removes trees holding nested and read-only subvolumes with fs.remove_tree", function()
    with_btrfs(function(mnt)
      assert(btrfs.create(mnt .. "/layer"))
      write(mnt .. "/layer/f", "x")
      assert(btrfs.set_readonly(mnt .. "/layer", true))
      assert(fs.mkdirs(mnt .. "/tree/a/b"))
      write(mnt .. "/tree/a/b/file", "x")
      assert(btrfs.create(mnt .. "/tree/a/sv"))
      assert(btrfs.create(mnt .. "/tree/a/sv/inner"))
      write(mnt .. "/tree/a/sv/inner/file", "x")
      assert(btrfs.snapshot(mnt .. "/layer", mnt .. "/tree/ro", { readonly = true }))
      assert(btrfs.create(mnt .. "/tree/rw"))
      assert(btrfs.create(mnt .. "/tree/rw/nested"))
      assert(btrfs.set_readonly(mnt .. "/tree/rw", true))
      assert.are.same({ "layer", "tree/a/sv", "tree/a/sv/inner", "tree/ro", "tree/rw", "tree/rw/nested" },
        subvolumes(mnt))
      assert.is_true(fs.remove_tree(mnt .. "/tree"))
      assert.is_nil(fs.lstat(mnt .. "/tree"))
      assert.are.same({ "layer" }, subvolumes(mnt))
      -- a subvolume given itself, read-only
      assert.is_true(fs.remove_tree(mnt .. "/layer"))
      assert.are.same({}, subvolumes(mnt))
      -- the filesystem's own root is another mount: refused
      fails(E.EBUSY, "remove " .. mnt .. ": ", fs.remove_tree(mnt))
    end)
  end)

  it("refuses to delete a subvolume with a mount beneath it in fs.remove_tree", function()
    with_btrfs(function(mnt)
      assert(btrfs.create(mnt .. "/sv"))
      assert(btrfs.create(mnt .. "/sv/inner"))
      assert(fs.mkdirs(mnt .. "/sv/inner/m"))
      assert(core.mount.mount("tmpfs", mnt .. "/sv/inner/m", "tmpfs", { "size=1m" }))
      finally(function() core.mount.umount(mnt .. "/sv/inner/m") end)
      write(mnt .. "/sv/inner/m/kept", "other fs")
      fails(E.EBUSY, "remove " .. mnt .. "/sv/inner/m: ", fs.remove_tree(mnt .. "/sv"))
      assert.are.equal("other fs", fs.read(mnt .. "/sv/inner/m/kept"))
      assert.are.same({ "sv", "sv/inner" }, subvolumes(mnt))
    end)
  end)

  it("keeps a device without autoclear until detached", function()
    local dir = support.tmpdir()
    local img = dir .. "/plain.img"
    assert(os.execute("truncate -s 16M " .. q(img)))
    local dev = assert(loop.attach(img, { autoclear = false, readonly = true }))
    finally(function() if loop.backing_file(dev) == img then loop.detach(dev) end end)
    assert.is_false(loop.release(dev))  -- nothing held: it stays anyway
    assert.are.equal(img, loop.backing_file(dev))
    assert.are.equal("1", support.readfile("/sys/block/" .. dev:match("loop%d+") .. "/ro"):match("%d"))
    assert.is_true(loop.detach(dev))
    local t0 = core.sys.monotonic()
    while loop.backing_file(dev) and core.sys.monotonic() - t0 < 20 do os.execute("sleep 0.05") end
    assert.is_nil(loop.backing_file(dev))
    assert.are.equal("", loops_of(img))
    fails(false, "loop detach " .. dev .. ": No such device or address", loop.detach(dev))
  end)

  it("frees an autoclear device that nothing mounts at its release", function()
    local dir = support.tmpdir()
    local img = dir .. "/plain.img"
    assert(os.execute("truncate -s 16M " .. q(img)))
    local dev = assert(loop.attach(img))
    finally(function() if loop.backing_file(dev) == img then loop.detach(dev) end end)
    assert.are.equal(img, loop.backing_file(dev))
    assert.is_true(loop.release(dev))
    assert.is_nil(loop.backing_file(dev))
    assert.are.equal("", loops_of(img))
  end)
end)
