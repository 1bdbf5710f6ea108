-- luactr.users: who the container's process runs as.
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

-- resolve(rootfs, spec) -> { uid, gid, additionalGids, home, name }
-- Raises (status 125) when a name is not found.
function M.resolve(rootfs, spec)
  spec = spec == nil and "0" or tostring(spec)
  local u, g = spec:match("^([^:]*):?(.*)$")
  if u == "" then u = "0" end
  local passwd = entries(rootfs, "/etc/passwd")
  local pw
  for _, f in ipairs(passwd) do
    if (isnum(u) and tonumber(f[3]) == tonumber(u)) or f[1] == u then
      pw = f
      break
    end
  end
  if not pw and not isnum(u) then
    errors.raise(errors.FAILED,
      "unable to find user %s: no matching entries in passwd file", u)
  end
  local user = {
    uid = tonumber(pw and pw[3] or u),
    gid = pw and tonumber(pw[4]) or 0,
    home = pw and pw[6] ~= "" and pw[6] or (tonumber(u) == 0 and "/root" or "/"),
    name = pw and pw[1],
    additionalGids = {},
  }
  local groups = entries(rootfs, "/etc/group")
  if g ~= "" then
    local found
    for _, f in ipairs(groups) do
      if (isnum(g) and tonumber(f[3]) == tonumber(g)) or f[1] == g then
        found = tonumber(f[3])
        break
      end
    end
    if not found and not isnum(g) then
      errors.raise(errors.FAILED,
        "unable to find group %s: no matching entries in group file", g)
    end
    user.gid = found or tonumber(g)
  end
  if user.name then
    local seen = { [user.gid] = true }
    for _, f in ipairs(groups) do
      local gid = tonumber(f[3])
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
