-- luactr.spec.resources: a run's limit options, made the OCI spec's
-- linux.resources (which luactr.runtime.cgroup writes into cgroup files).
local core = require "luactr.core"
local errors = require "luactr.errors"
local units = require "luactr.units"

local M = {}

local fail = errors.fail

local function readfile(path)
  return core.fs.read(path)
end

-- The number of CPUs this host has online.
function M.online_cpus()
  local text = readfile("/sys/devices/system/cpu/online") or "0"
  local n = 0
  for a, b in text:gmatch("(%d+)%-?(%d*)") do
    n = n + (b ~= "" and tonumber(b) - tonumber(a) + 1 or 1)
  end
  return math.max(n, 1)
end

-- A device's major and minor numbers, from its path on the host.
local function device_numbers(path, where)
  local st, err = core.fs.stat(path)
  if not st then fail("%s: %s", where, err) end
  if st.type ~= "block" then fail("%s: %s is not a block device", where, path) end
  local dev = st.rdev
  local major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)
  local minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
  return major, minor
end

local function throttles(list, where)
  local t = {}
  for i, spec in ipairs(list or {}) do
    local at = ("%s[%d]"):format(where, i)
    local path, rate = tostring(spec):match("^(/.+):([^:]+)$")
    if not path then fail("%s: expected DEVICE:RATE (e.g. /dev/sda:1mb), got '%s'", at, spec) end
    local bytes, err = units.size(rate)
    if not bytes then fail("%s: %s", at, err) end
    local major, minor = device_numbers(path, at)
    t[#t + 1] = { major = major, minor = minor, rate = bytes }
  end
  return #t > 0 and t or nil
end

-- A list of CPUs or memory nodes, as cpuset takes it: "0-2,4".
local function cpu_list(s, where)
  if s == nil then return nil end
  for item in (s .. ","):gmatch("([^,]*),") do
    local a, b = item:match("^(%d+)%-(%d+)$")
    if not (a or item:match("^%d+$")) or (a and tonumber(a) > tonumber(b)) then
      fail("%s: expected a list such as 0-2,4, got '%s'", where, s)
    end
  end
  return s
end

-- o[key] as an integer from lo to hi, or nil when not given; a failure
-- naming the option otherwise.
local function ranged(o, key, lo, hi, where)
  if o[key] == nil then return nil end
  local n = math.tointeger(o[key])
  if not n or n < lo or n > hi then
    fail("%s: %s: expected an integer from %d to %d, got %s", where, key, lo, hi, o[key])
  end
  return n
end

-- of(o, [where]) -> OCI linux.resources table, or nil when `o` sets
-- no limit. `o` holds the run options (Docker's flag names, as keys):
-- memory, memory_swap, memory_reservation (sizes), cpus (a number),
-- cpu_shares, cpuset_cpus, cpuset_mems, pids_limit, blkio_weight,
-- device_read_bps, device_write_bps (arrays of "DEVICE:RATE").
-- Raises a luactr error naming the option when a value is wrong.
function M.of(o, where)
  where = where or "run"
  local function size(key)
    if o[key] == nil then return nil end
    local n, err = units.size(o[key])
    if not n then fail("%s: %s: %s", where, key, err) end
    return n
  end
  local r = {}
  local limit = size("memory")
  local swap
  if o.memory_swap == -1 or o.memory_swap == "-1" then
    swap = -1
  else
    swap = size("memory_swap")
    if swap == 0 then swap = nil end
  end
  local reservation = size("memory_reservation")
  if limit and limit < 6 * 2 ^ 20 then
    fail("%s: memory: the minimum is 6m, got %s", where, o.memory)
  end
  if swap and not limit then
    fail("%s: memory_swap needs memory as well", where)
  end
  if swap and swap ~= -1 and swap < limit then
    fail("%s: memory_swap (memory and swap) must be at least memory", where)
  end
  if reservation and limit and reservation > limit then
    fail("%s: memory_reservation must be at most memory", where)
  end
  -- Docker's default: as much swap as memory
  if limit and not swap then swap = 2 * limit end
  if limit or reservation then
    r.memory = { limit = limit, swap = swap, reservation = reservation }
  end

  local cpu = {}
  if o.cpus ~= nil then
    local n = tonumber(o.cpus)
    local ncpu = M.online_cpus()
    if not n or n <= 0 then fail("%s: cpus: expected a positive number, got '%s'", where, o.cpus) end
    if n > ncpu then
      fail("%s: cpus: the range is from 0.01 to %d.00, as there are only %d CPUs", where, ncpu, ncpu)
    end
    cpu.period = 100000
    cpu.quota = math.floor(n * cpu.period + 0.5)
    if cpu.quota < 1000 then fail("%s: cpus: the minimum is 0.01", where) end
  end
  cpu.shares = ranged(o, "cpu_shares", 2, 262144, where)
  cpu.cpus = cpu_list(o.cpuset_cpus, where .. ": cpuset_cpus")
  cpu.mems = cpu_list(o.cpuset_mems, where .. ": cpuset_mems")
  if next(cpu) then r.cpu = cpu end

  if o.pids_limit ~= nil then
    local n = math.tointeger(o.pids_limit)
    if not n then fail("%s: pids_limit: expected an integer, got %s", where, o.pids_limit) end
    r.pids = { limit = n > 0 and n or -1 }
  end

  local io = {}
  io.weight = ranged(o, "blkio_weight", 10, 1000, where)
  io.throttleReadBpsDevice = throttles(o.device_read_bps, where .. ": device_read_bps")
  io.throttleWriteBpsDevice = throttles(o.device_write_bps, where .. ": device_write_bps")
  if next(io) then r.blockIO = io end

  return next(r) and r or nil
end

return M
