-- luactr.storage.overlay: the overlay driver, for hosts without btrfs.
--
-- A layer is the diff folder of one step, layers/<key>/diff, with
-- layers/<key>/parent naming the layer beneath it. A build step, and a
-- container, run on an overlay mount of the chain: the layer's diff and
-- its parents' (the lower folders), a diff/ of their own on top. A
-- container's folder keeps diff/, work/, rootfs/ (the mount point) and
-- `layer`, the key of its image's top layer, to mount it again. The
-- functions are those of every driver (see luactr.storage.btrfs).
local core = require "luactr.core"
local errors = require "luactr.errors"

local fs, mount = core.fs, core.mount

local M = { name = "overlay" }

local must = errors.must

-- for small files in work not yet published: atomic, unsynced
local NOSYNC = { sync = false }

local function key_in(path)
  local text = fs.read(path)
  return text and text:match("%x+")
end

-- The lower folders of layer `key`: its diff and its parents', top first.
local function chain(store, key)
  local list = {}
  while key do
    local path = store:layer_path(key)
    list[#list + 1] = path .. "/diff"
    key = key_in(path .. "/parent")
  end
  return list
end

-- The lower folder of a root with no layer: an empty one.
local function empty_dir(store)
  local dir = store.dir .. "/layers/.empty"
  if not fs.lstat(dir) then must("mkdir " .. dir, fs.mkdirs(dir, 493)) end
  return dir
end

local function overlay_mount(store, top, dir, target)
  local lower = top and chain(store, top) or { empty_dir(store) }
  must("mkdir " .. target, fs.mkdirs(target, 493))
  local data = ("lowerdir=%s,upperdir=%s/diff,workdir=%s/work"):format(table.concat(lower, ":"), dir, dir)
  must("mount overlay " .. target, mount.mount("overlay", target, "overlay", { data }))
end

-- {====== layers ======

function M.new_layer(store, tmp, parent)
  must("mkdir " .. tmp, fs.mkdirs(tmp .. "/diff", 493))
  must("mkdir " .. tmp, fs.mkdirs(tmp .. "/work", 448))
  overlay_mount(store, parent, tmp, tmp .. "/merged")
  return tmp .. "/merged"
end

-- The step is done: its mount goes, its diff stays, with its parent's key.
function M.end_layer(store, work)
  must("umount " .. work.path, mount.umount(work.path, { "nofollow" }))
  must("remove " .. work.tmp, fs.remove_tree(work.tmp .. "/merged"))
  must("remove " .. work.tmp, fs.remove_tree(work.tmp .. "/work"))
  if work.parent then
    must("write " .. work.tmp .. "/parent", fs.write_atomic(work.tmp .. "/parent",
      work.parent .. "\n", 420, NOSYNC))
  end
end

-- A diff folder stays as it is: nothing to do.
function M.set_readonly() return true end

-- The layers of every container's root: its image's top layer and that
-- layer's parents.
function M.layers_in_use(store, used)
  for _, id in ipairs(store:containers()) do
    local key = key_in(store:container_dir(id) .. "/layer")
    while key and not used[key] do
      used[key] = true
      key = key_in(store:layer_path(key) .. "/parent")
    end
  end
end

-- }======

-- {====== containers' roots ======

function M.new_root(store, tmp, top)
  must("mkdir", fs.mkdirs(tmp .. "/diff", 493))
  must("mkdir", fs.mkdirs(tmp .. "/work", 448))
  must("mkdir", fs.mkdirs(tmp .. "/rootfs", 493))
  if top then
    must("write " .. tmp .. "/layer", fs.write_atomic(tmp .. "/layer", top .. "\n", 420, NOSYNC))
  end
end

-- `top` defaults to the layer recorded when the root was made.
function M.mount_root(store, dir, top)
  if top == nil then top = key_in(dir .. "/layer") end
  overlay_mount(store, top, dir, dir .. "/rootfs")
end

function M.unmount_root(dir)
  mount.umount(dir .. "/rootfs", { "detach", "nofollow" })
end

function M.graph(dir)
  return { MergedDir = dir .. "/rootfs", UpperDir = dir .. "/diff", WorkDir = dir .. "/work" }
end

-- }======

-- Unmounts the overlay mounts that `path` holds (the mount points this
-- driver makes, merged/ and rootfs/; links are not followed: inside a
-- layer the names are the image's), then deletes it.
function M.discard(path)
  for _, sub in ipairs({ "/merged", "/rootfs" }) do
    -- mounts may be stacked: unmount until nothing is left
    for _ = 1, 8 do
      if not mount.umount(path .. sub, { "detach", "nofollow" }) then break end
    end
  end
  must("remove " .. path, fs.remove_tree(path))
end

-- Space is given back as files are deleted: nothing to wait for.
function M.freeable() return 0 end
function M.reclaim() return true end

return M
