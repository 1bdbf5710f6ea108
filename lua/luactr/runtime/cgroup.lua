-- luactr.runtime.cgroup: the cgroups of containers, on cgroup v1, v2 and hybrid
-- hosts.
--
--   local layout = cgroup.detect()               -- where luactr's own are
--   local r = require("luactr.spec.resources").of{ memory = "64m", pids_limit = 100 }
--   local cg = cgroup.create(layout, id, r)      -- luactr-<id12>, limited
--   core.spawn(spec, { cgroups = cg:folders() }) -- joined before exec
--   cg:oom_killed(); cg:stats(); cg:kill(); cg:remove()
--
-- Policy lives here; core.cgroup only makes, writes, reads, kills and
-- removes folders. The rules:
-- * A container's cgroup is made beneath the cgroup luactr itself runs in,
--   per controller (from /proc/self/cgroup), or beneath --cgroup-parent:
--   relative, beneath luactr's own; absolute, an existing cgroup the user
--   names. luactr never writes to, moves processes out of, or removes a
--   cgroup it did not make. On v2 that means the controllers must already
--   be enabled (delegated) in the parent's cgroup.subtree_control.
-- * Each controller is taken from its v1 hierarchy when it has one, and
--   otherwise from the unified (v2) hierarchy: v1, v2 and the hybrid
--   layout (v1 controllers beside a cgroup2 mount) all work the same way.
-- * Limits are the OCI spec's linux.resources, written to the v1 or v2
--   files as crun's cgroup-resources.c writes them.
local core = require "luactr.core"
local devices = require "luactr.spec.devices"
local errors = require "luactr.errors"

local M = {}

local cg = core.cgroup
local fail = errors.fail
local E = core.sys.errno

-- The name of a container's cgroup folder.
function M.name(id)
  return "luactr-" .. id:sub(1, 12)
end

local NAME_PATTERN = "^luactr%-" .. ("%x"):rep(12) .. "$"

local function basename(path)
  return path:match("([^/]*)/*$")
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "/"
end

local function readfile(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- {====== files and values

-- cgroup v2's cpu.weight from v1 shares, as crun and runc convert:
-- [2, 262144] onto [1, 10000].
function M.shares_to_weight(shares)
  return 1 + ((shares - 2) * 9999) // 262142
end

-- v2's io.weight from a blkio weight, when io.bfq.weight is missing:
-- [10, 1000] onto [1, 10000], as crun does.
function M.blkio_to_io_weight(w)
  return 1 + ((w - 10) * 9999) // 990
end

-- The logical controllers a container's cgroup is made in, and the name
-- each has on v2 (false: no controller, the files are always there).
local V2_NAME = { memory = "memory", pids = "pids", cpu = "cpu", cpuset = "cpuset",
                  blkio = "io", cpuacct = false, freezer = false, devices = false }

-- Those luactr always puts a container in, where the host has them: for
-- accounting (stats, OOM), killing and freezing, even with no limit.
M.ALWAYS = { "memory", "pids", "cpu", "cpuacct", "freezer", "blkio" }

-- settings(resources, versions) -> { { controller=, file=, value=,
-- alt = { file=, value= }, optional= }, ... }, in the order to write.
-- `versions` is 1 or 2, or a table from controller to 1 or 2. `alt` is
-- written instead when `file` does not exist; an `optional` file that
-- does not exist is skipped (swap with swap accounting off, as crun).
function M.settings(r, versions)
  local function version(c)
    if type(versions) == "table" then return versions[c] or 1 end
    return versions or 1
  end
  local list = {}
  local function add(controller, file, value, extra)
    local s = { controller = controller, file = file, value = tostring(value) }
    for k, v in pairs(extra or {}) do s[k] = v end
    list[#list + 1] = s
  end
  r = r or {}
  local mem = r.memory
  if mem then
    if version("memory") == 2 then
      if mem.limit then add("memory", "memory.max", mem.limit == -1 and "max" or mem.limit) end
      if mem.swap then
        local v = mem.swap
        if v == -1 then v = "max" elseif mem.limit then v = v - mem.limit end
        add("memory", "memory.swap.max", v, { optional = true })
      end
      if mem.reservation then add("memory", "memory.low", mem.reservation) end
    else
      if mem.limit then add("memory", "memory.limit_in_bytes", mem.limit) end
      if mem.swap then add("memory", "memory.memsw.limit_in_bytes", mem.swap, { optional = true }) end
      if mem.reservation then add("memory", "memory.soft_limit_in_bytes", mem.reservation) end
    end
  end
  local cpu = r.cpu
  if cpu then
    if version("cpu") == 2 then
      if cpu.shares then add("cpu", "cpu.weight", M.shares_to_weight(cpu.shares)) end
      if cpu.quota or cpu.period then
        add("cpu", "cpu.max", ("%s %d"):format(cpu.quota and cpu.quota > 0 and cpu.quota or "max",
          cpu.period or 100000))
      end
    else
      if cpu.shares then add("cpu", "cpu.shares", cpu.shares) end
      if cpu.period then add("cpu", "cpu.cfs_period_us", cpu.period) end
      if cpu.quota then add("cpu", "cpu.cfs_quota_us", cpu.quota) end
    end
    if cpu.cpus then add("cpuset", "cpuset.cpus", cpu.cpus) end
    if cpu.mems then add("cpuset", "cpuset.mems", cpu.mems) end
  end
  if r.pids and r.pids.limit then
    add("pids", "pids.max", r.pids.limit > 0 and r.pids.limit or "max")
  end
  local io = r.blockIO
  if io then
    local v2 = version("blkio") == 2
    if io.weight then
      if v2 then
        add("blkio", "io.bfq.weight", io.weight,
          { alt = { file = "io.weight", value = tostring(M.blkio_to_io_weight(io.weight)) } })
      else
        add("blkio", "blkio.weight", io.weight,
          { alt = { file = "blkio.bfq.weight", value = tostring(io.weight) } })
      end
    end
    for _, t in ipairs({ { "throttleReadBpsDevice", "read_bps_device", "rbps" },
                         { "throttleWriteBpsDevice", "write_bps_device", "wbps" } }) do
      for _, d in ipairs(io[t[1]] or {}) do
        if v2 then
          add("blkio", "io.max", ("%d:%d %s=%d"):format(d.major, d.minor, t[3], d.rate))
        else
          add("blkio", "blkio.throttle." .. t[2], ("%d:%d %d"):format(d.major, d.minor, d.rate))
        end
      end
    end
  end
  return list
end

-- The controllers a resources table needs.
local function required(r)
  local need = {}
  r = r or {}
  if r.memory then need.memory = "memory" end
  if r.cpu and (r.cpu.shares or r.cpu.quota or r.cpu.period) then need.cpu = "cpus or cpu_shares" end
  if r.cpu and (r.cpu.cpus or r.cpu.mems) then need.cpuset = "cpuset_cpus or cpuset_mems" end
  if r.pids then need.pids = "pids_limit" end
  if r.blockIO then need.blkio = "blkio_weight or device_*_bps" end
  if r.devices and not devices.allows_all(r.devices) then need.devices = "the device rules" end
  return need
end

-- }======

-- {====== layout

local function unescape(s)
  return (s:gsub("\\(%d%d%d)", function(o) return string.char(tonumber(o, 8)) end))
end

-- parse_mountinfo(text) -> the cgroup mounts: { root=, point=, fstype=,
-- options = { [option] = true } }, in mount order.
function M.parse_mountinfo(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do
    local pre, post = line:match("^(.-) %- (.*)$")
    if pre then
      local f = {}
      for w in pre:gmatch("%S+") do f[#f + 1] = w end
      local fstype, super = post:match("^(%S+) %S+ (%S+)")
      if (fstype == "cgroup" or fstype == "cgroup2") and f[5] then
        local options = {}
        for opt in super:gmatch("[^,]+") do options[opt] = true end
        list[#list + 1] = { root = unescape(f[4]), point = unescape(f[5]),
                            fstype = fstype, options = options }
      end
    end
  end
  return list
end

-- parse_cgroup(text) -> the lines of /proc/PID/cgroup: { id=,
-- controllers = { names }, path= }; v2's line has no controllers.
function M.parse_cgroup(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do
    local id, names, path = line:match("^(%d+):([^:]*):(.*)$")
    if id then
      local controllers = {}
      for n in names:gmatch("[^,]+") do controllers[#controllers + 1] = n end
      list[#list + 1] = { id = tonumber(id), controllers = controllers, path = path }
    end
  end
  return list
end

-- The part of cgroup `path` below a mount's `root`, or nil when the path
-- is not beneath it (that mount does not show it).
local function below(path, root)
  if root == "/" then return path == "/" and "" or path end
  if path == root then return "" end
  if path:sub(1, #root + 1) == root .. "/" then return path:sub(#root + 1) end
  return nil
end

local function words(text)
  local set = {}
  for w in (text or ""):gmatch("%S+") do set[w] = true end
  return set
end

-- detect([{ mountinfo=, cgroup=, root= }]) -> layout | nil, message
-- Finds the cgroup luactr runs in for each controller. `mountinfo` and
-- `cgroup` are the texts of /proc/self/mountinfo and /proc/self/cgroup
-- (read when absent), and `root` a folder prefixed to every path (a
-- fake tree in tests). The layout:
--   mode = "v1" | "v2" | "hybrid"
--   controllers = { [name] = { version=, dir=, mount=, mount_root=,
--                              path= (the cgroup path) } }
--   unified = { dir=, mount=, mount_root=, path=, available=, delegated= }
--     (when a cgroup2 hierarchy shows luactr's cgroup; `available` and
--     `delegated` are the sets of its cgroup.controllers and
--     cgroup.subtree_control)
-- Controller names are the v1 ones (blkio for v2's io, and cpuacct and
-- freezer for v2's core files).
function M.detect(o)
  o = o or {}
  local mountinfo = o.mountinfo or readfile("/proc/self/mountinfo") or ""
  local text = o.cgroup or readfile("/proc/self/cgroup") or ""
  local prefix = o.root or ""
  local mounts = M.parse_mountinfo(mountinfo)
  local has_v1, has_v2 = false, false
  for _, m in ipairs(mounts) do
    if m.fstype == "cgroup2" then
      has_v2 = true
    else
      for opt in pairs(m.options) do
        if V2_NAME[opt] ~= nil or opt == "devices" or opt == "hugetlb"
           or opt == "net_cls" or opt == "perf_event" then
          has_v1 = true
        end
      end
    end
  end
  if not has_v1 and not has_v2 then return nil, "no cgroup filesystem is mounted" end
  local layout = { mode = has_v1 and has_v2 and "hybrid" or has_v1 and "v1" or "v2",
                   root = prefix, controllers = {} }
  -- a mount that a later one covers at the same point shows nothing
  local top = {}
  for i, m in ipairs(mounts) do top[m.point] = i end
  local function place(path, fstype, wants)
    for i, m in ipairs(mounts) do
      if m.fstype == fstype and top[m.point] == i and wants(m) then
        local rest = below(path, m.root)
        if rest then
          return { dir = prefix .. m.point .. rest, mount = prefix .. m.point,
                   mount_root = m.root, path = path }
        end
      end
    end
  end
  for _, line in ipairs(M.parse_cgroup(text)) do
    if #line.controllers == 0 and line.id == 0 then
      local u = place(line.path, "cgroup2", function() return true end)
      if u then
        u.available = words(cg.read(u.dir, "cgroup.controllers"))
        u.delegated = words(cg.read(u.dir, "cgroup.subtree_control"))
        layout.unified = u
      end
    else
      for _, name in ipairs(line.controllers) do
        if not name:match("^name=") then
          local at = place(line.path, "cgroup", function(m) return m.options[name] end)
          if at then
            at.version = 1
            layout.controllers[name] = at
          end
        end
      end
    end
  end
  local u = layout.unified
  if u then
    for name, v2 in pairs(V2_NAME) do
      if not layout.controllers[name] and (v2 == false or u.available[v2]) then
        layout.controllers[name] = { version = 2, dir = u.dir, mount = u.mount,
          mount_root = u.mount_root, path = u.path, v2name = v2 or nil }
      end
    end
  end
  return layout
end

-- }======

-- {====== a container's cgroup

local Cgroup = {}
Cgroup.__index = Cgroup

-- The folder that the container's folder goes in, for controller entry
-- `e`, and the folders between it and luactr's own cgroup (to make).
local function parent_of(e, parent)
  if not parent or parent == "" then return e.dir, {} end
  local function components(p, where)
    local list = {}
    for c in p:gmatch("[^/]+") do
      if c == "." or c == ".." or not c:match("^[%w_.%-@:]+$") then
        fail("%s: invalid cgroup path '%s'", where, p)
      end
      list[#list + 1] = c
    end
    return list
  end
  if parent:sub(1, 1) == "/" then
    -- a cgroup the user names, by its path in the hierarchy: it must exist
    components(parent, "cgroup_parent")
    local rest = below(parent, e.mount_root)
    if not rest then
      fail("cgroup_parent: %s is not visible in %s", parent, e.mount)
    end
    local dir = e.mount .. rest
    if not core.fs.stat(dir) then fail("cgroup_parent: no cgroup %s (%s)", parent, dir) end
    return dir, {}
  end
  local between, dir = {}, e.dir
  for _, c in ipairs(components(parent, "cgroup_parent")) do
    dir = dir .. "/" .. c
    between[#between + 1] = dir
  end
  return dir, between
end

-- A new v1 cpuset folder starts with no CPU and no memory node: it gets
-- its parent's before anything can join it.
local function copy_cpuset(dir)
  for _, file in ipairs({ "cpuset.cpus", "cpuset.mems" }) do
    local own = cg.read(dir, file)
    if own and own:match("^%s*$") then
      local value = errors.must("cgroup", cg.read(dirname(dir), file))
      errors.must("cgroup", cg.write(dir, file, (value:gsub("%s+$", ""))))
    end
  end
end

-- create(layout, id, resources, [{ parent=, planned= }]) -> cgroup
-- Makes the container's folder luactr-<id12> beneath luactr's own cgroup
-- (or `parent`) in each hierarchy it uses, and writes the limits. Raises
-- a luactr error, having removed what it made, when any step fails.
-- `planned(paths)` is called with the folders (controller -> folder)
-- before any is made: recorded there, no folder is ever made that a
-- killed caller leaves unrecorded (the parent folders made for it are in
-- cgroup.parents once it returns).
function M.create(layout, id, resources, o)
  o = o or {}
  local need = required(resources)
  local want = {}
  for _, c in ipairs(M.ALWAYS) do want[c] = true end
  for c in pairs(need) do want[c] = true end
  local self = setmetatable({ id = id, paths = {}, versions = {}, parents = {} }, Cgroup)
  local name = M.name(id)
  local ok, err = pcall(function()
    -- the controllers by the folder they go in (co-mounted v1 ones and
    -- all of v2 share one)
    local groups, order = {}, {}
    local names = {}
    for c in pairs(want) do names[#names + 1] = c end
    table.sort(names)
    for _, c in ipairs(names) do
      local e = layout.controllers[c]
      if not e then
        if need[c] then
          fail("cgroup: the %s controller is not available on this host (needed for %s)", c, need[c])
        end
      else
        local base, between = parent_of(e, o.parent)
        local g = groups[base]
        if not g then
          g = { base = base, between = between, entry = e, controllers = {} }
          groups[base] = g
          order[#order + 1] = g
        end
        g.controllers[#g.controllers + 1] = c
      end
    end
    for _, g in ipairs(order) do
      local v2 = g.entry.version == 2
      g.cpuset_v1 = false
      for _, c in ipairs(g.controllers) do g.cpuset_v1 = g.cpuset_v1 or (c == "cpuset" and not v2) end
      g.enable = {}
      local enable = g.enable
      if v2 then
        -- v2: only controllers enabled above can be used; luactr enables
        -- them only in folders it makes itself
        local above = #g.between > 0 and dirname(g.between[1]) or g.base
        local delegated = words(cg.read(above, "cgroup.subtree_control"))
        local kept = {}
        for _, c in ipairs(g.controllers) do
          local v2name = V2_NAME[c]
          if v2name == false or delegated[v2name] then
            kept[#kept + 1] = c
            if v2name then enable[#enable + 1] = "+" .. v2name end
          elseif need[c] then
            fail("cgroup: the %s controller is not enabled in %s/cgroup.subtree_control "
              .. "(needed for %s); luactr does not change a cgroup it did not make: "
              .. "delegate it there, or give a cgroup_parent where it is", v2name, above, need[c])
          end
        end
        g.controllers = kept
      end
      for _, c in ipairs(g.controllers) do
        self.paths[c] = g.base .. "/" .. name
        self.versions[c] = g.entry.version
      end
    end
    if o.planned then o.planned(self.paths) end
    for _, g in ipairs(order) do
      for _, dir in ipairs(g.between) do
        local made, merr, errno = cg.create(dir)
        if made then
          self.parents[#self.parents + 1] = dir
          if g.cpuset_v1 then copy_cpuset(dir) end
          if g.entry.version == 2 and #g.enable > 0 then
            errors.must("cgroup", cg.write(dir, "cgroup.subtree_control", table.concat(g.enable, " ")))
          end
        elseif errno ~= E.EEXIST then
          fail("cgroup: %s", merr)
        end
      end
      local leaf = g.base .. "/" .. name
      local made, merr, errno = cg.create(leaf)
      -- an existing luactr-<id12> can only be a leftover of this very
      -- container id: it is ours
      if not made and errno ~= E.EEXIST then fail("cgroup: %s", merr) end
      if g.cpuset_v1 then copy_cpuset(leaf) end
    end
    self:apply(resources)
  end)
  if not ok then
    self:remove()
    error(err, 0)
  end
  return self
end

-- open(paths, [parents]) -> cgroup: a container's cgroup again, from the
-- folders recorded in its state (controller -> folder) and the parent
-- folders that were made for it.
function M.open(paths, parents)
  local self = setmetatable({ paths = {}, versions = {}, parents = {} }, Cgroup)
  for c, dir in pairs(paths or {}) do
    self.paths[c] = dir
    self.versions[c] = core.fs.stat(dir .. "/cgroup.controllers") and 2 or 1
  end
  for i, dir in ipairs(parents or {}) do self.parents[i] = dir end
  return self
end

-- find(layout, id, [parent]) -> { controller = folder } | nil: the
-- folders of container `id` that are there, where create makes them (for
-- a state that lost its record of them).
function M.find(layout, id, parent)
  local paths = {}
  for c, e in pairs(layout.controllers) do
    local ok, base = pcall(parent_of, e, parent)
    local dir = ok and base .. "/" .. M.name(id)
    local st = dir and core.fs.stat(dir)
    if st and st.type == "dir" then paths[c] = dir end
  end
  return next(paths) and paths or nil
end

-- cgroup:folders() -> the distinct folders, sorted: what core.spawn's
-- opts.cgroups takes (the container joins each).
function Cgroup:folders()
  local seen, list = {}, {}
  for _, dir in pairs(self.paths) do
    if not seen[dir] then
      seen[dir] = true
      list[#list + 1] = dir
    end
  end
  table.sort(list)
  return list
end

-- Sets the device rules (OCI linux.resources.devices) in the container's
-- devices folder: devices.deny and devices.allow lines on v1, an eBPF
-- device program attached to the folder on v2. Only a folder named
-- luactr-<id12> ever gets rules: a deny written to any other cgroup could
-- take the devices of the host's own processes away.
function Cgroup:apply_devices(rules)
  local dir = self.paths.devices
  if not dir then
    if devices.allows_all(rules) then return end
    fail("cgroup: the devices controller is not available on this host")
  end
  if not basename(dir):match(NAME_PATTERN) then
    fail("cgroup: refusing to set device rules in %s, a cgroup luactr did not make", dir)
  end
  if self.versions.devices == 2 then
    if devices.allows_all(rules) then return end
    local prog <close>, err = core.devices.load(core.devices.program(rules))
    if not prog then fail("cgroup: devices: %s", err) end
    errors.must("cgroup", prog:attach(dir))
  else
    for _, l in ipairs(devices.v1_lines(rules)) do
      local ok, err = cg.write(dir, l.file, l.value)
      if not ok then fail("cgroup: %s %s: %s", l.file, l.value, err) end
    end
  end
end

-- cgroup:apply(resources): writes the limits. Raises on failure.
function Cgroup:apply(resources)
  if resources and resources.devices then self:apply_devices(resources.devices) end
  for _, s in ipairs(M.settings(resources, self.versions)) do
    local dir = self.paths[s.controller]
    if not dir then
      fail("cgroup: the %s controller is not available for %s", s.controller, s.file)
    end
    local ok, err, errno = cg.write(dir, s.file, s.value)
    if not ok and errno == E.ENOENT and s.alt then
      ok, err, errno = cg.write(dir, s.alt.file, s.alt.value)
    end
    if not ok and not (errno == E.ENOENT and s.optional) then
      fail("cgroup: %s %s: %s", s.file, s.value, err)
    end
  end
end

local function read_number(dir, file)
  local text = dir and cg.read(dir, file)
  return text and tonumber(text:match("^%s*(%d+)"))
end

-- "key value" lines (memory.stat, cpu.stat, memory.events, oom_control).
local function keyed(dir, file)
  local t = {}
  local text = dir and cg.read(dir, file)
  for k, v in (text or ""):gmatch("(%S+) (%d+)") do t[k] = tonumber(v) end
  return t
end

-- cgroup:oom_kills() -> how many processes the OOM killer killed in it.
function Cgroup:oom_kills()
  local dir = self.paths.memory
  if not dir then return 0 end
  if self.versions.memory == 2 then return keyed(dir, "memory.events").oom_kill or 0 end
  return keyed(dir, "memory.oom_control").oom_kill or 0
end

-- cgroup:oom_killed() -> true when the OOM killer killed anything in it.
function Cgroup:oom_killed()
  return self:oom_kills() > 0
end

local function host_memory()
  local text = readfile("/proc/meminfo") or ""
  local kb = tonumber(text:match("MemTotal:%s*(%d+)"))
  return kb and kb * 1024 or nil
end

-- cgroup:stats() -> a sample: { time (monotonic seconds), cpu_ns,
-- memory_usage, memory_limit, pids, pids_limit, block_read, block_write }
-- (a field is nil when the host does not account it).
-- Memory usage leaves the inactive file cache out, as Docker does; an
-- unlimited memory limit is the host's memory.
function Cgroup:stats()
  local s = { time = core.sys.monotonic() }
  local p, v = self.paths, self.versions
  if p.cpuacct then
    if v.cpuacct == 2 then
      local usec = keyed(p.cpuacct, "cpu.stat").usage_usec
      s.cpu_ns = usec and usec * 1000
    else
      s.cpu_ns = read_number(p.cpuacct, "cpuacct.usage")
    end
  end
  if p.memory then
    local host = host_memory()
    local usage, limit, inactive
    if v.memory == 2 then
      usage = read_number(p.memory, "memory.current")
      inactive = keyed(p.memory, "memory.stat").inactive_file
      limit = read_number(p.memory, "memory.max")
    else
      usage = read_number(p.memory, "memory.usage_in_bytes")
      inactive = keyed(p.memory, "memory.stat").total_inactive_file
      limit = read_number(p.memory, "memory.limit_in_bytes")
    end
    if usage and inactive and inactive < usage then usage = usage - inactive end
    if host and (not limit or limit > host) then limit = host end
    s.memory_usage, s.memory_limit = usage, limit
  end
  if p.pids then
    s.pids = read_number(p.pids, "pids.current")
    s.pids_limit = read_number(p.pids, "pids.max")
  end
  if p.blkio then
    local r, w = 0, 0
    if v.blkio == 2 then
      for line in (cg.read(p.blkio, "io.stat") or ""):gmatch("[^\n]+") do
        r = r + (tonumber(line:match("rbytes=(%d+)")) or 0)
        w = w + (tonumber(line:match("wbytes=(%d+)")) or 0)
      end
    else
      local text = cg.read(p.blkio, "blkio.throttle.io_service_bytes_recursive")
        or cg.read(p.blkio, "blkio.throttle.io_service_bytes") or ""
      for op, n in text:gmatch("%d+:%d+ (%a+) (%d+)") do
        if op == "Read" then r = r + tonumber(n) elseif op == "Write" then w = w + tonumber(n) end
      end
    end
    s.block_read, s.block_write = r, w
  end
  return s
end

-- cpu_percent(before, after) -> the CPU used between two samples, in
-- percent of one CPU (Docker's: 200% is two CPUs busy), or nil.
function M.cpu_percent(a, b)
  if not (a and b and a.cpu_ns and b.cpu_ns) or b.time <= a.time then return nil end
  return (b.cpu_ns - a.cpu_ns) / ((b.time - a.time) * 1e9) * 100
end

-- cgroup:kill([sig]) -> true | nil, err: signals every process in it
-- (SIGKILL: until none is left). Only folders named luactr-<id12> are
-- touched: a state file that names another cgroup is not obeyed.
function Cgroup:kill(sig)
  local last, lerr = true, nil
  for _, dir in ipairs(self:folders()) do
    if basename(dir):match(NAME_PATTERN) then
      local ok, err, errno = cg.kill(dir, sig)
      if not ok and errno ~= E.ENOENT then last, lerr = nil, err end
      if sig and sig ~= core.sys.signals.KILL then break end  -- once is enough
    end
  end
  return last, lerr
end

-- cgroup:empty() -> true when no process is in any of its folders (a
-- folder that is gone holds none).
function Cgroup:empty()
  for _, dir in ipairs(self:folders()) do
    local procs = cg.procs(dir)
    if procs and #procs > 0 then return false end
  end
  return true
end

-- cgroup:freeze() / cgroup:thaw() -> true | nil, err
function Cgroup:freeze()
  if not self.paths.freezer then return nil, "cgroup: no freezer" end
  return cg.freeze(self.paths.freezer)
end

function Cgroup:thaw()
  if not self.paths.freezer then return nil, "cgroup: no freezer" end
  return cg.thaw(self.paths.freezer)
end

-- frozen(dir) -> true when the freezer folder `dir` holds its processes
-- stopped, or is stopping them (v2 cgroup.freeze 1, v1 freezer.state
-- FROZEN or FREEZING); false otherwise, and when it is gone.
function M.frozen(dir)
  local v2 = cg.read(dir, "cgroup.freeze")
  if v2 then return v2:match("^%s*1") ~= nil end
  local v1 = cg.read(dir, "freezer.state") or ""
  return v1:match("^FROZEN") ~= nil or v1:match("^FREEZING") ~= nil
end

-- cgroup:remove() -> true | nil, err
-- Kills what is left in the container's folders and removes them, then
-- the parent folders made for it that nothing else uses any more. Only a
-- folder named luactr-<id12> is ever removed, apart from those parents.
-- A folder already gone is fine.
function Cgroup:remove()
  local result, why = true, nil
  for _, dir in ipairs(self:folders()) do
    if basename(dir):match(NAME_PATTERN) then
      cg.kill(dir)
      local ok, err, errno = cg.remove(dir, 2)
      if not ok and errno ~= E.ENOENT then result, why = nil, err end
    end
  end
  for i = #self.parents, 1, -1 do
    cg.remove(self.parents[i], 0)  -- busy: another container is in it
  end
  return result, why
end

-- }======

-- {====== cgroups of runs without a store (--rootfs)
--
-- A container of the store has its cgroup in its state (luactr.runtime.containers
-- records the folders before they are made, and removes them). A run of
-- a --rootfs folder has no state: it claims its cgroup in a record file
-- (claim), flocked from before the folders are made until after they are
-- removed, in the run folder of its LUACTR_ROOT. A record whose lock can
-- be taken is a run that was killed: sweep removes its folders once they
-- are empty. Nothing else is ever removed: the luactr-* folders beside
-- them may be another store's, or not luactr's at all.

-- records([root]) -> the folder of the records of runs without a store.
function M.records(root)
  return require("luactr.paths").run_base(root) .. "/cgroups"
end

local Claim = {}
Claim.__index = Claim

-- claim(id, dir) -> claim: records in folder `dir` (records()) that this
-- process makes the cgroup of run `id`; claim:planned(paths) writes its
-- folders down (as create's `planned`), claim:release() (or <close>)
-- ends the claim once they are removed. Raises when it cannot be made.
function M.claim(id, dir)
  errors.must("mkdir " .. dir, core.fs.mkdirs(dir, 448))
  local path = dir .. "/" .. id:sub(1, 12)
  local lock = errors.must("lock " .. path, core.fs.lock(path))
  return setmetatable({ path = path, lock = lock }, Claim)
end

function Claim:planned(paths)
  local list = {}
  for _, dir in pairs(paths) do list[#list + 1] = dir end
  local f = io.open(self.path, "w")
  if not f then return end  -- not written: the sweep finds nothing to remove
  f:write(table.concat(list, "\n"), "\n")
  f:close()
end

-- The record goes first, while still locked, then the lock; with
-- `keep` (its folders could not be removed) the record stays, for the
-- sweep.
function Claim:release(keep)
  if self.lock then
    if not keep then core.fs.unlink(self.path) end
    self.lock:unlock()
    self.lock = nil
  end
end
Claim.__close = function(self) self:release() end

-- sweep(dir) -> { removed folders }
-- Removes the empty folders of the runs recorded in `dir` (see claim)
-- that were killed, and their records once no folder is left. A folder
-- that a record names is removed only when it is named luactr-<its id12>.
function M.sweep(dir)
  local removed = {}
  for _, name in ipairs(core.fs.readdir(dir) or {}) do
    local path = dir .. "/" .. name
    local lock = name:match("^" .. ("%x"):rep(12) .. "$") and core.fs.lock(path, { wait = false })
    local text = lock and readfile(path) or ""
    if lock and text == "" then
      -- its run made no folder yet, or is between making the record and
      -- locking it: left alone a while
      local st = core.fs.lstat(path)
      if st and os.time() - st.mtime > 60 then core.fs.unlink(path) end
      lock:unlock()
    elseif lock then
      local left = false
      for folder in text:gmatch("[^\n]+") do
        if basename(folder) == "luactr-" .. name then
          local procs = cg.procs(folder)
          if procs and (#procs > 0 or not cg.remove(folder, 0)) then
            left = true  -- its container outlived its run: never killed here
          elseif procs then
            removed[#removed + 1] = folder
          end
        end
      end
      if not left then core.fs.unlink(path) end
      lock:unlock()
    end
  end
  table.sort(removed)
  return removed
end

-- }======

return M
