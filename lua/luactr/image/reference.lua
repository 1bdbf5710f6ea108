-- luactr.image.reference: image references, in Docker's grammar (the one of
-- distribution/reference, which the OCI distribution spec follows):
--
--   reference := name [ ":" tag ] [ "@" digest ]
--   name      := [ domain "/" ] component [ "/" component ]...
--   domain    := host [ ":" port ]   (DNS labels joined by ".", or [IPv6])
--   component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"... ) [a-z0-9]+ )...
--   tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]...   (128 characters at most)
--   digest    := "sha256:" and 64 lowercase hex digits
--
-- A name is 255 characters at most. Its first part is the registry's
-- domain, as Docker decides it, when more parts follow and it has a "."
-- or a ":", is "localhost", or has an uppercase letter. So no reference
-- has an empty part, a "." or ".." part, a "%" or a control character.
local errors = require "luactr.errors"

local M = {}

-- A path component: lowercase letters and digits, with single
-- separators between them.
local function component(s)
  local i = s:match("^[a-z0-9]+()")
  while i and i <= #s do
    local j = s:match("^__()", i) or s:match("^[._]()", i) or s:match("^%-+()", i)
    i = j and s:match("^[a-z0-9]+()", j)
  end
  return i ~= nil
end

local function domain(s)
  local host = s:match("^(.-):%d+$") or s
  if host:match("^%[[%x:]+%]$") then return true end
  for label in (host .. "."):gmatch("(.-)%.") do
    if not (label:match("^%w$") or label:match("^%w[%w-]*%w$")) then return false end
  end
  return true
end

-- parse(s) -> { name =, domain =, tag =, digest = } | nil, why
-- `name` is the whole name (domain included); `tag` and `digest` are nil
-- when not given (the tag is "latest" to whoever looks an image up).
function M.parse(s)
  if type(s) ~= "string" then return nil, "expected a string" end
  if s:find("^%s*$") then return nil, "it is empty" end
  local rest, digest = s:match("^(.-)@(.*)$")
  if rest and not digest:match("^sha256:" .. ("[0-9a-f]"):rep(64) .. "$") then
    return nil, "a digest is sha256: and 64 lowercase hex digits"
  end
  rest = rest or s
  local name, tag = rest:match("^(.*):([^:/]*)$")
  name = name or rest
  if tag and not (tag:match("^[%w_][%w_.%-]*$") and #tag <= 128) then
    return nil, "a tag is letters, digits, '_', '.' and '-' (128 at most), not first '.' or '-'"
  end
  if #name > 255 then return nil, "the name is longer than 255 characters" end
  local parts = {}
  for part in (name .. "/"):gmatch("(.-)/") do parts[#parts + 1] = part end
  local first, host = parts[1], nil
  if #parts > 1 and (first:find("[.:]") or first == "localhost" or first:find("%u")) then
    if not domain(first) then return nil, ("%s is not a registry host[:port]"):format(errors.quote(first, "'")) end
    host = table.remove(parts, 1)
  end
  for _, part in ipairs(parts) do
    if not component(part) then
      if component(part:lower()) then return nil, "the name must be lowercase" end
      return nil, "each part of the name is lowercase letters and digits, "
        .. "joined by '.', '_', '__' or '-'"
    end
  end
  return { name = name, domain = host, tag = tag, digest = digest }
end

return M
