-- luactr.runtime.userns: the id ranges of `--userns=remap`.
--
-- Docker's userns-remap, with luactr's own user: container root is mapped
-- to the first range that /etc/subuid and /etc/subgid give the user
-- "luactr" (Docker's is "dockremap"). When a file has no such entry, one
-- is added: the lowest 65536 ids from 100000 on (useradd's SUB_UID_MIN)
-- that no entry of that file holds, appended to the file -- nothing in it
-- is ever changed or removed -- and written atomically (temp file, fsync,
-- rename) under a lock, so that two luactr at once cannot take the same
-- range. LUACTR_SUBUID and LUACTR_SUBGID name other files (tests use
-- them: the host's own are left alone).
local core = require "luactr.core"
local errors = require "luactr.errors"

local M = {}

M.USER = "luactr"
M.SIZE = 65536        -- a default range: uid 0..65535 inside
M.FIRST = 100000      -- where default ranges start (useradd's SUB_UID_MIN)
M.LAST = 600100000    -- and end (SUB_UID_MAX)

local fs = core.fs

-- The files, as the environment may override them.
function M.paths()
  return os.getenv("LUACTR_SUBUID") or "/etc/subuid",
         os.getenv("LUACTR_SUBGID") or "/etc/subgid"
end

-- parse(text) -> { { name=, start=, count= }, ... } in file order; lines
-- that are not "name:start:count" (comments, blanks) are skipped, as
-- shadow's own tools do.
function M.parse(text)
  local list = {}
  for line in (text or ""):gmatch("[^\n]+") do
    local name, start, count = line:match("^%s*([^:#%s][^:]*):(%d+):(%d+)%s*$")
    if name then
      list[#list + 1] = { name = name, start = tonumber(start), count = tonumber(count) }
    end
  end
  return list
end

-- free_range(entries, size) -> start: the lowest `size` ids from FIRST
-- on that overlap no entry (whoever it is for), or nil when none is left
-- below LAST.
function M.free_range(entries, size)
  local taken = {}
  for _, e in ipairs(entries) do
    if e.count > 0 then taken[#taken + 1] = e end
  end
  table.sort(taken, function(a, b) return a.start < b.start end)
  local start = M.FIRST
  for _, e in ipairs(taken) do
    if e.start >= start + size then break end
    if e.start + e.count > start then start = e.start + e.count end
  end
  if start + size - 1 > M.LAST then return nil end
  return start
end

local function read(path)
  local f, err, code = io.open(path, "rb")
  if not f then
    if code == core.sys.errno.ENOENT then return "" end
    errors.raise(errors.FAILED, "userns: %s", err)
  end
  local text = f:read("a")
  f:close()
  return text
end

local function find(entries, user)
  for _, e in ipairs(entries) do
    if e.name == user and e.count > 0 then return e end
  end
end

local function lock_path()
  local st = fs.stat("/run/lock")
  return (st and "/run/lock" or "/run") .. "/luactr-subid.lock"
end

-- range(path, [user]) -> start, count
-- The first range of `user` (default "luactr") in the subordinate id
-- file `path`, added there first when it has none. Raises when the file
-- cannot be read or written, or no range is free.
function M.range(path, user)
  user = user or M.USER
  local e = find(M.parse(read(path)), user)
  if e then return e.start, e.count end
  local lock <close>, why = fs.lock(lock_path())
  if not lock then errors.raise(errors.FAILED, "userns: lock %s", why) end
  local text = read(path)  -- again, under the lock: another may have added it
  local entries = M.parse(text)
  e = find(entries, user)
  if e then return e.start, e.count end
  local start = M.free_range(entries, M.SIZE)
  if not start then
    errors.raise(errors.FAILED, "userns: %s: no free range of %d ids left for '%s'",
      path, M.SIZE, user)
  end
  if text ~= "" and text:sub(-1) ~= "\n" then text = text .. "\n" end
  local st = fs.stat(path)
  local ok, err = fs.write_atomic(path,
    ("%s%s:%d:%d\n"):format(text, user, start, M.SIZE), st and st.mode & 4095 or 420)
  if not ok then errors.raise(errors.FAILED, "userns: write %s", err) end
  return start, M.SIZE
end

-- mappings() -> uidMappings, gidMappings (OCI linux.*Mappings)
-- Container ids 0..count-1 onto luactr's ranges.
function M.mappings()
  local uidfile, gidfile = M.paths()
  local ustart, ucount = M.range(uidfile)
  local gstart, gcount = M.range(gidfile)
  return { { containerID = 0, hostID = ustart, size = ucount } },
         { { containerID = 0, hostID = gstart, size = gcount } }
end

-- spawn(spec, opts, [container_dir]) -> process | nil, err, errno, step
-- core.spawn (its own failures come back as its do, with step "userns"),
-- and for a spec with a user namespace (linux.uidMappings)
-- the way the files of its root filesystem get owners that make sense
-- inside. An idmapped mount first: the kernel shows the files through
-- the container's id mapping, nothing on disk changes, image layers stay
-- shared and it costs no time (the kernel, 5.12 on, and the filesystem
-- must allow it: btrfs, ext4, xfs do; an overlay mount does not). Where
-- it cannot be had, a container's own writable snapshot (given by its
-- `container_dir`) is chowned into the ranges once (fs.shift_owner; on
-- overlay that copies every file up); an image layer never is, and a
-- --rootfs folder is the user's: it is refused with the reason.
-- LUACTR_IDMAP=0 turns idmapped mounts off. A snapshot once chowned is
-- marked (container_dir/userns-shift, written before the chown, which
-- can be run again: owners are shifted once) and is never idmapped on a
-- later start, which would shift its owners twice.
function M.spawn(s, opts, container_dir)
  local uids, gids = s.linux and s.linux.uidMappings, s.linux and s.linux.gidMappings
  if not uids then return core.spawn(s, opts) end
  local u, g = uids[1], gids[1]
  local count = math.min(u.size, g.size)
  local shift = ("%d %d %d\n"):format(u.hostID, g.hostID, count)
  local marker = container_dir and container_dir .. "/userns-shift"
  local shifted = marker and fs.read(marker)
  if shifted and shifted ~= shift then
    return nil, ("userns: the container's files were chowned for other ranges "
      .. "(uid gid count: %s), not for these: %s"):format(shifted:gsub("\n$", ""),
      (shift:gsub("\n$", ""))), nil, "userns"
  end
  local why = "idmapped mounts are turned off (LUACTR_IDMAP=0)"
  if not shifted and os.getenv("LUACTR_IDMAP") ~= "0" then
    opts.idmap_root = true
    local proc, err, errno, step = core.spawn(s, opts)
    if proc or step ~= "idmap" then return proc, err, errno, step end
    opts.idmap_root, why = nil, err
  end
  if not container_dir then
    return nil, ("--userns=remap: %s; a --rootfs folder is never chowned: give "
      .. "one on a filesystem that allows idmapped mounts"):format(why), nil, "userns"
  end
  if not shifted then
    local ok, err, errno = fs.write_atomic(marker, shift)
    if not ok then return nil, "userns: " .. err, errno, "userns" end
  end
  local ok, err, errno = fs.shift_owner(s.root.path, u.hostID, g.hostID, count)
  if not ok then return nil, "userns: shift owners: " .. err, errno, "userns" end
  return core.spawn(s, opts)
end

return M
