-- luactr.storage: the copy-on-write store of layers, images and containers.
--
--   ROOT/                  LUACTR_ROOT, /var/lib/luactr by default
--     store.img            a sparse btrfs image, when ROOT is not on btrfs
--     .lock                taken while the store is set up (made, mounted)
--     store/               btrfs (the image mounted), or a plain folder
--       driver             "btrfs" or "overlay", written last when the
--                          store is set up: there means ready (mounted)
--       layers/<key>/      one read-only layer per cache key
--       images/<ref>.json  an image: OCI image config + its layer chain
--       containers/<id>/   rootfs/ (a writable snapshot), config.json,
--                          state.json; overlay: diff/, work/ and layer
--                          (the image's top layer, for its mount)
--       tmp/<what>.<pid>.<n>       work in progress, and beside it
--       tmp/<what>.<pid>.<n>.lock  flocked by its owner while it lives
--       .lock              taken for every change of images/ and layers/
--       .reserve.<n>       a few MiB kept for state when the store is full
--       .layers.lock       shared while layers are built on, taken
--                          alone to prune them
--
-- Two drivers share this layout. btrfs: a layer is a read-only subvolume,
-- a build step runs in a writable snapshot of its parent, made read-only
-- and renamed into layers/ when it succeeds; a container's rootfs is a
-- writable snapshot of its image's top layer (O(1) in the image's size).
-- overlay: a layer is the diff folder of one step; a step or a container
-- runs on an overlay mount of the chain. A store keeps the driver it was
-- made with: the two kinds of layers cannot be read by the other driver.
--
-- Every change is made in tmp/ and published by one rename, so a crash
-- leaves the old state or the new one; tmp/ leftovers are cleaned by the
-- next command that opens the store.
local check = require "luactr.check"
local core = require "luactr.core"
local errors = require "luactr.errors"
local json = require "luactr.json"
local reference = require "luactr.image.reference"

local fs, btrfs, mount = core.fs, core.btrfs, core.mount
local E = core.sys.errno

local M = {}

local Store = {}
Store.__index = Store

-- fs.write_atomic without fsync: for state that a restart recomputes
local NOSYNC = { sync = false }

local fail, must = errors.fail, errors.must

local function exists(path)
  return fs.lstat(path) ~= nil
end

local function warn(fmt, ...)
  io.stderr:write("luactr: ", fmt:format(...), "\n")
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

local function parse_size(s)
  local n, unit = tostring(s):lower():match("^(%d+)([kmgt]?)b?$")
  if not n or tonumber(n) == 0 then
    fail("LUACTR_STORE_SIZE: expected a size like 20g, got '%s'", s)
  end
  local mult = { [""] = 1, k = 1 << 10, m = 1 << 20, g = 1 << 30, t = 1 << 40 }
  local size = tonumber(n) * mult[unit]
  if math.type(size) ~= "integer" or size < 0 then fail("LUACTR_STORE_SIZE: '%s' is too big", s) end
  return size
end

-- Writes a file into work not yet published: the folder's rename makes
-- it appear whole, so a plain write will do (no temp file, no fsync).
local function write_new(path, text)
  local f, err = io.open(path, "wb")
  if not f then fail("write %s", err) end
  local ok, werr = f:write(text)
  local closed, cerr = f:close()
  if not ok or not closed then fail("write %s: %s", path, werr or cerr) end
end

local function now_iso()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- {====== a reserve of space for state ======
--
-- A container that fills the store must still have its end recorded, and
-- ps, stop and rm must still work on a full store (so that the user can
-- free space). On a full btrfs even a file of a few bytes cannot be
-- written (folders, renames and deletions still work), so the store keeps
-- a reserve: SLICES files .reserve.N of SLICE bytes of written data (not
-- sparse). A record write that finds no space left deletes the last slice
-- and tries again: one slice is hundreds of state writes, and the others
-- are left for the next fill, before the space freed by rm comes back (a
-- deleted btrfs subvolume is freed by its cleaner, later). A command that
-- opens a store without its last slice makes the missing ones again, once
-- there is room for them (statfs first: a full store costs one call).

local SLICES, SLICE = 4, 1 << 20

local function slice(dir, i)
  return ("%s/.reserve.%d"):format(dir, i)
end

-- Random bytes, so that a compressing filesystem cannot shrink them.
local function make_reserve(dir)
  for i = 0, SLICES - 1 do
    if not exists(slice(dir, i)) then
      local st = fs.statfs(dir)
      if not st or st.bavail * st.bsize < 8 * SLICE then return end
      local f = io.open("/dev/urandom", "rb")
      local data = f and f:read(SLICE)
      if f then f:close() end
      if not (data and fs.write_atomic(slice(dir, i), data, 384, NOSYNC)) then return end
    end
  end
end

-- Frees the last slice of the reserve; false when none is left.
local function draw_on_reserve(dir)
  for i = SLICES - 1, 0, -1 do
    if fs.unlink(slice(dir, i)) then return true end
  end
  return false
end

-- Store:write_record(what, path, text): writes a small file of the
-- store's own records (a state, an exit, the stopping marker) atomically,
-- unsynced (see write_state), drawing on the reserve when the store is
-- full. Raises "what: why" when it cannot.
function Store:write_record(what, path, text)
  local ok, err, errno = fs.write_atomic(path, text, 420, NOSYNC)
  while not ok and (errno == E.ENOSPC or errno == E.EDQUOT) and draw_on_reserve(self.dir) do
    ok, err, errno = fs.write_atomic(path, text, 420, NOSYNC)
  end
  must(what, ok, err)
end

-- }======

-- {====== opening ======

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
  return text and text:match("^(%l+)")
end

-- A store made before the driver was written down says it by its layers.
local function driver_of_layers(dir)
  for _, key in ipairs(fs.readdir(dir .. "/layers") or {}) do
    if key:match("^%x+$") then
      return btrfs.is_subvolume(dir .. "/layers/" .. key) and "btrfs" or "overlay"
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

-- Loop-mounts the image at ROOT/store: once per boot. The loop device is
-- made with autoclear by mount(8): it goes when the store is unmounted.
local function mount_image(root, img, dir)
  must("mkdir " .. dir, fs.mkdirs(dir, 448))
  command({ program("mount") or "mount", "-o", "loop,noatime", img, dir }, "mount " .. img)
  local st = fs.statfs(dir)
  if not st or st.type ~= "btrfs" then fail("mount %s: %s is not btrfs", img, dir) end
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
    if not mounted(root, dir) then mount_image(root, img, dir) end
    driver = "btrfs"
  else
    driver = driver_of_layers(dir)
  end
  if not driver then
    local root_type = must("statfs " .. root, fs.statfs(root)).type
    driver = wanted or ((root_type == "btrfs" or btrfs_usable()) and "btrfs" or "overlay")
    if driver == "btrfs" and root_type ~= "btrfs" then
      local size = make_image(root, img)
      mount_image(root, img, dir)
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

-- open([{ root=, driver= }]) -> store
-- Finds or makes the store. A new store's driver is LUACTR_DRIVER
-- ("btrfs" or "overlay"), else btrfs when the host has it, else overlay;
-- a store keeps the driver it was made with, and asking for the other
-- one is an error (rather than a store that cannot read its layers).
function M.open(o)
  o = o or {}
  local root = o.root or os.getenv("LUACTR_ROOT") or "/var/lib/luactr"
  local wanted = o.driver or os.getenv("LUACTR_DRIVER")
  if wanted == "" then wanted = nil end
  if wanted and wanted ~= "btrfs" and wanted ~= "overlay" then
    fail("LUACTR_DRIVER: expected btrfs or overlay, got '%s'", wanted)
  end
  must("mkdir " .. root, fs.mkdirs(root, 448))
  root = must("realpath " .. root, fs.realpath(root))
  local dir = root .. "/store"
  -- the common case costs one read: the driver file is in place only
  -- once the store is set up (and, for an image, mounted)
  local driver = read_driver(dir)
  if not driver then
    local lock <close> = must("lock " .. root, fs.lock(root .. "/.lock"))
    driver = set_up(root, dir, wanted)
  end
  check_driver(wanted, driver, root)
  if not exists(slice(dir, SLICES - 1)) then make_reserve(dir) end
  local s = setmetatable({ root = root, dir = dir, driver = driver }, Store)
  s:clean()
  return s
end

-- }======

-- {====== locks ======

-- The store locks this process holds, by store folder, and how many
-- times: a flock belongs to an open file, so taking it again through
-- another file would wait for ourselves forever.
local held = {}

-- lock() -> handle: the store's lock for a change of images/ or layers/
-- (released with <close> or :unlock()). Taking it again while held in
-- this process is fine: it counts.
function Store:lock()
  local dir = self.dir
  local h = held[dir]
  if not h then
    h = { lock = must("lock " .. dir, fs.lock(dir .. "/.lock")), n = 0 }
    held[dir] = h
  end
  h.n = h.n + 1
  local open = true
  local function unlock()
    if open then
      open = false
      h.n = h.n - 1
      if h.n == 0 then
        h.lock:unlock()
        held[dir] = nil
      end
    end
    return true
  end
  return setmetatable({ unlock = unlock }, { __close = unlock, __gc = unlock })
end

-- hold_layers() -> lock: a shared hold on the layers while something is
-- built on them (a build: from its first cache lookup until its images
-- are registered). No layer is pruned while any hold lives; a prune then
-- leaves its work to the next one. Released with <close> or :unlock().
function Store:hold_layers()
  local path = self.dir .. "/.layers.lock"
  return must("lock " .. path, fs.lock(path, { shared = true }))
end

-- }======

-- {====== work in tmp/ and its leftovers ======
--
-- Each piece of work in tmp/ has a lock file beside it, flocked by its
-- owner from before the work exists until after it is gone. A flock dies
-- with its process however it dies, so "can I take its lock?" tells a
-- leftover from live work exactly: no pid that may be reused, no pid of
-- another namespace, nothing that survives a reboot. Names are never
-- reused (pid, a random token, a counter), so a lock file removed by a
-- cleaner is never mistaken for a new one of the same name.

local token, serial = nil, 0

local function fresh_name(what)
  if not token then
    local f = assert(io.open("/dev/urandom", "rb"))
    token = f:read(4):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
    f:close()
  end
  serial = serial + 1
  return ("%s.%d.%s%d"):format(what, core.sys.getpid(), token, serial)
end

-- A lock file without its work is left alone this long: its owner may be
-- between making the file and locking it.
local LONE_LOCK_AGE = 60

-- new_work(store, what) -> path, lock: a fresh path in tmp/ (not made
-- yet) and the lock that marks it live. End it with release(path, lock).
local function new_work(self, what)
  local path = self.dir .. "/tmp/" .. fresh_name(what)
  return path, must("lock " .. path, fs.lock(path .. ".lock"))
end

-- The lock file goes first, while still held, then the lock.
local function release(path, lock)
  fs.unlink(path .. ".lock")
  lock:unlock()
end

-- Runs fn(path) on fresh work `what`; whatever fn leaves at `path` is
-- discarded when it fails. Returns what fn returns.
local function with_work(self, what, fn)
  local path, lock = new_work(self, what)
  local ok, a, b = pcall(fn, path)
  if not ok then pcall(self.discard, self, path) end
  release(path, lock)
  if not ok then error(a, 0) end
  return a, b
end

-- Removes what a killed fs.write_atomic left in `folder`: its temp files
-- ".<name>.tmp-<pid>-<n>" whose pid is gone. A reused pid only delays
-- that; the file it was to replace was never touched.
local function clean_partial_writes(folder)
  for _, name in ipairs(fs.readdir(folder) or {}) do
    local pid = name:match("^%..*%.tmp%-(%d+)%-%d+$")
    if pid and not exists("/proc/" .. pid) then fs.unlink(folder .. "/" .. name) end
  end
end

-- Removes what dead processes left in tmp/ (snapshots, overlay mounts,
-- half-written folders) and half-written state files. Cheap when there
-- is nothing: a few readdirs. A leftover that cannot be removed now (a
-- container still running in it) is said and left for the next time.
function Store:clean()
  local tmp = self.dir .. "/tmp"
  for _, name in ipairs(fs.readdir(tmp) or {}) do
    local path = tmp .. "/" .. name
    local work = name:match("^(.*)%.lock$")
    if not work then
      local lock = fs.lock(path .. ".lock", { wait = false })
      if lock then  -- its owner is gone
        local ok, err = pcall(self.discard, self, path)
        if not ok then warn("left over from a killed command, not removed yet: %s", tostring(err)) end
        release(path, lock)
      end
    elseif not exists(tmp .. "/" .. work) then
      local st = fs.lstat(path)
      if st and os.time() - st.mtime > LONE_LOCK_AGE then
        local lock = fs.lock(path, { wait = false })
        if lock then release(tmp .. "/" .. work, lock) end
      end
    end
  end
  clean_partial_writes(self.dir)
  clean_partial_writes(self.dir .. "/images")
end

-- Removes a piece of work, a pruned layer or a removed container:
-- unmounts the overlay mounts it holds, then deletes it. Only the mount
-- points this file makes are unmounted, and links are not followed:
-- inside a btrfs layer the names are the image's ("rootfs" there may be
-- a link to "/"). A missing path is fine.
function Store:discard(path)
  if btrfs.is_subvolume(path) then
    must("delete " .. path, btrfs.delete(path, { recursive = true }))
    return
  end
  for _, sub in ipairs({ "/merged", "/rootfs" }) do
    -- mounts may be stacked: unmount until nothing is left
    for _ = 1, 8 do
      if not mount.umount(path .. sub, { "detach", "nofollow" }) then break end
    end
  end
  must("remove " .. path, fs.remove_tree(path))
end

-- }======

-- {====== layers ======

function Store:layer_path(key)
  return self.dir .. "/layers/" .. key
end

function Store:has_layer(key)
  return exists(self:layer_path(key))
end

-- The overlay driver's lower chain of a layer: its diff and its parents'.
function Store:chain(key)
  local list = {}
  while key do
    local path = self:layer_path(key)
    list[#list + 1] = path .. "/diff"
    local parent = fs.read(path .. "/parent")
    key = parent and parent:match("%x+")
  end
  return list
end

local function overlay_mount(lower, upper, work, target)
  must("mkdir " .. target, fs.mkdirs(target, 493))
  local data = ("lowerdir=%s,upperdir=%s,workdir=%s"):format(table.concat(lower, ":"), upper, work)
  must("mount overlay " .. target, mount.mount("overlay", target, "overlay", { data }))
end

function Store:empty_dir()
  local dir = self.dir .. "/layers/.empty"
  if not exists(dir) then must("mkdir " .. dir, fs.mkdirs(dir, 493)) end
  return dir
end

local Work = {}
Work.__index = Work

-- begin_layer(parent_key, key) -> work { path = the root to change }
-- Then work:commit() publishes it as layer `key`, work:abort() drops it;
-- either ends the work. While it lives, no layer is pruned.
function Store:begin_layer(parent, key)
  local hold = self:hold_layers()
  local made, tmp, lock = pcall(new_work, self, "layer-" .. key)
  if not made then
    hold:unlock()
    error(tmp, 0)
  end
  local work = setmetatable({ store = self, tmp = tmp, key = key, parent = parent,
    lock = lock, hold = hold }, Work)
  local ok, err = pcall(function()
    if self.driver == "btrfs" then
      if parent then
        must("snapshot " .. parent, btrfs.snapshot(self:layer_path(parent), tmp))
      else
        must("create " .. tmp, btrfs.create(tmp))
        must("chmod " .. tmp, fs.chmod(tmp, 493))
      end
      work.path = tmp
    else
      must("mkdir " .. tmp, fs.mkdirs(tmp .. "/diff", 493))
      must("mkdir " .. tmp, fs.mkdirs(tmp .. "/work", 448))
      local lower = parent and self:chain(parent) or { self:empty_dir() }
      overlay_mount(lower, tmp .. "/diff", tmp .. "/work", tmp .. "/merged")
      work.path = tmp .. "/merged"
    end
  end)
  if not ok then
    work:abort()
    error(err, 0)
  end
  return work
end

-- Ends the work: its lock file and lock, then the hold on the layers.
function Work:finish()
  if not self.done then
    self.done = true
    release(self.tmp, self.lock)
    self.hold:unlock()
  end
end

function Work:abort()
  if self.done then return end
  local ok, err = pcall(self.store.discard, self.store, self.tmp)
  self:finish()
  if not ok then error(err, 0) end
end

-- Publishes the work as layer `key`: one rename into layers/. When
-- another build published the same key meanwhile, theirs is as good and
-- ours is dropped (noreplace: a layer is never replaced under a reader).
-- A failure drops the work too: the step is simply not cached.
function Work:commit()
  if self.done then fail("layer %s: work already ended", self.key) end
  local store = self.store
  local ok, err = pcall(function()
    if store.driver == "overlay" then
      must("umount " .. self.path, mount.umount(self.path, { "nofollow" }))
      must("remove " .. self.tmp, fs.remove_tree(self.tmp .. "/merged"))
      must("remove " .. self.tmp, fs.remove_tree(self.tmp .. "/work"))
      if self.parent then
        write_new(self.tmp .. "/parent", self.parent .. "\n")
      end
    end
    local done, why, errno = fs.rename(self.tmp, store:layer_path(self.key), { noreplace = true })
    if not done then
      if errno == E.EEXIST or errno == E.ENOTEMPTY then
        store:discard(self.tmp)
        return
      end
      fail("publish layer %s: %s", self.key, why)
    end
    -- read-only once in place (btrfs does not move a read-only subvolume
    -- to another folder: EROFS); a crash just before leaves a complete
    -- layer, only still writable. When it fails (a full disk), the layer
    -- is taken back out, to be dropped with the work: a step whose commit
    -- failed is not cached.
    if store.driver == "btrfs" then
      local layer = store:layer_path(self.key)
      local ro, why = btrfs.set_readonly(layer, true)
      if not ro then
        if not fs.rename(layer, self.tmp) then pcall(store.discard, store, layer) end
        fail("readonly layer %s: %s", self.key, why)
      end
    end
  end)
  if not ok then pcall(store.discard, store, self.tmp) end
  self:finish()
  if not ok then error(err, 0) end
end

-- The layers a container's root is made of, for the overlay driver: its
-- image's top layer and that layer's parents (a btrfs snapshot needs
-- nothing once made).
local function container_layers(self, used)
  if self.driver ~= "overlay" then return end
  for _, id in ipairs(self:containers()) do
    local top = fs.read(self:container_dir(id) .. "/layer")
    local key = top and top:match("%x+")
    while key and not used[key] do
      used[key] = true
      local parent = fs.read(self:layer_path(key) .. "/parent")
      key = parent and parent:match("%x+")
    end
  end
end

-- prune_layers() -> number removed: removes the layers that no image
-- (and, overlay, no container) uses. Under the store lock, so that an
-- image is never registered on a layer being pruned (put_image checks
-- its layers under the same lock); and only when no build holds the
-- layers (hold_layers): a build's layers belong to no image yet. When
-- one does, nothing is pruned now: the next prune does it.
function Store:prune_layers()
  local lock <close> = self:lock()
  local alone <close> = fs.lock(self.dir .. "/.layers.lock", { wait = false })
  if not alone then return 0 end
  local used = {}
  for _, img in ipairs(self:images()) do
    for _, key in ipairs(img.luactr and img.luactr.layers or {}) do used[key] = true end
  end
  container_layers(self, used)
  local removed = 0
  for _, key in ipairs(fs.readdir(self.dir .. "/layers") or {}) do
    if key:match("^%x+$") and not used[key] then
      with_work(self, "prune-" .. key, function(tmp)
        -- moved out first, so a crash halfway leaves no half layer in
        -- layers/; writable first, since btrfs does not move a read-only one
        if self.driver == "btrfs" then btrfs.set_readonly(self:layer_path(key), false) end
        must("remove layer " .. key, fs.rename(self:layer_path(key), tmp))
        self:discard(tmp)
      end)
      removed = removed + 1
    end
  end
  return removed
end

-- }======

-- {====== space ======
--
-- btrfs gives a deleted subvolume's space back late: its cleaner drops it
-- at the next periodic commit (30 s), and the freed extents are usable
-- once that is committed too. Right after an rmi or a failed step, a full
-- store is therefore fuller than it will be in a moment.

-- Below this much free space the store counts as full: btrfs's statfs
-- says 0 when data or metadata is exhausted, a few MiB is what a step
-- that ran out of space leaves.
local NEARLY_FULL = 16 << 20

-- freeable([share=0]) -> n: when the store is (nearly) full, or has less
-- than `share` of its size free, how many deleted subvolumes btrfs has
-- yet to give the space of back; 0 otherwise (and always with the
-- overlay driver, which frees space as it deletes). A statfs, and only
-- on a store short of space the search for deleted subvolumes.
function Store:freeable(share)
  if self.driver ~= "btrfs" then return 0 end
  local st = fs.statfs(self.dir)
  if not st then return 0 end
  local free, low = st.bavail * st.bsize, math.max(NEARLY_FULL, st.blocks * st.bsize * (share or 0))
  if free >= low then return 0 end
  return btrfs.deleted(self.dir) or 0
end

-- reclaim([timeout=60]) -> true | false: makes btrfs give back the space
-- of the deleted subvolumes now: a commit wakes its cleaner, which drops
-- them, and a commit once they are gone frees their extents. False when
-- some are still there after `timeout` seconds.
function Store:reclaim(timeout)
  local clock = core.sys.monotonic
  local deadline, nudge = clock() + (timeout or 60), 0
  while (btrfs.deleted(self.dir) or 0) > 0 do
    if clock() > deadline then return false end
    if clock() >= nudge then
      btrfs.sync(self.dir)
      nudge = clock() + 1
    end
    core.sys.sleep(0.02)
  end
  btrfs.sync(self.dir)
  return true
end

-- }======

-- {====== images ======

-- Splits a reference "name[:tag]" into its parts (Docker's grammar, see
-- luactr.image.reference); the tag defaults to "latest". Raises when it is no
-- valid reference, or has a digest (the store keeps images by name:tag).
function M.parse_ref(ref)
  local r, why = reference.parse(ref)
  if not r then fail("invalid reference %s: %s", errors.quote(ref), why) end
  if r.digest then
    fail("%s: the store names images by name:tag, not by digest", errors.quote(ref))
  end
  return r.name, r.tag or "latest"
end

-- What an older luactr let `tag` make (uppercase, "a..b", ...): such an
-- image can still be looked up, run and removed, but none is made now.
local function old_name(ref)
  local name, tag = ref:match("^(.-):([%w][%w_.%-]*)$")
  if not name then name, tag = ref, "latest" end
  if name:match("^[%w][%w_.%-/]*$") then return name, tag end
end

local function image_file(self, name, tag)
  return ("%s/images/%s:%s.json"):format(self.dir, name:gsub("/", "%%2F"), tag)
end

-- ref_file(ref, [lookup]) -> path, full name; raises when `ref` is no
-- valid reference. A lookup raises not: it finds the image of an old
-- name (old_name) that is there, and else nothing (nil) by a digest or a
-- reference that is not one.
local function ref_file(self, ref, lookup)
  local r = reference.parse(ref)
  local name, tag
  if r and not r.digest or not lookup then
    name, tag = M.parse_ref(ref)  -- raises when it is no reference
  elseif not r and type(ref) == "string" then
    name, tag = old_name(ref)
    if name and not exists(image_file(self, name, tag)) then name = nil end
  end
  if not name then return nil end
  return image_file(self, name, tag), name .. ":" .. tag
end

-- What an image's json may hold: the fields of an OCI image config that
-- luactr reads, with their types (other fields are let through), and its
-- own (luactr.layers: the keys of its layers, which name folders).
local strings = check.array(check.string)
local layer_key = check.satisfies(function(v) return type(v) == "string" and v:match("^%x+$") end,
  "a layer key")
local image_record = check.open_record({
  created = check.string, architecture = check.string, os = check.string,
  config = check.open_record({
    Cmd = strings, Entrypoint = strings, Env = strings, WorkingDir = check.string,
    User = check.string, StopSignal = check.string, Labels = check.map(check.string),
    ExposedPorts = check.map(check.table), Volumes = check.map(check.table),
  }),
  rootfs = check.open_record({ type = check.string, diff_ids = strings }),
  history = check.array(check.open_record({ created_by = check.string,
    created = check.string, empty_layer = check.boolean })),
  luactr = check.open_record({ layers = check.array(layer_key), top = layer_key,
    chain = check.string }),
})

-- The image in file `path` (ref `full`): its config (with .id and .ref),
-- a damaged entry { ref=, id=, damaged = why } when the file does not
-- hold one, or nil when there is no file.
local function read_image(path, full)
  local text, err, errno = fs.read(path)
  if not text then
    if errno == E.ENOENT then return nil end
    return { ref = full, id = core.digest.sha256(full), damaged = err }
  end
  local img, why = json.decode(text)
  if text == "" then why = "the file is empty" end
  if img ~= nil then
    -- an array and null decode to tables too, with a metatable of json's
    why = type(img) == "table" and getmetatable(img) ~= nil and "image: expected an object"
      or image_record(img, "image")
  end
  if why then return { ref = full, id = core.digest.sha256(text), damaged = why } end
  img.id = core.digest.sha256(text)
  img.ref = full
  return img
end

-- image_entry(ref) -> the image (as image gives it), a damaged entry
-- (see read_image: images lists it, rmi removes it), or nil.
function Store:image_entry(ref)
  local path, full = ref_file(self, ref, true)
  local img = path and read_image(path, full)
  -- a unique prefix of an image id names it too
  if not img and type(ref) == "string" and ref:match("^%x+$") and #ref >= 4 then
    for _, entry in ipairs(self:images()) do
      if entry.id:sub(1, #ref) == ref then
        if img and img.id ~= entry.id then fail("image id prefix %s is ambiguous", errors.quote(ref)) end
        img = entry
      end
    end
  end
  return img
end

-- image(ref) -> the image's config table (with .id and .ref) | nil, and
-- then why when its file is damaged.
function Store:image(ref)
  local img = self:image_entry(ref)
  if img and img.damaged then
    return nil, ("image %s is damaged (%s): remove it with rmi, or build it again"):format(
      img.ref, img.damaged)
  end
  return img
end

-- put_image(ref, config) -> id. Written atomically, under the store lock,
-- and only when every layer of the image is in the store: a layer pruned
-- while the image was built would make an image that cannot run.
function Store:put_image(ref, config)
  local path, full = ref_file(self, ref)
  local text = json.encode(config)
  local lock <close> = self:lock()
  for _, key in ipairs(config.luactr and config.luactr.layers or {}) do
    if not self:has_layer(key) then
      fail("image %s: its layer %s was removed meanwhile (rmi?): build it again", full, key:sub(1, 12))
    end
  end
  must("image " .. full, fs.write_atomic(path, text))
  return core.digest.sha256(text)
end

function Store:remove_image(ref)
  local path, full = ref_file(self, ref, true)
  if not path then fail("no such image: %s", errors.quote(ref)) end
  local ok, err, errno = fs.unlink(path)
  if not ok then
    if errno == E.ENOENT then fail("no such image: %s", errors.quote(ref)) end
    fail("remove %s: %s", full, err)
  end
end

-- images() -> list of image configs (with .id and .ref), and of damaged
-- entries (see read_image), sorted by ref.
function Store:images()
  local list = {}
  for _, file in ipairs(fs.readdir(self.dir .. "/images") or {}) do
    local ref = file:match("^(.*)%.json$")
    if ref and file:sub(1, 1) ~= "." then
      ref = ref:gsub("%%2F", "/")
      local path, full = ref_file(self, ref, true)
      local img = path and read_image(path, full)
      if img then list[#list + 1] = img end
    end
  end
  table.sort(list, function(a, b) return a.ref < b.ref end)
  return list
end

-- }======

-- {====== containers ======

function Store:container_dir(id)
  return self.dir .. "/containers/" .. id
end

-- new_container(id, top, [state]) -> path: the writable root of container
-- `id`, a snapshot (btrfs) or an overlay mount (overlay) of layer `top`
-- (nil for an image with no layer). Made in tmp/ with its state.json
-- (`state`, else a bare "created" one) and renamed in: a crash halfway
-- leaves no container, and no container without a state.
function Store:new_container(id, top, state)
  local hold <close> = self:hold_layers()  -- the chain must stay (overlay)
  local dir = self:container_dir(id)
  with_work(self, "container-" .. id, function(tmp)
    must("mkdir " .. tmp, fs.mkdirs(tmp, 448))
    if self.driver == "btrfs" then
      if top then
        must("snapshot " .. top, btrfs.snapshot(self:layer_path(top), tmp .. "/rootfs"))
      else
        must("create rootfs", btrfs.create(tmp .. "/rootfs"))
      end
    else
      must("mkdir", fs.mkdirs(tmp .. "/diff", 493))
      must("mkdir", fs.mkdirs(tmp .. "/work", 448))
      must("mkdir", fs.mkdirs(tmp .. "/rootfs", 493))
    end
    if top and self.driver == "overlay" then write_new(tmp .. "/layer", top .. "\n") end
    if state then
      must("write state", fs.write_atomic(tmp .. "/state.json", json.encode(state, true), nil, NOSYNC))
    else
      -- a stand-in, so that no container is ever without a state; the
      -- caller writes (and syncs) the real one next
      write_new(tmp .. "/state.json", json.encode({ id = id, status = "created", created = now_iso() }, true))
    end
    must("publish container " .. id, fs.rename(tmp, dir, { noreplace = true }))
  end)
  if self.driver == "overlay" then
    local ok, err = pcall(self.mount_container, self, id, top)
    if not ok then
      pcall(self.remove_container, self, id)
      error(err, 0)
    end
  end
  return dir .. "/rootfs"
end

-- The overlay driver mounts a container's root while it runs; `top`
-- defaults to the layer recorded when it was made.
function Store:mount_container(id, top)
  local dir = self:container_dir(id)
  if top == nil then
    local text = fs.read(dir .. "/layer")
    top = text and text:match("%x+")
  end
  local lower = top and self:chain(top) or { self:empty_dir() }
  overlay_mount(lower, dir .. "/diff", dir .. "/work", dir .. "/rootfs")
end

function Store:unmount_container(id)
  if self.driver == "overlay" then
    mount.umount(self:container_dir(id) .. "/rootfs", { "detach", "nofollow" })
  end
end

-- Removes a container's folder and root; moved to tmp/ first so that a
-- crash halfway is finished by the next clean(). One already gone (two
-- commands reaping the same --rm container) is fine.
function Store:remove_container(id)
  local dir = self:container_dir(id)
  if not exists(dir) then return end
  self:unmount_container(id)
  with_work(self, "rm-" .. id, function(tmp)
    local ok, err, errno = fs.rename(dir, tmp)
    if not ok then
      if errno == E.ENOENT then return end
      fail("remove container %s: %s", id, err)
    end
    self:discard(tmp)
  end)
end

-- containers() -> list of ids
function Store:containers()
  local list = {}
  for _, id in ipairs(fs.readdir(self.dir .. "/containers") or {}) do
    if id:match("^%x+$") then list[#list + 1] = id end
  end
  return list
end

-- What a container's state.json may hold (luactr.runtime.containers writes it):
-- every field luactr reads, with its type; other fields are let through.
local positive = check.all(check.integer, check.satisfies(function(n) return n > 0 end, "a pid"))
local STATE = {
  id = check.string, name = check.string, image = check.string, image_id = check.string,
  command = check.string, created = check.string, started = check.string,
  finished = check.string,
  status = check.enum("created", "running", "paused", "exited", "restarting"),
  autoremove = check.boolean, monitor = check.boolean, stale = check.boolean,
  OOMKilled = check.boolean,
  pid = positive, pid_start = check.integer, runner = positive, runner_start = check.integer,
  exit_code = check.integer, restarts = check.integer, backoff = check.integer,
  cgroups = check.map(check.string), cgroup_parents = check.array(check.string),
  cgroup_parent = check.string, stop_signal = check.either(check.string, check.integer),
  detached = check.open_record({
    tty = check.boolean, interactive = check.boolean, init = check.boolean,
    wait_attach = check.boolean, retries = check.integer, log_max = check.integer,
    log_files = check.integer,
    restart = check.enum("no", "always", "unless-stopped", "on-failure"),
  }),
}
local state_record = check.open_record(STATE, { "id", "status" })

-- Are the cgroup folders a state names those of container `id` (named
-- luactr-<id12>)? Nothing else is ever killed or removed for it.
local function own_cgroups(cgroups, id)
  local leaf = "/luactr-" .. id:sub(1, 12)
  for _, dir in pairs(cgroups) do
    if dir:sub(-#leaf) ~= leaf then return false end
  end
  return true
end

-- Why the decoded state `t` of container `id` is damaged, or nil.
local function state_damage(t, id)
  -- an array and null decode to tables too, with a metatable of json's
  if type(t) == "table" and getmetatable(t) ~= nil then return "state: expected an object" end
  local why = state_record(t, "state")
  if why then return why end
  if t.id ~= id then return "state.id: not the id of its folder" end
  if t.cgroups and not own_cgroups(t.cgroups, id) then
    return "state.cgroups: a folder not named after the container"
  end
  for _, parent in ipairs(t.cgroup_parents or {}) do
    local above = false
    for _, dir in pairs(t.cgroups or {}) do
      above = above or dir:sub(1, #parent + 1) == parent .. "/"
    end
    if not above then return "state.cgroup_parents: a folder not above its cgroup" end
  end
end

-- A damaged state, as read_state gives it: status "damaged", `damaged`
-- saying why, and every field of `t` that is sound by itself (a name to
-- find it by, its cgroups and pids for rm -f to end what it left).
local function damaged_state(id, why, t)
  local st = { id = id, status = "damaged", damaged = why }
  if type(t) == "table" then
    for k, valid in pairs(STATE) do
      if k ~= "id" and k ~= "status" and k ~= "cgroup_parents" and t[k] ~= nil
         and not valid(t[k], k) then
        st[k] = t[k]
      end
    end
    if st.cgroups and not own_cgroups(st.cgroups, id) then st.cgroups = nil end
  end
  return st
end

-- write_state(id, t) / read_state(id): the container's state.json.
-- Atomic (a killed writer leaves the old state or the new), but not
-- fsynced: a container's state is about processes, which a power cut ends
-- anyway, and the next command recomputes it (a "running" container whose
-- process is gone reads as exited). Four fsyncs would double the cost of
-- `run --rm`. A full store draws on its reserve (write_record).
function Store:write_state(id, t)
  if t.damaged then
    fail("container %s: its state file is damaged (%s): remove it with rm -f", id:sub(1, 12), t.damaged)
  end
  self:write_record("write state", self:container_dir(id) .. "/state.json", json.encode(t, true))
end

-- read_state(id) -> state | nil when there is no such container. A
-- state.json that is missing, empty, not JSON or not a state gives a
-- damaged state (see damaged_state): never an error.
function Store:read_state(id)
  local dir = self:container_dir(id)
  local text, err, errno = fs.read(dir .. "/state.json")
  if not text then
    if errno == E.ENOENT and not exists(dir) then return nil end
    return damaged_state(id, errno == E.ENOENT and "state.json is missing" or err)
  end
  if text == "" then return damaged_state(id, "state.json is empty") end
  local t, why = json.decode(text)
  if t == nil then return damaged_state(id, "state.json: " .. why) end
  why = state_damage(t, id)
  if why then return damaged_state(id, why, t) end
  return t
end

function Store:read_config(id)
  local text = fs.read(self:container_dir(id) .. "/config.json")
  return text and json.decode(text)
end

function Store:write_config(id, spec)
  must("write config", fs.write_atomic(self:container_dir(id) .. "/config.json",
    json.encode(spec, true), nil, NOSYNC))
end

-- }======

return M
