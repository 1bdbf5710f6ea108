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

return lib
