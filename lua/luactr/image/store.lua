-- luactr.image.store: the images of a store, one record each.
--
--   images/<name>:<tag>.json   ("/" in the name written %2F)
--
-- A record is an OCI image config with luactr's own field, luactr =
-- { layers = { key... }, top = key, chain = digest }: the layers (in
-- layers/, see luactr.storage) the image's root is made of. An image's
-- id is the sha256 of its record. A record that cannot be read as one
-- is a damaged image: listed, removable, never run. The store's methods
-- (store:image, images, image_entry, put_image, remove_image) are these
-- functions, with the store first.
local check = require "luactr.check"
local core = require "luactr.core"
local errors = require "luactr.errors"
local json = require "luactr.json"
local reference = require "luactr.image.reference"

local fs = core.fs
local E = core.sys.errno

local M = {}

local fail, must = errors.fail, errors.must

-- Splits a reference "name[:tag]" into its parts (Docker's grammar, see
-- luactr.image.reference); the tag defaults to "latest". Raises when it is no
-- valid reference, or has a digest (the store keeps images by name:tag).
local function parse_ref(ref)
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

local function image_file(store, name, tag)
  return ("%s/images/%s:%s.json"):format(store.dir, name:gsub("/", "%%2F"), tag)
end

-- ref_file(store, ref, [lookup]) -> path, full name; raises when `ref`
-- is no valid reference. A lookup raises not: it finds the image of an
-- old name (old_name) that is there, and else nothing (nil) by a digest
-- or a reference that is not one.
local function ref_file(store, ref, lookup)
  local r = reference.parse(ref)
  local name, tag
  if r and not r.digest or not lookup then
    name, tag = parse_ref(ref)  -- raises when it is no reference
  elseif not r and type(ref) == "string" then
    name, tag = old_name(ref)
    if name and not fs.lstat(image_file(store, name, tag)) then name = nil end
  end
  if not name then return nil end
  return image_file(store, name, tag), name .. ":" .. tag
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

-- list(store) -> the image configs (with .id and .ref), and the damaged
-- entries (see read_image), sorted by ref.
function M.list(store)
  local list = {}
  for _, file in ipairs(fs.readdir(store.dir .. "/images") or {}) do
    local ref = file:match("^(.*)%.json$")
    if ref and file:sub(1, 1) ~= "." then
      ref = ref:gsub("%%2F", "/")
      local path, full = ref_file(store, ref, true)
      local img = path and read_image(path, full)
      if img then list[#list + 1] = img end
    end
  end
  table.sort(list, function(a, b) return a.ref < b.ref end)
  return list
end

-- entry(store, ref) -> the image (as get gives it), a damaged entry (see
-- read_image: list shows it, remove removes it), or nil. A unique prefix
-- (4 hex digits or more) of an image id names it too.
function M.entry(store, ref)
  local path, full = ref_file(store, ref, true)
  local img = path and read_image(path, full)
  if not img and type(ref) == "string" and ref:match("^%x+$") and #ref >= 4 then
    for _, entry in ipairs(M.list(store)) do
      if entry.id:sub(1, #ref) == ref then
        if img and img.id ~= entry.id then fail("image id prefix %s is ambiguous", errors.quote(ref)) end
        img = entry
      end
    end
  end
  return img
end

-- get(store, ref) -> the image's config table (with .id and .ref) | nil,
-- and then why when its file is damaged.
function M.get(store, ref)
  local img = M.entry(store, ref)
  if img and img.damaged then
    return nil, ("image %s is damaged (%s): remove it with rmi, or build it again"):format(
      img.ref, img.damaged)
  end
  return img
end

-- put(store, ref, config) -> id. Written atomically, under the store
-- lock, and only when every layer of the image is in the store: a layer
-- pruned while the image was built would make an image that cannot run.
function M.put(store, ref, config)
  local path, full = ref_file(store, ref)
  local text = json.encode(config)
  local lock <close> = store:lock()
  for _, key in ipairs(config.luactr and config.luactr.layers or {}) do
    if not store:has_layer(key) then
      fail("image %s: its layer %s was removed meanwhile (rmi?): build it again", full, key:sub(1, 12))
    end
  end
  must("image " .. full, fs.write_atomic(path, text))
  return core.digest.sha256(text)
end

-- remove(store, ref): removes the record of image `ref` (not its layers:
-- see store:prune_layers). Raises when there is none.
function M.remove(store, ref)
  local path, full = ref_file(store, ref, true)
  if not path then fail("no such image: %s", errors.quote(ref)) end
  local ok, err, errno = fs.unlink(path)
  if not ok then
    if errno == E.ENOENT then fail("no such image: %s", errors.quote(ref)) end
    fail("remove %s: %s", full, err)
  end
end

return M
