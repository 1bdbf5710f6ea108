-- luactr.ids: names and times that luactr makes up: container ids,
-- random tokens, timestamps.
local M = {}

-- hex(n) -> n random bytes as 2n hex digits (the kernel's random source)
function M.hex(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(n)
  f:close()
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- new() -> a container id, Docker's way: 64 hex digits, shown by its
-- first 12.
function M.new()
  return M.hex(32)
end

-- now() -> the time as state files and inspect show it: UTC, to the
-- second ("2026-12-03T14:03:28Z").
function M.now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

return M
