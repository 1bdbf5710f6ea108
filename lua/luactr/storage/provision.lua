-- luactr.storage.provision: finding the store on this host, and making
-- it the first time.
--
--   local root, dir, driver = provision.open{ root = "/var/lib/luactr" }
--
-- ROOT is LUACTR_ROOT (/var/lib/luactr by default); the store is
-- ROOT/store. A new store's driver is LUACTR_DRIVER ("btrfs" or
-- "overlay"), else btrfs when ROOT is on btrfs or the host can keep a
-- btrfs image, else overlay. When ROOT is not on btrfs, the btrfs store
-- is ROOT/store.img, a sparse file formatted btrfs, attached to a loop
-- device (core.loop, autoclear) and mounted at ROOT/store on first use:
-- once per boot, and said once, when the image is made (the one thing
-- luactr does to a host on its own). The store's ROOT/store/driver file
-- is written last: there, it means the store is ready (and mounted).
local core = require "luactr.core"
local errors = require "luactr.errors"
local paths = require "luactr.paths"
local units = require "luactr.units"

local fs, loop, mount = core.fs, core.loop, core.mount

local M = {}

local fail, must = errors.fail, errors.must

-- The drivers a store can be made with (luactr.storage.<name>).
local DRIVERS = { btrfs = true, overlay = true }

local function exists(path)
  return fs.lstat(path) ~= nil
end

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Runs a host command, quietly; raises with its output when it fails.
local function command(argv, what)
  local words = {}
  for i, a in ipairs(argv) do words[i] = sh_quote(a) end
  local p = io.popen(table.concat(words, " ") .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  if not ok then fail("%s: %s", what, (out:gsub("%s+$", ""))) end
  return out
end

-- The full path of a host program: PATH, then the sbin folders that a
-- non-login root shell may lack (mkfs.btrfs lives in /usr/sbin).
local function program(name)
  local path = (os.getenv("PATH") or "") .. ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
  for d in path:gmatch("[^:]+") do
    local st = fs.stat(d .. "/" .. name)
    if st and st.type == "file" and st.mode & 73 ~= 0 then return d .. "/" .. name end
  end
end

-- LUACTR_STORE_SIZE, in the one size grammar (luactr.units).
local function parse_size(s)
  local size = units.size(s)
  if not size or size <= 0 then fail("LUACTR_STORE_SIZE: expected a size like 20g, got '%s'", s) end
  return size
end

-- Can this host keep a btrfs store in an image file? The kernel must have
-- btrfs (built in, loaded, or a module to load at the first mount), and
-- there must be mkfs.btrfs and loop devices.
local function btrfs_usable()
  local kernel = (fs.read("/proc/filesystems") or ""):find("%sbtrfs\n") ~= nil
  if not kernel then
    local release = (fs.read("/proc/sys/kernel/osrelease") or ""):match("%S+")
    kernel = release ~= nil and exists("/lib/modules/" .. release .. "/kernel/fs/btrfs")
  end
  return kernel and exists("/dev/loop-control") and program("mkfs.btrfs") ~= nil
end

-- The driver a ready store was made with | nil.
local function read_driver(dir)
  local text = fs.read(dir .. "/driver")
  local driver = text and text:match("^(%l+)")
  if text and not DRIVERS[driver] then
    fail("%s/driver: unknown driver %s", dir, errors.quote(text:match("[^\n]*")))
  end
  return driver
end

-- A store made before the driver was written down says it by its layers.
local function driver_of_layers(dir)
  for _, key in ipairs(fs.readdir(dir .. "/layers") or {}) do
    if key:match("^%x+$") then
      return core.btrfs.is_subvolume(dir .. "/layers/" .. key) and "btrfs" or "overlay"
    end
  end
end

local function check_driver(wanted, driver, root)
  if wanted and wanted ~= driver then
    fail("LUACTR_DRIVER is %s but the store in %s was made with the %s driver "
      .. "(its layers are only readable by it): unset it, or use another LUACTR_ROOT",
      wanted, root, driver)
  end
end

-- Is something mounted at `dir`, beneath `root`?
local function mounted(root, dir)
  local a, b = fs.stat(root), fs.stat(dir)
  return a ~= nil and b ~= nil and a.dev ~= b.dev
end

-- Makes ROOT/store.img: a sparse file of LUACTR_STORE_SIZE, formatted
-- btrfs under a temporary name and renamed, so a crash never leaves an
-- image that is not a filesystem. Returns the size as it was given.
local function make_image(root, img)
  local size_text = os.getenv("LUACTR_STORE_SIZE") or "20g"
  local size = parse_size(size_text)
  local mkfs = program("mkfs.btrfs")
  if not mkfs then
    fail("%s is not on btrfs and mkfs.btrfs is missing: install btrfs-progs, or set LUACTR_DRIVER=overlay", root)
  end
  local tmp = root .. "/.store.img.tmp"
  local f, err = io.open(tmp, "wb")
  if not f then fail("create %s: %s", tmp, err) end
  local ok
  ok, err = f:seek("set", size - 1)
  if ok then ok, err = f:write("\0") end
  f:close()
  if ok then ok, err = pcall(command, { mkfs, "-q", "-f", tmp }, "mkfs.btrfs " .. tmp) end
  if not ok then
    fs.unlink(tmp)
    if errors.is(err) then error(err, 0) end
    fail("create %s: %s", tmp, err)
  end
  must("rename " .. img, fs.rename(tmp, img))
  return size_text
end

-- Mounts the image at ROOT/store: once per boot. The loop device is
-- attached with autoclear and held by this process only until the mount
-- holds it; it goes when the store is unmounted. A mount that fails lets
-- go of the device at once.
local function mount_image(img, dir)
  must("mkdir " .. dir, fs.mkdirs(dir, 448))
  local dev = must("mount " .. img, loop.attach(img))
  local ok, err = mount.mount(dev, dir, "btrfs", { "noatime" })
  if not ok then
    loop.detach(dev)
    fail("mount %s (%s): %s", img, dev, err)
  end
  loop.release(dev)
end

-- Sets the store up, under ROOT/.lock: mounts (making first, if need be)
-- the image, makes the folders, and writes the driver last. Anything a
-- crash interrupts is done again by the next command.
local function set_up(root, dir, wanted)
  local driver = read_driver(dir)
  if driver then return driver end  -- set up meanwhile by another command
  local img = root .. "/store.img"
  if exists(img) then
    check_driver(wanted, "btrfs", root)
    if not mounted(root, dir) then mount_image(img, dir) end
    driver = "btrfs"
  else
    driver = driver_of_layers(dir)
  end
  if not driver then
    local root_type = must("statfs " .. root, fs.statfs(root)).type
    driver = wanted or ((root_type == "btrfs" or btrfs_usable()) and "btrfs" or "overlay")
    if driver == "btrfs" and root_type ~= "btrfs" then
      local size = make_image(root, img)
      mount_image(img, dir)
      -- said once: it is the one thing luactr does to a host on its own
      io.stderr:write(("luactr: %s is not on btrfs: the store is a btrfs image, %s "
        .. "(sparse, %s; LUACTR_STORE_SIZE sets the size of a new one), mounted at %s\n")
        :format(root, img, size, dir))
    end
  end
  check_driver(wanted, driver, root)
  for _, sub in ipairs({ "", "/layers", "/images", "/containers", "/volumes", "/tmp" }) do
    must("mkdir " .. dir .. sub, fs.mkdirs(dir .. sub, 448))
  end
  must("write " .. dir .. "/driver", fs.write_atomic(dir .. "/driver", driver .. "\n"))
  return driver
end

-- open([{ root=, driver=, existing= }]) -> root, store folder, driver name
-- Finds the store, or makes it (see above); with `existing`, a store
-- that is not there is an error ("no store at ROOT"), not made: for a
-- monitor whose store was removed under it. A store keeps the driver it
-- was made with, and asking for the other one is an error (rather than a
-- store that cannot read its layers).
function M.open(o)
  o = o or {}
  local root = o.root or paths.root()
  local wanted = o.driver or os.getenv("LUACTR_DRIVER")
  if wanted == "" then wanted = nil end
  if wanted and not DRIVERS[wanted] then
    fail("LUACTR_DRIVER: expected btrfs or overlay, got '%s'", wanted)
  end
  if o.existing and not exists(root) then fail("no store at %s", root) end
  must("mkdir " .. root, fs.mkdirs(root, 448))
  root = must("realpath " .. root, fs.realpath(root))
  local dir = root .. "/store"
  -- the common case costs one read: the driver file is in place only
  -- once the store is set up (and, for an image, mounted)
  local driver = read_driver(dir)
  if not driver and o.existing and not exists(root .. "/store.img") then
    fail("no store at %s", root)
  end
  if not driver then
    local lock <close> = must("lock " .. root, fs.lock(root .. "/.lock"))
    driver = set_up(root, dir, wanted)
  end
  check_driver(wanted, driver, root)
  return root, dir, driver
end

return M
