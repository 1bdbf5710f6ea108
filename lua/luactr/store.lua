-- luactr.store: the copy-on-write store of layers, images and containers.
--
--   ROOT/                  LUACTR_ROOT, /var/lib/luactr by default
--     store.img            a sparse btrfs image, when ROOT is not on btrfs
--     .lock                taken while the store is set up
--     store/               btrfs (the image mounted), or a plain folder
--       layers/<key>/      one read-only layer per cache key
--       images/<ref>.json  an image: OCI image config + its layer chain
--       containers/<id>/   rootfs/ (a writable snapshot), config.json,
--                          state.json
--       tmp/<what>.<pid>   work in progress; a dead pid's is removed
--       .lock              taken for every change of images/ and layers/
--
-- Two drivers share this layout. btrfs: a layer is a read-only subvolume,
-- a build step runs in a writable snapshot of its parent, made read-only
-- and renamed into layers/ when it succeeds; a container's rootfs is a
-- writable snapshot of its image's top layer (O(1) in the image's size).
-- overlay: a layer is the diff folder of one step; a step or a container
-- runs on an overlay mount of the chain.
--
-- Every change is made in tmp/ and published by one rename, so a crash
-- leaves the old state or the new one; tmp/ leftovers are cleaned by the
-- next command that opens the store.
local core = require "luactr.core"
local errors = require "luactr.errors"
local json = require "luactr.json"

local fs, btrfs, mount = core.fs, core.btrfs, core.mount

local M = {}

local Store = {}
Store.__index = Store

local function fail(fmt, ...)
  errors.raise(errors.FAILED, fmt, ...)
end

-- Calls a core function and raises with `what` on failure.
local function must(what, ok, err, ...)
  if ok == nil then fail("%s: %s", what, err) end
  return ok, err, ...
end

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

local function parse_size(s)
  local n, unit = tostring(s):lower():match("^(%d+)([kmgt]?)b?$")
  if not n then fail("LUACTR_STORE_SIZE: expected a size like 20g, got '%s'", s) end
  local mult = { [""] = 1, k = 1024, m = 1024 ^ 2, g = 1024 ^ 3, t = 1024 ^ 4 }
  return math.tointeger(tonumber(n) * mult[unit])
end

local function pid_alive(pid)
  return pid and exists("/proc/" .. pid)
end

-- {====== opening ======

local function btrfs_usable()
  local f = io.open("/proc/filesystems")
  local text = f and f:read("a") or ""
  if f then f:close() end
  return text:find("%sbtrfs\n") ~= nil
end

-- Makes ROOT/store a btrfs filesystem: the image file, made once (sparse)
-- and loop-mounted on first use after each boot.
local function mount_image(root, dir)
  local img = root .. "/store.img"
  if not exists(img) then
    local size = parse_size(os.getenv("LUACTR_STORE_SIZE") or "20g")
    local tmp = root .. "/.store.img.tmp"
    local f = assert(io.open(tmp, "wb"))
    f:seek("set", size - 1)
    f:write("\0")
    f:close()
    command({ "mkfs.btrfs", "-q", "-f", tmp }, "mkfs.btrfs")
    must("rename " .. img, fs.rename(tmp, img))
    io.stderr:write(("luactr: %s is not on btrfs: the store is a %s btrfs image, %s (LUACTR_STORE_SIZE sets its size)\n")
      :format(root, os.getenv("LUACTR_STORE_SIZE") or "20g", img))
  end
  must("mkdir " .. dir, fs.mkdirs(dir, 448))
  command({ "mount", "-o", "loop,noatime", img, dir }, "mount " .. img)
end

-- open([{ root=, driver= }]) -> store
-- Finds or makes the store; the driver is LUACTR_DRIVER ("btrfs" or
-- "overlay"), else btrfs when the kernel has it, else overlay.
function M.open(o)
  o = o or {}
  local root = o.root or os.getenv("LUACTR_ROOT") or "/var/lib/luactr"
  local driver = o.driver or os.getenv("LUACTR_DRIVER")
  if driver and driver ~= "btrfs" and driver ~= "overlay" then
    fail("LUACTR_DRIVER: expected btrfs or overlay, got '%s'", driver)
  end
  must("mkdir " .. root, fs.mkdirs(root, 448))
  root = must("realpath " .. root, fs.realpath(root))
  local dir = root .. "/store"
  local s = setmetatable({ root = root, dir = dir }, Store)
  local rootfs_type = must("statfs " .. root, fs.statfs(root)).type
  if not driver then
    driver = (rootfs_type == "btrfs" or btrfs_usable()) and "btrfs" or "overlay"
  end
  s.driver = driver
  if driver == "btrfs" and rootfs_type ~= "btrfs" then
    local st = fs.statfs(dir)
    if not st or st.type ~= "btrfs" then
      local lock <close> = must("lock " .. root, fs.lock(root .. "/.lock"))
      st = fs.statfs(dir)
      if not st or st.type ~= "btrfs" then mount_image(root, dir) end
    end
  end
  for _, sub in ipairs({ "", "/layers", "/images", "/containers", "/volumes", "/tmp" }) do
    if not exists(dir .. sub) then must("mkdir " .. dir .. sub, fs.mkdirs(dir .. sub, 448)) end
  end
  s:clean()
  return s
end

-- }======

-- {====== locks and leftovers ======

-- Takes the store's lock for a change of images/ or layers/.
function Store:lock()
  return must("lock " .. self.dir, fs.lock(self.dir .. "/.lock"))
end

-- A fresh work path in tmp/, named for its owner so that a crash can be
-- told apart from work in progress.
function Store:tmp(what)
  return ("%s/tmp/%s.%d"):format(self.dir, what, core.sys.getpid())
end

-- Removes what a dead process left in tmp/: snapshots, overlay mounts,
-- half-written folders. Cheap when there is nothing (one readdir).
function Store:clean()
  local names = fs.readdir(self.dir .. "/tmp") or {}
  for _, name in ipairs(names) do
    local pid = tonumber(name:match("%.(%d+)$"))
    if not pid_alive(pid) then self:discard(self.dir .. "/tmp/" .. name) end
  end
end

-- Removes a work folder or snapshot, unmounting what is mounted in it.
function Store:discard(path)
  for _, sub in ipairs({ "/merged", "/rootfs", "" }) do
    mount.umount(path .. sub, { "detach" })
  end
  if btrfs.is_subvolume(path) then
    must("delete " .. path, btrfs.delete(path, { recursive = true }))
  else
    must("remove " .. path, fs.remove_tree(path))
  end
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

-- begin_layer(parent_key, key) -> work { path = the root to change }
-- Then work:commit() publishes it as layer `key`, work:abort() drops it.
function Store:begin_layer(parent, key)
  local tmp = self:tmp("layer-" .. key)
  local work = { store = self, tmp = tmp, key = key, parent = parent }
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
  return setmetatable(work, { __index = {
    commit = function(w) return w.store:commit_layer(w) end,
    abort = function(w) w.store:discard(w.tmp) end,
  } })
end

function Store:empty_dir()
  local dir = self.dir .. "/layers/.empty"
  if not exists(dir) then must("mkdir " .. dir, fs.mkdirs(dir, 493)) end
  return dir
end

function Store:commit_layer(w)
  if self.driver == "overlay" then
    must("umount " .. w.path, mount.umount(w.path))
    must("remove " .. w.tmp, fs.remove_tree(w.tmp .. "/merged"))
    must("remove " .. w.tmp, fs.remove_tree(w.tmp .. "/work"))
    if w.parent then
      must("write parent", fs.write_atomic(w.tmp .. "/parent", w.parent .. "\n"))
    end
  end
  local ok, err, errno = fs.rename(w.tmp, self:layer_path(w.key), { noreplace = true })
  if not ok then
    -- another build made the same layer meanwhile: theirs is as good
    if errno == core.sys.errno.EEXIST or errno == core.sys.errno.ENOTEMPTY then
      self:discard(w.tmp)
      return
    end
    fail("publish layer %s: %s", w.key, err)
  end
  -- read-only once in place (btrfs will not move a read-only subvolume);
  -- a crash just before leaves a complete layer, only still writable
  if self.driver == "btrfs" then
    must("readonly " .. w.key, btrfs.set_readonly(self:layer_path(w.key), true))
  end
end

-- Removes layers no image uses any more.
function Store:prune_layers()
  local used = {}
  for _, img in ipairs(self:images()) do
    for _, key in ipairs(img.luactr and img.luactr.layers or {}) do used[key] = true end
  end
  local removed = 0
  for _, key in ipairs(fs.readdir(self.dir .. "/layers") or {}) do
    if key:match("^%x+$") and not used[key] then
      local tmp = self:tmp("prune-" .. key)
      if self.driver == "btrfs" then btrfs.set_readonly(self:layer_path(key), false) end
      if fs.rename(self:layer_path(key), tmp) then
        self:discard(tmp)
        removed = removed + 1
      end
    end
  end
  return removed
end

-- }======

-- {====== images ======

-- Splits "name[:tag]" into its parts; the tag defaults to "latest".
function M.parse_ref(ref)
  local name, tag = ref:match("^(.-):([%w][%w_.%-]*)$")
  if not name or name:find("/", 1, true) and tag:find("/", 1, true) then
    name, tag = ref, "latest"
  end
  if name == "" or not name:match("^[%w][%w_.%-/]*$") then
    fail("invalid image name '%s'", ref)
  end
  return name, tag
end

local function ref_file(self, ref)
  local name, tag = M.parse_ref(ref)
  return ("%s/images/%s:%s.json"):format(self.dir, name:gsub("/", "%%2F"), tag), name .. ":" .. tag
end

-- image(ref) -> the image's config table (with .id and .ref) | nil
function Store:image(ref)
  local path, full = ref_file(self, ref)
  local text = fs.read(path)
  if not text then
    -- a unique prefix of an image id names it too
    if ref:match("^%x+$") and #ref >= 4 then
      local found
      for _, img in ipairs(self:images()) do
        if img.id:sub(1, #ref) == ref then
          if found and found.id ~= img.id then fail("image id prefix '%s' is ambiguous", ref) end
          found = img
        end
      end
      return found
    end
    return nil
  end
  local img = json.decode(text)
  if not img then fail("image %s: damaged file %s", full, path) end
  img.id = core.digest.sha256(text)
  img.ref = full
  return img
end

-- put_image(ref, config) -> id. Written atomically.
function Store:put_image(ref, config)
  local path = ref_file(self, ref)
  local text = json.encode(config)
  must("write " .. path, fs.write_atomic(path, text))
  return core.digest.sha256(text)
end

function Store:remove_image(ref)
  local path, full = ref_file(self, ref)
  local ok, err, errno = fs.unlink(path)
  if not ok then
    if errno == core.sys.errno.ENOENT then fail("no such image: %s", ref) end
    fail("remove %s: %s", full, err)
  end
end

-- images() -> list of image configs (with .id and .ref), sorted by ref.
function Store:images()
  local list = {}
  for _, file in ipairs(fs.readdir(self.dir .. "/images") or {}) do
    local ref = file:match("^(.*)%.json$")
    if ref then
      ref = ref:gsub("%%2F", "/")
      local ok, img = pcall(self.image, self, ref)
      if ok and img then list[#list + 1] = img end
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

-- new_rootfs(id, top) -> path: the writable root of container `id`, a
-- snapshot (btrfs) or an overlay mount (overlay) of layer `top` (nil for
-- an image with no layer). Made in tmp/ and renamed in: a crash halfway
-- leaves no container.
function Store:new_container(id, top)
  local tmp = self:tmp("container-" .. id)
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
  local dir = self:container_dir(id)
  must("publish container " .. id, fs.rename(tmp, dir, { noreplace = true }))
  if self.driver == "overlay" then self:mount_container(id, top) end
  return dir .. "/rootfs"
end

-- The overlay driver mounts a container's root while it runs.
function Store:mount_container(id, top)
  local dir = self:container_dir(id)
  local lower = top and self:chain(top) or { self:empty_dir() }
  overlay_mount(lower, dir .. "/diff", dir .. "/work", dir .. "/rootfs")
end

function Store:unmount_container(id)
  if self.driver == "overlay" then
    mount.umount(self:container_dir(id) .. "/rootfs", { "detach" })
  end
end

-- Removes a container's folder and root; moved to tmp/ first so that a
-- crash halfway is finished by the next clean().
function Store:remove_container(id)
  local dir = self:container_dir(id)
  if not exists(dir) then return end
  self:unmount_container(id)
  local tmp = self:tmp("rm-" .. id)
  must("remove container " .. id, fs.rename(dir, tmp))
  if btrfs.is_subvolume(tmp .. "/rootfs") then
    must("delete rootfs", btrfs.delete(tmp .. "/rootfs", { recursive = true }))
  end
  must("remove " .. tmp, fs.remove_tree(tmp))
end

-- containers() -> list of ids
function Store:containers()
  local list = {}
  for _, id in ipairs(fs.readdir(self.dir .. "/containers") or {}) do
    if id:match("^%x+$") then list[#list + 1] = id end
  end
  return list
end

-- write_state(id, t) / read_state(id): the container's state.json
function Store:write_state(id, t)
  must("write state", fs.write_atomic(self:container_dir(id) .. "/state.json", json.encode(t, true)))
end

function Store:read_state(id)
  local text = fs.read(self:container_dir(id) .. "/state.json")
  return text and json.decode(text)
end

function Store:write_config(id, spec)
  must("write config", fs.write_atomic(self:container_dir(id) .. "/config.json", json.encode(spec, true)))
end

-- }======

return M
