-- luactr.check: validating tables against a schema.
--
-- A schema is a validator: a function(value, path) that returns nil when
-- the value fits, or a message naming the full path of the field that does
-- not ("run.env[2]: expected a string, got number"; "run: unknown field
-- 'hostnme'"). Unknown fields are always an error, never ignored.
local errors = require "luactr.errors"

local M = {}

local function typename(v)
  local t = type(v)
  if t == "number" and math.type(v) == "integer" then return "integer" end
  return t
end

-- A validator for one Lua type ("integer" accepts only integers).
function M.type(name)
  return function(v, path)
    local t = typename(v)
    if t == name or (name == "number" and t == "integer") then return nil end
    return ("%s: expected %s, got %s"):format(path, name, t)
  end
end

M.string = M.type("string")
M.boolean = M.type("boolean")
M.integer = M.type("integer")
M.number = M.type("number")
M.table = M.type("table")

-- A string among the given ones.
function M.enum(...)
  local ok, list = {}, { ... }
  for _, s in ipairs(list) do ok[s] = true end
  return function(v, path)
    if type(v) == "string" and ok[v] then return nil end
    return ("%s: expected one of %s, got %s"):format(path,
      table.concat(list, ", "), type(v) == "string" and ("'" .. v .. "'") or typename(v))
  end
end

-- The first alternative that fits; the message of the last otherwise.
function M.either(...)
  local alts = { ... }
  return function(v, path)
    local msg
    for _, alt in ipairs(alts) do
      msg = alt(v, path)
      if not msg then return nil end
    end
    return msg
  end
end

-- An array (a sequence with no other keys) of `item`.
function M.array(item)
  return function(v, path)
    if type(v) ~= "table" then
      return ("%s: expected an array, got %s"):format(path, typename(v))
    end
    local n = #v
    for k in pairs(v) do
      if math.type(k) ~= "integer" or k < 1 or k > n then
        return ("%s: expected an array, found key '%s'"):format(path, tostring(k))
      end
    end
    for i = 1, n do
      local msg = item(v[i], ("%s[%d]"):format(path, i))
      if msg then return msg end
    end
    return nil
  end
end

-- A table from string keys to `value`.
function M.map(value)
  return function(v, path)
    if type(v) ~= "table" then
      return ("%s: expected a table, got %s"):format(path, typename(v))
    end
    for k, x in pairs(v) do
      if type(k) ~= "string" then
        return ("%s: expected string keys, found %s"):format(path, typename(k))
      end
      local msg = value(x, path .. "." .. k)
      if msg then return msg end
    end
    return nil
  end
end

local function record(fields, required, open)
  return function(v, path)
    if type(v) ~= "table" then
      return ("%s: expected a table, got %s"):format(path, typename(v))
    end
    for k in pairs(v) do
      if type(k) ~= "string" or not (open or fields[k]) then
        return ("%s: unknown field '%s'"):format(path, tostring(k))
      end
    end
    for _, k in ipairs(required or {}) do
      if v[k] == nil then
        return ("%s: field '%s' is missing"):format(path, k)
      end
    end
    for k, f in pairs(fields) do
      if v[k] ~= nil then
        local msg = f(v[k], path .. "." .. k)
        if msg then return msg end
      end
    end
    return nil
  end
end

-- A table with the given fields; `required` lists the mandatory ones.
function M.record(fields, required)
  return record(fields, required, false)
end

-- The same, with other string keys let through: for a file on disk that
-- another version of luactr may have written (its fields of its own are
-- no business of this one; those this one uses must fit).
function M.open_record(fields, required)
  return record(fields, required, true)
end

-- {====== predicates and messages (added for luactr.build.recipe)

-- How a value is named in a message: a string is quoted, anything else is
-- named by its type ("'srv'", "integer", "table"); a string with control
-- characters is shown escaped (luactr.errors.quote).
local function show(v)
  if type(v) == "string" then return errors.quote(v, "'") end
  return typename(v)
end
M.show = show

-- A value for which `test(v)` is true; `what` says what was expected:
-- "workdir: expected an absolute path, got 'srv'".
function M.satisfies(test, what)
  return function(v, path)
    if test(v) then return nil end
    return ("%s: expected %s, got %s"):format(path, what, show(v))
  end
end

-- A value that fits every validator in turn; the first message otherwise.
function M.all(...)
  local all = { ... }
  return function(v, path)
    for _, f in ipairs(all) do
      local msg = f(v, path)
      if msg then return msg end
    end
    return nil
  end
end

-- `validator`, with its message said as "expected <what>" when the value
-- itself is wrong; a message about a part of it ("cmd[2]: ...") is kept,
-- since it is the more precise one.
function M.expect(what, validator)
  return function(v, path)
    local msg = validator(v, path)
    if msg and msg:sub(1, #path + 2) == path .. ": " then
      return ("%s: expected %s, got %s"):format(path, what, show(v))
    end
    return msg
  end
end

-- }======

return M
