-- luactr.spec.devices: which devices a container may use.
--
--   local nodes, rules = devices.prepare{ devices = { "/dev/loop3:/dev/disk:r" } }
--   spec.linux.devices = nodes               -- made in its /dev by spawn
--   spec.linux.resources.devices = rules     -- its devices cgroup
--
-- Policy only: the nodes are made by core.spawn (src/devices.c) and the
-- rules are written by luactr.runtime.cgroup, to devices.deny/devices.allow on
-- cgroup v1 or as an eBPF device program on v2.
--
-- The default is Docker's (runc's and crun's, which are the same): every
-- device denied but the few a program expects, /dev/null, zero, full,
-- random, urandom, tty, console, ptmx, the pseudo-terminals and tun, and
-- mknod of any node allowed (CAP_MKNOD decides who can), so that a node
-- can be made but not opened. --privileged allows every device and makes
-- the host's device nodes in the container's /dev, as Docker does.
local core = require "luactr.core"
local errors = require "luactr.errors"

local M = {}

local fail = errors.fail

local function allow(type, major, minor, access)
  return { allow = true, type = type, major = major, minor = minor, access = access }
end

-- The rules of a default container, in the OCI spec's shape (a missing
-- major or minor is any). crun's default_devices and runc's
-- AllowedDevices hold the same list; Docker runs with runc's.
M.DEFAULT_RULES = {
  { allow = false, access = "rwm" },   -- deny everything, then:
  allow("c", nil, nil, "m"),           -- mknod of any node (opening it is another matter)
  allow("b", nil, nil, "m"),
  allow("c", 1, 3, "rwm"),             -- /dev/null
  allow("c", 1, 8, "rwm"),             -- /dev/random
  allow("c", 1, 7, "rwm"),             -- /dev/full
  allow("c", 5, 0, "rwm"),             -- /dev/tty
  allow("c", 1, 5, "rwm"),             -- /dev/zero
  allow("c", 1, 9, "rwm"),             -- /dev/urandom
  allow("c", 5, 1, "rwm"),             -- /dev/console
  allow("c", 136, nil, "rwm"),         -- /dev/pts/*
  allow("c", 5, 2, "rwm"),             -- /dev/ptmx
  allow("c", 10, 200, "rwm"),          -- /dev/net/tun
}

M.ALLOW_ALL = { { allow = true, access = "rwm" } }

-- True when `s` is a device access mode: some of r, w and m, once each.
local function is_access(s)
  if s == "" or #s > 3 or s:find("[^rwm]") then return false end
  for c in s:gmatch(".") do
    local _, n = s:gsub(c, "")
    if n > 1 then return false end
  end
  return true
end

-- parse(s, [where]) -> { host=, path=, access= }
-- Docker's --device HOST[:CONTAINER][:PERMISSIONS]: the container path
-- is the host's by default, the permissions rwm. Raises a luactr error
-- naming `where` when the string is malformed.
function M.parse(s, where)
  where = where or "device"
  local parts = {}
  for p in (s .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
  local host, path, access = parts[1], nil, "rwm"
  local usage = "expected HOST[:CONTAINER][:PERMISSIONS] (e.g. /dev/sdb:/dev/xvdc:rwm)"
  if #parts > 3 or host == "" then
    fail("%s: '%s': %s", where, s, usage)
  elseif #parts == 2 then
    if is_access(parts[2]) then access = parts[2] else path = parts[2] end
  elseif #parts == 3 then
    path, access = parts[2], parts[3]
    if not is_access(access) then
      fail("%s: '%s': invalid permissions '%s' (some of r, w and m)", where, s, access)
    end
  end
  path = path or host
  for _, p in ipairs({ host, path }) do
    if p:sub(1, 1) ~= "/" or p:match("/$") or p:match("/%.%.?/") or p:match("/%.%.?$") then
      fail("%s: '%s': %s is not an absolute path to a device", where, s, p)
    end
  end
  return { host = host, path = path, access = access }
end

-- A device's major and minor numbers, from its st_rdev (glibc's
-- gnu_dev_major and gnu_dev_minor).
function M.numbers(rdev)
  local major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~0xfff)
  local minor = (rdev & 0xff) | ((rdev >> 12) & ~0xff)
  return major, minor
end

-- node(host, path) -> the OCI linux.devices entry for the host's device
-- node `host` made at `path` in the container, or nil, message.
function M.node(host, path)
  local st, err = core.fs.stat(host)
  if not st then return nil, err end
  if st.type ~= "char" and st.type ~= "block" then
    return nil, ("%s is not a device node"):format(host)
  end
  local major, minor = M.numbers(st.rdev)
  return { path = path, type = st.type == "char" and "c" or "b", major = major,
           minor = minor, fileMode = st.mode, uid = st.uid, gid = st.gid }
end

-- Directories of the host's /dev that hold no device a container should
-- get (Docker and runc leave these out too), and nodes a container has
-- its own of.
local SKIP = { ["/dev/pts"] = true, ["/dev/shm"] = true, ["/dev/mqueue"] = true,
               ["/dev/fd"] = true, ["/dev/console"] = true, ["/dev/ptmx"] = true }

-- host_nodes() -> the OCI entries of every device node beneath the
-- host's /dev (a --privileged container gets them all).
function M.host_nodes()
  local list = {}
  local function walk(dir, depth)
    for _, name in ipairs(core.fs.readdir(dir) or {}) do
      local path = dir .. "/" .. name
      local st = not SKIP[path] and core.fs.lstat(path)
      if st and st.type == "dir" and depth < 4 then
        walk(path, depth + 1)
      elseif st and (st.type == "char" or st.type == "block") then
        list[#list + 1] = M.node(path, path)
      end
    end
  end
  walk("/dev", 0)
  table.sort(list, function(a, b) return a.path < b.path end)
  return list
end

-- prepare(o, [where]) -> nodes, rules, binds
-- From the run options `o.devices` (an array of --device strings) and
-- `o.privileged`: the OCI linux.devices (nodes to make) and
-- linux.resources.devices (the cgroup's rules); `binds` holds the same
-- --device nodes as OCI bind mounts of the host's nodes, for a user
-- namespace, where the kernel refuses mknod. Raises a luactr error
-- naming `where` and the entry when one is wrong.
function M.prepare(o, where)
  where = where or "run"
  local nodes, rules, binds = {}, {}, {}
  if o.privileged then
    nodes = M.host_nodes()
    rules[1] = M.ALLOW_ALL[1]
  else
    for i, r in ipairs(M.DEFAULT_RULES) do rules[i] = r end
  end
  for i, s in ipairs(o.devices or {}) do
    local at = ("%s: device[%d]"):format(where, i)
    local d = M.parse(s, at)
    local node, err = M.node(d.host, d.path)
    if not node then fail("%s: %s", at, err) end
    nodes[#nodes + 1] = node
    rules[#rules + 1] = allow(node.type, node.major, node.minor, d.access)
    binds[#binds + 1] = { destination = d.path, type = "bind", source = d.host,
                          options = { "bind", "nosuid", "noexec" } }
  end
  return nodes, rules, binds
end

-- v1_lines(rules) -> { { file=, value= }, ... }: the writes that set the
-- rules in a cgroup v1 devices folder, in order ("c 1:3 rwm" to
-- devices.allow, "a" to devices.deny).
function M.v1_lines(rules)
  local list = {}
  for _, r in ipairs(rules) do
    local t = r.type or "a"
    local value = t == "a" and "a" or ("%s %s:%s %s"):format(t, r.major or "*",
      r.minor or "*", r.access or "rwm")
    list[#list + 1] = { file = r.allow and "devices.allow" or "devices.deny", value = value }
  end
  return list
end

-- allows_all(rules) -> true when the last rule that matches everything
-- allows, and no later rule denies: nothing to confine.
function M.allows_all(rules)
  local all = false
  for _, r in ipairs(rules) do
    local every = (r.type or "a") == "a" and (r.access or "rwm"):len() == 3
    if every then all = r.allow elseif not r.allow then all = false end
  end
  return all
end

return M
