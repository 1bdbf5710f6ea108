-- luactr.spec.users: who the container's process runs as.
--
-- Docker's rules: `user` is "name", "uid", "name:group" or "uid:gid";
-- names are looked up in the root filesystem's /etc/passwd and /etc/group
-- (read as the container sees them: symlinks stay inside the root); a
-- numeric uid needs no entry. The supplementary groups are those that list
-- the user as a member; HOME comes from the passwd entry.
local core = require "luactr.core"
local errors = require "luactr.errors"

local M = {}

-- Parses "a:b:c:..." files into arrays of fields, or {} when missing.
local function entries(rootfs, path)
  local text = core.mount.read_in_root(rootfs, path)
  local list = {}
  for line in (text or ""):gmatch("[^\n]+") do
    if not line:match("^%s*#") then
      local f = {}
      for field in (line .. ":"):gmatch("([^:]*):") do f[#f + 1] = field end
      list[#list + 1] = f
    end
  end
  return list
end

local function isnum(s) return s:match("^%d+$") ~= nil end

-- The largest uid or gid luactr sets: runc's and Docker's (2^31 - 1). A
-- larger one would be cut to 32 bits on the way to setuid (4294967296
-- would be root) or is the "no id" value -1.
local MAX_ID = 0x7fffffff

-- A uid or gid field as an integer, or nil when it is none or too large.
local function id(s)
  local n = s and isnum(s) and math.tointeger(tonumber(s))
  return n and n <= MAX_ID and n or nil
end

-- resolve(rootfs, spec) -> { uid, gid, additionalGids, home, name }
-- Raises (status 125) when a name is not found.
function M.resolve(rootfs, spec)
  spec = spec == nil and "0" or tostring(spec)
  local u, g = spec:match("^([^:]*):?(.*)$")
  if u == "" then u = "0" end
  for _, v in ipairs({ u, g }) do
    if isnum(v) and not id(v) then
      errors.raise(errors.FAILED, "user %s: uids and gids must be in range 0-%d",
        errors.quote(spec), MAX_ID)
    end
  end
  local passwd = entries(rootfs, "/etc/passwd")
  local pw
  for _, f in ipairs(passwd) do
    if (isnum(u) and id(f[3]) == id(u)) or f[1] == u then
      pw = f
      break
    end
  end
  if not pw and not isnum(u) then
    errors.raise(errors.FAILED,
      "unable to find user %s: no matching entries in passwd file", errors.quote(u))
  end
  if pw and not (id(pw[3]) and id(pw[4])) then
    errors.raise(errors.FAILED, "user %s: its passwd entry has no valid uid and gid",
      errors.quote(u))
  end
  local user = {
    uid = id(pw and pw[3] or u),
    gid = pw and id(pw[4]) or 0,
    home = pw and pw[6] ~= "" and pw[6] or (id(u) == 0 and "/root" or "/"),
    name = pw and pw[1],
    additionalGids = {},
  }
  local groups = entries(rootfs, "/etc/group")
  if g ~= "" then
    local found
    for _, f in ipairs(groups) do
      if (isnum(g) and id(f[3]) == id(g)) or f[1] == g then
        found = id(f[3])
        break
      end
    end
    if not found and not isnum(g) then
      errors.raise(errors.FAILED,
        "unable to find group %s: no matching entries in group file", errors.quote(g))
    end
    user.gid = found or id(g)
  end
  if user.name then
    local seen = { [user.gid] = true }
    for _, f in ipairs(groups) do
      local gid = id(f[3])
      for member in (f[4] or ""):gmatch("[^,%s]+") do
        if member == user.name and gid and not seen[gid] then
          seen[gid] = true
          user.additionalGids[#user.additionalGids + 1] = gid
        end
      end
    end
  end
  return user
end

return M
