-- luactr.cli.output: how the verbs print: columns, ages, sizes, and
-- one line a name for the verbs that act on several.
local errors = require "luactr.errors"

local M = {}

function M.out(fmt, ...)
  io.stdout:write(fmt:format(...))
end

-- Prints rows as columns, Docker's way.
function M.columns(rows)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, #tostring(cell))
    end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      cells[i] = i < #row and ("%-" .. widths[i] .. "s"):format(cell) or tostring(cell)
    end
    io.stdout:write(table.concat(cells, "   "), "\n")
  end
end

-- Seconds since the epoch of a UTC calendar time, by arithmetic (H.
-- Hinnant's days_from_civil): os.time would read the time zone at each
-- call, and ps calls this twice a container.
local function utc_epoch(y, m, d, h, mi, s)
  y = m <= 2 and y - 1 or y
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m > 2 and m - 3 or m + 9) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return ((era * 146097 + doe - 719468) * 24 + h) * 3600 + mi * 60 + s
end

local now
-- ago("2026-12-03T14:03:28Z") -> "5 minutes ago"
function M.ago(iso)
  if not iso then return "" end
  local y, mo, d, h, mi, se = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then return iso end
  now = now or os.time()
  local secs = now - utc_epoch(tonumber(y), tonumber(mo), tonumber(d),
    tonumber(h), tonumber(mi), tonumber(se))
  if secs < 0 then secs = 0 end
  if secs < 60 then return ("%d seconds ago"):format(secs) end
  if secs < 3600 then return ("%d minutes ago"):format(secs // 60) end
  if secs < 86400 then return ("%d hours ago"):format(secs // 3600) end
  return ("%d days ago"):format(secs // 86400)
end

-- Sizes as Docker prints them: memory in powers of 1024 ("1.953MiB"),
-- block I/O in powers of 1000 ("4.1kB").
local function human(n, base, units, digits)
  n = n or 0
  local i = 1
  while n >= base and i < #units do
    n = n / base
    i = i + 1
  end
  return ("%." .. digits .. "g%s"):format(n, units[i])
end

function M.binary(n)
  return human(n, 1024, { "B", "KiB", "MiB", "GiB", "TiB", "PiB" }, 4)
end

function M.decimal(n)
  return human(n, 1000, { "B", "kB", "MB", "GB", "TB", "PB" }, 3)
end

-- each(names, fn, [silent]) -> status: does fn(what) for each name,
-- printing `what` after each one done (as Docker echoes the names given)
-- unless `silent`; a failure is printed and the others are still done.
-- The status is that of the last failure, else 0.
function M.each(names, fn, silent)
  local status = 0
  for _, what in ipairs(names) do
    local ok, err = pcall(fn, what)
    if ok then
      if not silent then M.out("%s\n", what) end
    elseif errors.is(err) then
      io.stdout:flush()
      io.stderr:write("luactr: ", err.message, "\n")
      status = err.status
    else
      error(err, 0)
    end
  end
  return status
end

-- usage_or_names(verb, o, rest, usage) -> true once `usage` is printed
-- for --help; fails when no container is named.
function M.usage_or_names(verb, o, rest, usage)
  if o.help then
    io.stdout:write(usage)
    return true
  end
  if #rest == 0 then errors.fail("%s: give a container (see 'luactr %s --help')", verb, verb) end
end

return M
