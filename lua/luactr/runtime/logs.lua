-- luactr.runtime.logs: reading a detached container's log.
--
-- Its monitor (src/luactr-monitor.c) writes JSON lines to log.json in the
-- container's folder, one per line of output, and rotates them by size
-- to log.json.1 (the newest old one) ... log.json.N:
--   {"time":"2026-11-28T06:00:00.123456789Z","stream":"stdout","log":"hi\n"}
-- The log is read while the container runs (a last line may be half
-- written: it waits for its end) and after it has exited.
local core = require "luactr.core"
local errors = require "luactr.errors"
local json = require "luactr.json"

local M = {}

local fs = core.fs

-- parse(line) -> { time=, stream=, log= } | nil
-- The monitor's own shape is read with one match; anything else falls
-- back to the JSON decoder.
local unescape = { n = "\n", t = "\t", r = "\r", b = "\b", f = "\f",
                   ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
local function unquote(s)
  if not s:find("\\", 1, true) then return s end
  local out, i = {}, 1
  while true do
    local j = s:find("\\", i, true)
    if not j then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, j - 1)
    local c = s:sub(j + 1, j + 1)
    if c == "u" then
      out[#out + 1] = utf8.char(tonumber(s:sub(j + 2, j + 5), 16) or 63)
      i = j + 6
    else
      out[#out + 1] = unescape[c] or c
      i = j + 2
    end
  end
  return table.concat(out)
end

function M.parse(line)
  local t, stream, text = line:match('^{"time":"([^"]*)","stream":"(%a+)","log":"(.*)"}$')
  if t then return { time = t, stream = stream, log = unquote(text) } end
  local rec = json.decode(line)
  if type(rec) == "table" and type(rec.log) == "string" then return rec end
  return nil
end

-- since("10m" | "2h" | "30s" | unix seconds | an RFC 3339 time) -> the
-- time as the log writes it, so that strings compare as times.
function M.since(word, now)
  now = now or os.time()
  local n, unit = word:match("^(%d+%.?%d*)([smhd])$")
  local t
  if n then
    t = now - tonumber(n) * ({ s = 1, m = 60, h = 3600, d = 86400 })[unit]
  elseif word:match("^%d+%.?%d*$") then
    t = tonumber(word)
  else
    local d = word:match("^%d%d%d%d%-%d%d%-%d%d$")
    if d then return d .. "T00:00:00.000000000Z" end
    local stamp, frac = word:match("^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d)%.?(%d*)Z$")
    if not stamp then
      errors.fail("logs: since: expected a duration (10m), unix seconds or a time "
        .. "(2026-11-28T06:00:00Z), got '%s'", word)
    end
    return stamp .. "." .. (frac .. "000000000"):sub(1, 9) .. "Z"
  end
  local whole = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole)
    .. (".%09d"):format(math.floor((t - whole) * 1e9)) .. "Z"
end

-- The log's files, oldest first.
local function files(dir)
  local n = 1
  while fs.stat(dir .. "/log.json." .. n) do n = n + 1 end
  local list = {}
  for i = n - 1, 1, -1 do list[#list + 1] = dir .. "/log.json." .. i end
  list[#list + 1] = dir .. "/log.json"
  return list
end

-- A reader of one file: whole lines only; a line still being written
-- waits for the next call.
local function reader(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local st = fs.stat(path)
  local r = { f = f, rest = "", ino = st and st.ino }
  function r.lines(emit)
    local got = f:read("a")
    if not got or got == "" then return false end
    local text = r.rest .. got
    local last = 1
    for line, stop in text:gmatch("([^\n]*)\n()") do
      emit(line)
      last = stop
    end
    r.rest = text:sub(last)
    return true
  end
  return r
end

local function running(store, id)
  local state = require "luactr.runtime.state"
  return state.is_active(state.read(store, id))
end

-- read(store, id, o) -> records | nil (with o.each)
-- o: tail (the last N records), since (see M.since), follow (then wait
-- for more while the container runs), each(record) (each record as it
-- comes; without it the records are returned).
function M.read(store, id, o)
  local dir = store:container_dir(id)
  local since = o.since and M.since(o.since)
  local list = not o.each and {} or nil
  local function out(rec)
    if list then list[#list + 1] = rec else o.each(rec) end
  end
  local function keep(rec)
    return rec and not (since and rec.time < since)
  end
  -- what is there now: the tail is taken over all the files
  local tail, ring = o.tail and o.tail >= 0 and o.tail or nil, {}
  local current
  for _, path in ipairs(files(dir)) do
    local r = reader(path)
    if r then
      r.lines(function(line)
        local rec = M.parse(line)
        if keep(rec) then
          if tail then
            ring[#ring + 1] = rec
            if #ring > tail then table.remove(ring, 1) end
          else
            out(rec)
          end
        end
      end)
      if path == dir .. "/log.json" then current = r else r.f:close() end
    end
  end
  for _, rec in ipairs(ring) do out(rec) end
  if not o.follow then
    if current then current.f:close() end
    return list
  end
  -- then what comes, across rotations, while the container runs
  local function emit(line)
    local rec = M.parse(line)
    if keep(rec) then out(rec) end
  end
  while true do
    local got = current and current.lines(emit)
    local st = fs.stat(dir .. "/log.json")
    if current and st and st.ino ~= current.ino then
      current.lines(emit)  -- the rest of the file rotated away
      current.f:close()
      current = reader(dir .. "/log.json")
      got = true
    elseif not current and st then
      current, got = reader(dir .. "/log.json"), true
    end
    if not got then
      if not running(store, id) then
        if current then current.lines(emit) end
        break
      end
      core.sys.sleep(0.05)
    end
  end
  if current then current.f:close() end
  return list
end

return M
