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
--       containers/<id>/   rootfs/ (its writable root), config.json,
--                          state.json, and what its driver keeps
--       tmp/<what>.<pid>.<n>       work in progress, and beside it
--       tmp/<what>.<pid>.<n>.lock  flocked by its owner while it lives
--       .lock              taken for every change of images/ and layers/
--       .reserve.<n>       a few MiB kept for state when the store is full
--       .layers.lock       shared while layers are built on, taken
--                          alone to prune them
--
-- Finding and making the store (the btrfs image, its loop device and
-- mount) is luactr.storage.provision's. What a layer and a container's
-- root are is the driver's the store was made with: luactr.storage.btrfs
-- (read-only subvolumes, snapshots) or luactr.storage.overlay (diff
-- folders, overlay mounts), two tables of the same functions, store.ops.
-- A store keeps the driver it was made with: the two kinds of layers
-- cannot be read by the other driver. The image records are
-- luactr.image.store's; the store's methods forward to it.
--
-- Every change is made in tmp/ and published by one rename, so a crash
-- leaves the old state or the new one; tmp/ leftovers are cleaned by the
-- next command that opens the store.
local check = require "luactr.check"
local core = require "luactr.core"
local errors = require "luactr.errors"
local ids = require "luactr.ids"
local images = require "luactr.image.store"
local json = require "luactr.json"
local provision = require "luactr.storage.provision"

local fs = core.fs
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

-- Writes a file into work not yet published: the folder's rename makes
-- it appear whole, so a plain write will do (no temp file, no fsync).
local function write_new(path, text)
  local f, err = io.open(path, "wb")
  if not f then fail("write %s", err) end
  local ok, werr = f:write(text)
  local closed, cerr = f:close()
  if not ok or not closed then fail("write %s: %s", path, werr or cerr) end
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

-- open([{ root=, driver= }]) -> store
-- Finds or makes the store (luactr.storage.provision), with its driver.
-- A new store's driver is LUACTR_DRIVER ("btrfs" or "overlay"), else
-- btrfs when the host has it, else overlay; a store keeps the driver it
-- was made with, and asking for the other one is an error (rather than a
-- store that cannot read its layers).
function M.open(o)
  local root, dir, driver = provision.open(o)
  if not exists(slice(dir, SLICES - 1)) then make_reserve(dir) end
  local s = setmetatable({ root = root, dir = dir, driver = driver,
    ops = require("luactr.storage." .. driver) }, Store)
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

-- Removes a piece of work, a pruned layer or a removed container, as
-- its driver made it (unmounting what it mounted). A missing path is fine.
function Store:discard(path)
  self.ops.discard(path)
end

-- }======

-- {====== layers ======

function Store:layer_path(key)
  return self.dir .. "/layers/" .. key
end

function Store:has_layer(key)
  return exists(self:layer_path(key))
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
  local ok, err = pcall(function() work.path = self.ops.new_layer(self, tmp, parent) end)
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
    store.ops.end_layer(store, self)
    local layer = store:layer_path(self.key)
    local done, why, errno = fs.rename(self.tmp, layer, { noreplace = true })
    if not done then
      if errno == E.EEXIST or errno == E.ENOTEMPTY then
        store:discard(self.tmp)
        return
      end
      fail("publish layer %s: %s", self.key, why)
    end
    -- read-only once in place; a crash just before leaves a complete
    -- layer, only still writable. When it fails (a full disk), the layer
    -- is taken back out, to be dropped with the work: a step whose commit
    -- failed is not cached.
    local ro, rwhy = store.ops.set_readonly(layer, true)
    if not ro then
      if not fs.rename(layer, self.tmp) then pcall(store.discard, store, layer) end
      fail("readonly layer %s: %s", self.key, rwhy)
    end
  end)
  if not ok then pcall(store.discard, store, self.tmp) end
  self:finish()
  if not ok then error(err, 0) end
end

-- prune_layers() -> number removed: removes the layers that no image
-- (and no container's root, for a driver whose roots need them) uses.
-- Under the store lock, so that an image is never registered on a layer
-- being pruned (put_image checks its layers under the same lock); and
-- only when no build holds the layers (hold_layers): a build's layers
-- belong to no image yet. When one does, nothing is pruned now: the next
-- prune does it.
function Store:prune_layers()
  local lock <close> = self:lock()
  local alone <close> = fs.lock(self.dir .. "/.layers.lock", { wait = false })
  if not alone then return 0 end
  local used = {}
  for _, img in ipairs(self:images()) do
    for _, key in ipairs(img.luactr and img.luactr.layers or {}) do used[key] = true end
  end
  self.ops.layers_in_use(self, used)
  local removed = 0
  for _, key in ipairs(fs.readdir(self.dir .. "/layers") or {}) do
    if key:match("^%x+$") and not used[key] then
      with_work(self, "prune-" .. key, function(tmp)
        -- moved out first, so a crash halfway leaves no half layer in
        -- layers/; writable first, since btrfs does not move a read-only one
        self.ops.set_readonly(self:layer_path(key), false)
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

-- freeable([share=0]) -> n: when the store is (nearly) full, or has less
-- than `share` of its size free, how many deleted layers the filesystem
-- has yet to give the space of back (btrfs frees a deleted subvolume
-- later); 0 otherwise, and always with the overlay driver.
function Store:freeable(share)
  return self.ops.freeable(self, share)
end

-- reclaim([timeout=60]) -> true | false: waits until the space of the
-- deleted layers is given back; false when some is not after `timeout`
-- seconds.
function Store:reclaim(timeout)
  return self.ops.reclaim(self, timeout)
end

-- }======

-- {====== images: their records are luactr.image.store's ======

-- image(ref) -> the image's config table (with .id and .ref) | nil, and
-- then why when its file is damaged.
function Store:image(ref) return images.get(self, ref) end

-- image_entry(ref) -> the image, a damaged entry { ref=, id=, damaged= }
-- (images lists it, rmi removes it), or nil.
function Store:image_entry(ref) return images.entry(self, ref) end

-- put_image(ref, config) -> id, once every layer of the image is there.
function Store:put_image(ref, config) return images.put(self, ref, config) end

-- remove_image(ref): the image's record (prune_layers then its layers).
function Store:remove_image(ref) return images.remove(self, ref) end

-- images() -> the image configs and damaged entries, sorted by ref.
function Store:images() return images.list(self) end

-- }======

-- {====== containers ======

function Store:container_dir(id)
  return self.dir .. "/containers/" .. id
end

-- new_container(id, top, [state]) -> path: the writable root of container
-- `id` on layer `top` (nil for an image with no layer), as its driver
-- makes one (a snapshot, or an overlay mount). Made in tmp/ with its
-- state.json (`state`, else a bare "created" one) and renamed in: a crash
-- halfway leaves no container, and no container without a state.
function Store:new_container(id, top, state)
  local hold <close> = self:hold_layers()  -- the chain must stay (overlay)
  local dir = self:container_dir(id)
  with_work(self, "container-" .. id, function(tmp)
    must("mkdir " .. tmp, fs.mkdirs(tmp, 448))
    self.ops.new_root(self, tmp, top)
    if state then
      must("write state", fs.write_atomic(tmp .. "/state.json", json.encode(state, true), nil, NOSYNC))
    else
      -- a stand-in, so that no container is ever without a state; the
      -- caller writes (and syncs) the real one next
      write_new(tmp .. "/state.json", json.encode({ id = id, status = "created", created = ids.now() }, true))
    end
    must("publish container " .. id, fs.rename(tmp, dir, { noreplace = true }))
  end)
  local ok, err = pcall(self.mount_container, self, id, top)
  if not ok then
    pcall(self.remove_container, self, id)
    error(err, 0)
  end
  return dir .. "/rootfs"
end

-- mount_container(id, [top]) / unmount_container(id): a container's root
-- while it runs, for a driver that mounts it (overlay; `top` defaults to
-- the layer recorded when it was made). Unmounting one that is not
-- mounted is fine.
function Store:mount_container(id, top)
  self.ops.mount_root(self, self:container_dir(id), top)
end

function Store:unmount_container(id)
  self.ops.unmount_root(self:container_dir(id))
end

-- graph_data(id) -> the folders of a container's root, as docker inspect
-- shows them (GraphDriver.Data: MergedDir, and UpperDir, WorkDir).
function Store:graph_data(id)
  return self.ops.graph(self:container_dir(id))
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
