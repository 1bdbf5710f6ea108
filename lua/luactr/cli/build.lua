-- luactr.cli.build: `luactr build` (and `luactr RECIPE.lua`).
local errors = require "luactr.errors"
local flags = require "luactr.cli.flags"

local M = {}

local fail = errors.fail

local OPTIONS = {
  ["no-cache"] = { key = "no_cache" },
  ["dry-run"] = { key = "dry_run" },
  quiet = { short = "q" },
  help = {},
}

-- Swallows the build's progress under --quiet.
local SILENT = { write = function(self) return self end, flush = function() end }

function M.build(args)
  local o, rest = flags.parse("build", OPTIONS, args)
  if o.help then
    io.stdout:write("Usage: luactr build [--no-cache] [--dry-run] [-q] RECIPE.lua [IMAGE...]\n")
    return 0
  end
  if #rest == 0 then fail("build: give a recipe (see 'luactr build --help')") end
  local luactr = require "luactr"
  local plan = luactr.load(rest[1])
  if o.dry_run then
    io.stdout:write(luactr.format(plan))
    return 0
  end
  local built = luactr.build(plan, { no_cache = o.no_cache,
    only = table.move(rest, 2, #rest, 1, {}), out = o.quiet and SILENT or nil })
  if o.quiet then
    -- the ids alone, in build order, as docker build -q prints them
    for _, image in ipairs(plan.images) do
      if built[image.name] then io.stdout:write(built[image.name].id, "\n") end
    end
  end
  return 0
end

return M
