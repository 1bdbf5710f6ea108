-- luactr.storage.btrfs: the btrfs driver, the default.
--
-- A layer is a read-only subvolume, layers/<key>. A build step runs in a
-- writable snapshot of its parent layer (or a new subvolume, for the
-- first), made read-only once published; a container's rootfs is a
-- writable snapshot of its image's top layer: O(1) in the image's size,
-- and nothing to mount. A driver is a table of the functions below, the
-- same in every driver (see luactr.storage: the store calls them as
-- store.ops.<name>).
local core = require "luactr.core"
local errors = require "luactr.errors"

local fs, btrfs = core.fs, core.btrfs

local M = { name = "btrfs" }

local must = errors.must

-- {====== layers ======

-- new_layer(store, tmp, parent) -> the root a step changes: made at
-- `tmp`, on layer `parent` (nil: an empty root).
function M.new_layer(store, tmp, parent)
  if parent then
    must("snapshot " .. parent, btrfs.snapshot(store:layer_path(parent), tmp))
  else
    must("create " .. tmp, btrfs.create(tmp))
    must("chmod " .. tmp, fs.chmod(tmp, 493))
  end
  return tmp
end

-- end_layer(store, work): readies the work { tmp=, path=, parent= } to
-- be renamed into layers/: a snapshot is a layer as it is.
function M.end_layer() end

-- set_readonly(path, on) -> true | nil, err: a layer once in layers/ is
-- read-only (btrfs does not move a read-only subvolume to another
-- folder: EROFS; so it is made writable again to be moved out).
function M.set_readonly(path, on)
  return btrfs.set_readonly(path, on)
end

-- layers_in_use(store, used): marks in `used` the layers that a
-- container's root needs: none, a snapshot needs nothing once made.
function M.layers_in_use() end

-- }======

-- {====== containers' roots ======

-- new_root(store, tmp, top): a container's writable root, tmp/rootfs: a
-- snapshot of layer `top` (nil: an empty subvolume).
function M.new_root(store, tmp, top)
  if top then
    must("snapshot " .. top, btrfs.snapshot(store:layer_path(top), tmp .. "/rootfs"))
  else
    must("create rootfs", btrfs.create(tmp .. "/rootfs"))
  end
end

-- mount_root(store, dir, [top]) / unmount_root(dir): a container's root
-- while it runs; a snapshot is there already.
function M.mount_root() end
function M.unmount_root() end

-- graph(dir) -> the folders of the container in `dir`, as docker inspect
-- shows them (GraphDriver.Data).
function M.graph(dir)
  return { MergedDir = dir .. "/rootfs" }
end

-- }======

-- discard(path): deletes a layer, a container or a piece of work (a
-- missing path is fine). Nothing is mounted in a btrfs store, and the
-- subvolumes inside a folder are deleted with it (fs.remove_tree).
function M.discard(path)
  if btrfs.is_subvolume(path) then
    must("delete " .. path, btrfs.delete(path, { recursive = true }))
  else
    must("remove " .. path, fs.remove_tree(path))
  end
end

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

-- freeable(store, [share=0]) -> n: when the store is (nearly) full, or
-- has less than `share` of its size free, how many deleted subvolumes
-- btrfs has yet to give the space of back; 0 otherwise. A statfs, and
-- only on a store short of space the search for deleted subvolumes.
function M.freeable(store, share)
  local st = fs.statfs(store.dir)
  if not st then return 0 end
  local free, low = st.bavail * st.bsize, math.max(NEARLY_FULL, st.blocks * st.bsize * (share or 0))
  if free >= low then return 0 end
  return btrfs.deleted(store.dir) or 0
end

-- reclaim(store, [timeout=60]) -> true | false: makes btrfs give back
-- the space of the deleted subvolumes now: a commit wakes its cleaner,
-- which drops them, and a commit once they are gone frees their extents.
-- False when some are still there after `timeout` seconds.
function M.reclaim(store, timeout)
  local clock = core.sys.monotonic
  local deadline, nudge = clock() + (timeout or 60), 0
  while (btrfs.deleted(store.dir) or 0) > 0 do
    if clock() > deadline then return false end
    if clock() >= nudge then
      btrfs.sync(store.dir)
      nudge = clock() + 1
    end
    core.sys.sleep(0.02)
  end
  btrfs.sync(store.dir)
  return true
end

-- }======

return M
