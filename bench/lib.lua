-- bench/lib.lua: what the bench scripts share. Each loads it with
--   local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
-- which also points package.path and package.cpath at the checkout (the
-- folder above bench/) and its build (LUACTR_BUILDDIR, default build).
local lib = {}

-- The checkout is the folder above the running script's own.
local function checkout_top()
  local dir = arg[0]:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local p = assert(io.popen("pwd"))
    dir = p:read("l") .. "/" .. dir
    p:close()
  end
  return dir:match("^(.+)/bench/?$") or dir .. "/.."
end

lib.TOP = checkout_top()
lib.BUILD = os.getenv("LUACTR_BUILDDIR") or "build"
package.path = lib.TOP .. "/lua/?.lua;" .. lib.TOP .. "/lua/?/init.lua;" .. package.path
package.cpath = lib.TOP .. "/" .. lib.BUILD .. "/?.so;" .. package.cpath

-- A shell word for s.
function lib.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The whole of a file, or nil.
function lib.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- sh(cmd) -> ok, output: a shell command line, stdout and stderr
-- together. For setup and checks, never timed.
function lib.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

-- The q-quantile of sorted xs, interpolating between neighbours.
function lib.quantile(xs, q)
  local pos = 1 + (#xs - 1) * q
  local lo = math.floor(pos)
  local hi = math.min(lo + 1, #xs)
  return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
end

return lib
