-- luactr.build.copy: a recipe's copy step, into the root of the layer it
-- makes; and the digest of what it copies, for the layer's cache key.
--
-- The rules are the recipe's (see luactr.build.recipe): "dir/" copies
-- the folder's contents, "dir" the folder itself, a destination ending
-- in "/" is a folder to copy into, owner and mode apply to everything
-- copied. The copy itself is core.fs.copy's, on fds: the source is
-- resolved beneath the recipe's folder (or taken from the host, for
-- `host =`), the destination beneath the layer's root, both as in a
-- chroot (RESOLVE_IN_ROOT), so that no link in the recipe's folder or in
-- the image leads it out; below the top nothing is followed (a link is
-- copied as a link). Modes, owners, times, extended attributes and the
-- hard links within one source are kept; file data is reflinked where
-- the filesystem can (btrfs). Every write is checked: a full store fails
-- the step.
local core = require "luactr.core"
local errors = require "luactr.errors"

local fs, digest = core.fs, core.digest
local E = core.sys.errno

local M = {}

local fail, must = errors.fail, errors.must

-- digest(step) -> hex: what a copy step reads: names, types, modes,
-- owners, link targets and contents, in a fixed order.
function M.digest(step)
  local h = digest.new()
  local function walk(path, rel)
    local st = must("stat " .. path, fs.lstat(path))
    h:update(("%s %s %o %d:%d\n"):format(rel, st.type, st.mode, st.uid, st.gid))
    if st.type == "dir" then
      local names = must("readdir " .. path, fs.readdir(path))
      table.sort(names)
      for _, name in ipairs(names) do walk(path .. "/" .. name, rel .. "/" .. name) end
    elseif st.type == "link" then
      h:update(must("readlink " .. path, fs.readlink(path)) .. "\n")
    elseif st.type == "file" then
      h:update(must("digest " .. path, digest.file(path)) .. "\n")
    end
  end
  -- a top-level source is followed (as the copy follows it), what is
  -- inside it is not (links are copied as links)
  for i, src in ipairs(step.sources) do
    walk(fs.realpath(src.path) or src.path, tostring(i))
  end
  return h:hex()
end

-- The source as fs.copy takes it: its path (links at the top followed)
-- and the folder it is resolved beneath (nil: the host, for host =). A
-- source of the recipe's folder must stay in it: a link may not lead the
-- copy out to the host (that is what `host =` is for).
local function source(src, dir)
  local real = must("realpath " .. src.path, fs.realpath(src.path))
  if src.host then return real end
  local base = must("realpath " .. dir, fs.realpath(dir))
  if real == base then return ".", base end
  local inside = base == "/" and "/" or base .. "/"
  if real:sub(1, #inside) ~= inside then
    fail("%s leads out of the recipe's folder through a link (copy host paths with host =)",
      src.rel or src.path)
  end
  return real:sub(#inside + 1), base
end

-- Makes folder `path` of the image, and what is missing above it.
local function make_folder(root, path)
  local ok, err, errno = fs.mkdirs(path, 493, { root = root })
  if ok then return end
  if errno == E.ENOTDIR then fail("copy: %s is not a folder in the image", path) end
  fail("copy: %s", err)
end

-- Copies `path` (see source) to `target` in the image. A failure says
-- what failed where, with the image's paths: "write /big.bin: No space
-- left on device".
local function copy(path, target, o, is_dir)
  local ok, err, errno = fs.copy(path, target, o)
  if ok then return end
  if errno == E.EISDIR and not is_dir then
    fail("%s is a folder in the image (%s/ copies into it)", target, target)
  end
  local prefix = "copy " .. path .. ": "
  if err:sub(1, #prefix) == prefix then err = err:sub(#prefix + 1) end
  fail("%s", err)
end

-- run(step, root, workdir, dir): copies the step's sources (luactr.build
-- .recipe's plan: { sources, dest, owner, mode }) into the layer's root
-- `root`; `workdir` is the image's, for a relative destination, `dir`
-- the recipe's folder.
function M.run(step, root, workdir, dir)
  local dest = step.dest
  if dest:sub(1, 1) ~= "/" then dest = (workdir or "/"):gsub("/?$", "/") .. dest end
  local into_dir = dest:sub(-1) == "/" or #step.sources > 1
  local mode = step.mode
  local o = {
    to = root, replace = true, special = false,
    owner = step.owner and { step.owner.uid, step.owner.gid },
    -- mode's bits, and folders get x wherever r is set (chmod's X), so
    -- that a tree stays readable
    mode = mode, dir_mode = mode and (mode | ((mode & 292) >> 2)),
  }
  for _, src in ipairs(step.sources) do
    local path, from = source(src, dir)
    local st = must("stat " .. src.path, fs.stat(src.path))
    o.from, o.contents = from, nil
    if st.type == "dir" and src.contents then
      -- "files/": the folder's contents go into dest, as Docker's COPY does
      make_folder(root, dest)
      o.contents = true
      copy(path, dest, o, true)
    elseif into_dir then
      -- a file, or "files" (the folder itself, with its mode and owner),
      -- into dest when dest is a folder ("/srv/"), else to dest itself
      make_folder(root, dest)
      copy(path, dest:gsub("/*$", "/") .. src.path:match("([^/]+)/*$"), o, st.type == "dir")
    else
      local parent = dest:match("^(.*)/[^/]+$")
      make_folder(root, parent ~= "" and parent or "/")
      copy(path, dest, o, st.type == "dir")
    end
  end
end

return M
