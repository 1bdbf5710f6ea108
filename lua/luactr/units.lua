-- luactr.units: the grammars of what users type for sizes and signals,
-- written once for the command line, the Lua API, recipes and settings.
local core = require "luactr.core"

local M = {}

local POWERS = { [""] = 1, k = 2 ^ 10, m = 2 ^ 20, g = 2 ^ 30, t = 2 ^ 40, p = 2 ^ 50 }

-- size(v) -> bytes | nil, message
-- Docker's sizes: an integer is a byte count; a string is a number, with
-- a fraction if need be, and optionally a unit k, m, g, t or p (powers of
-- 1024, any case; "64mb", "64MiB" and "64 m" too): "512k", "1.5g".
function M.size(v)
  if math.type(v) == "integer" then return v end
  if type(v) ~= "string" then return nil, "expected a size" end
  local num, unit = v:lower():match("^(%d+%.?%d*) ?([kmgtp]?)i?b?$")
  if not num then return nil, ("invalid size '%s' (e.g. 512k, 64m, 1g)"):format(v) end
  return math.floor(tonumber(num) * POWERS[unit])
end

local SIGNALS = core.sys.signals  -- name ("KILL") -> number
local NAMES = {}
for name, n in pairs(SIGNALS) do
  if name ~= "RTMIN" and name ~= "RTMAX" then NAMES[n] = name end
end

-- signal(v) -> number | nil: Docker's forms of a signal, "KILL",
-- "SIGKILL", "kill", "9" and 9 alike, and the real-time ones,
-- "RTMIN+3", "SIGRTMAX-1".
function M.signal(v)
  local n = math.tointeger(tonumber(v))
  if n then return n >= 1 and n <= SIGNALS.RTMAX and n or nil end
  if type(v) ~= "string" then return nil end
  local name = v:upper():gsub("^SIG", "")
  if SIGNALS[name] then return SIGNALS[name] end
  local rt, sign, k = name:match("^(RTM[AI][XN])([+-])(%d+)$")
  n = rt and SIGNALS[rt] and SIGNALS[rt] + (sign == "+" and 1 or -1) * tonumber(k)
  return n and n >= SIGNALS.RTMIN and n <= SIGNALS.RTMAX and n or nil
end

-- signal_name(v) -> "SIGTERM" | nil: the name of signal `v` (any form
-- signal() takes), as an image's StopSignal holds it.
function M.signal_name(v)
  local n = M.signal(v)
  if not n then return nil end
  if NAMES[n] then return "SIG" .. NAMES[n] end
  if n == SIGNALS.RTMIN then return "SIGRTMIN" end
  return ("SIGRTMIN+%d"):format(n - SIGNALS.RTMIN)
end

return M
