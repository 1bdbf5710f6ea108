-- luactr.cli.images: `images`, `rmi`, `tag`, `history`.
local errors = require "luactr.errors"
local flags = require "luactr.cli.flags"
local output = require "luactr.cli.output"

local M = {}

local fail, out, columns, ago = errors.fail, output.out, output.columns, output.ago

function M.images(args)
  local o = flags.parse("images", { quiet = { short = "q" } }, args)
  local rows = { { "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "LAYERS" } }
  for _, img in ipairs(require("luactr").images()) do
    if o.quiet then
      out("%s\n", img.id:sub(1, 12))
    else
      local name, tag = img.ref:match("^(.*):([^:]*)$")
      if img.damaged then
        -- listed, so that it can be seen and removed, and said why
        io.stderr:write(("luactr: image %s is damaged (%s): remove it with rmi, or build it again\n")
          :format(img.ref, img.damaged))
        rows[#rows + 1] = { name, tag, img.id:sub(1, 12), "damaged", "-" }
      else
        rows[#rows + 1] = { name, tag, img.id:sub(1, 12), ago(img.created),
          #(img.luactr and img.luactr.layers or {}) }
      end
    end
  end
  if not o.quiet then columns(rows) end
  return 0
end

function M.rmi(args)
  local o, rest = flags.parse("rmi", { force = { short = "f" } }, args)
  if #rest == 0 then fail("rmi: give an image") end
  local done = require("luactr").rmi(rest, { force = o.force })
  for _, ref in ipairs(done.untagged) do out("Untagged: %s\n", ref) end
  if done.deleted > 0 then out("Deleted: %d layers\n", done.deleted) end
  return 0
end

function M.tag(args)
  local _, rest = flags.parse("tag", {}, args)
  if #rest ~= 2 then fail("tag: usage: luactr tag SOURCE TARGET") end
  require("luactr").tag(rest[1], rest[2])
  return 0
end

function M.history(args)
  local _, rest = flags.parse("history", {}, args)
  if #rest ~= 1 then fail("history: usage: luactr history IMAGE") end
  local rows = { { "STEP", "CREATED BY", "LAYER" } }
  for _, h in ipairs(require("luactr").history(rest[1])) do
    rows[#rows + 1] = { h.step, h.created_by, h.layer or "-" }
  end
  columns(rows)
  return 0
end

return M
