-- luactr.image: what is done to the store's images: list, remove (with
-- Docker's rule for images in use), tag, history, inspect.
local errors = require "luactr.errors"

local M = {}

local fail = errors.fail

local function open_store()
  return require("luactr.storage").open()
end

-- list() -> the store's images (OCI image configs with .ref and .id; one
-- whose file is damaged is { ref=, id=, damaged = why }), sorted by ref.
function M.list()
  return open_store():images()
end

-- get(ref) -> the image (its config with .ref and .id) | raises "no such
-- image" (or why it is damaged). `verb` prefixes the message.
function M.get(ref, verb)
  local img, damaged = open_store():image(ref)
  if not img then
    fail("%s: %s", verb or "image", damaged or ("no such image: " .. errors.quote(ref)))
  end
  return img
end

-- remove(refs, [{ force= }]) -> { untagged = { refs }, deleted = n }
-- Removes the images named (a damaged one too: nothing can be made from
-- it), then the layers no image uses any more. As Docker: an image stays
-- while a container made from it does, unless another name keeps it, or
-- `force` (the container keeps its root: a snapshot, or overlay layers
-- that no prune takes while it is there). Nothing is removed when one of
-- them cannot be.
function M.remove(refs, o)
  local s = open_store()
  local lock <close> = s:lock()
  local list, going = {}, {}
  for _, ref in ipairs(refs) do
    local img = s:image_entry(ref)
    if not img then fail("rmi: no such image: %s", errors.quote(ref)) end
    list[#list + 1], going[img.ref] = img, true
  end
  if not (o and o.force) then
    local kept = {}
    for _, img in ipairs(s:images()) do
      if not going[img.ref] then kept[img.id] = true end
    end
    for _, st in ipairs(require("luactr.runtime.containers").list(s)) do
      for _, img in ipairs(list) do
        if st.image_id == img.id and not kept[img.id] then
          fail("rmi: image %s is used by container %s: remove the container first",
            img.ref, st.id:sub(1, 12))
        end
      end
    end
  end
  local untagged = {}
  for _, img in ipairs(list) do
    s:remove_image(img.ref)
    untagged[#untagged + 1] = img.ref
  end
  return { untagged = untagged, deleted = s:prune_layers() }
end

-- tag(source, target): gives image `source` the name `target` (a
-- reference in Docker's grammar) too.
function M.tag(source, target)
  local s = open_store()
  local lock <close> = s:lock()
  local img = s:image(source)
  if not img then fail("tag: no such image: %s", errors.quote(source)) end
  img.id, img.ref = nil, nil
  s:put_image(target, img)
end

-- history(ref) -> { { step=, created_by=, layer= (12 hex digits, or nil
-- for a step that made no layer) } }, the newest step first.
function M.history(ref)
  local img = M.get(ref, "history")
  local rows = {}
  local layers = img.luactr and img.luactr.layers or {}
  local layer = #layers
  local history = img.history or {}
  for i = #history, 1, -1 do
    local h = history[i]
    local mark
    if not h.empty_layer then
      mark = (layers[layer] or ""):sub(1, 12)
      layer = layer - 1
    end
    rows[#rows + 1] = { step = i, created_by = h.created_by or "", layer = mark }
  end
  return rows
end

return M
