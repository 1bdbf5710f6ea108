-- luactr.json: JSON for state files and image configs.
--
-- Ours, not lua-cjson's, because a round trip must give back the same
-- text: an image's id is the digest of its config. So encoding sorts
-- keys, and decoding keeps what Lua tables lose: arrays come back marked
-- with json.array (an empty array stays []), and whole numbers as Lua
-- integers (cjson makes every number a float).

local M = {}

local ARRAY = {}

-- Marks `t` (a new table when nil) as a JSON array; returns it.
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function string_literal(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  local n = #t
  if n == 0 then return false end
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

local function encode(v, out, indent, depth)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = string_literal(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("json: cannot encode " .. tostring(v))
    end
    out[#out + 1] = math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif v == nil or v == M.null then
    out[#out + 1] = "null"
  elseif t == "table" then
    local nl = indent and ("\n" .. indent:rep(depth + 1)) or ""
    local close = indent and ("\n" .. indent:rep(depth)) or ""
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]" return end
      out[#out + 1] = "["
      for i = 1, #v do
        out[#out + 1] = (i > 1 and "," or "") .. nl
        encode(v[i], out, indent, depth + 1)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then error("json: object key is not a string: " .. tostring(k)) end
        keys[#keys + 1] = k
      end
      if #keys == 0 then out[#out + 1] = "{}" return end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        out[#out + 1] = (i > 1 and "," or "") .. nl .. string_literal(k) .. (indent and ": " or ":")
        encode(v[k], out, indent, depth + 1)
      end
      out[#out + 1] = close .. "}"
    end
  else
    error("json: cannot encode a " .. t)
  end
end

-- encode(v, [pretty]) -> text, keys sorted; `pretty` indents by two.
function M.encode(v, pretty)
  local out = {}
  encode(v, out, pretty and "  " or nil, 0)
  return table.concat(out)
end

M.null = setmetatable({}, { __tostring = function() return "null" end })

-- {====== decoding ======

local unescapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
  n = "\n", r = "\r", t = "\t" }

local function decode_error(text, pos, what)
  error(("json: %s at character %d"):format(what, pos), 0)
end

local decode_value

local function skip(text, pos)
  return text:find("[^ \t\r\n]", pos) or #text + 1
end

local function decode_string(text, pos)
  local out, i = {}, pos + 1
  while true do
    local j = text:find('["\\]', i)
    if not j then decode_error(text, pos, "unterminated string") end
    out[#out + 1] = text:sub(i, j - 1)
    if text:sub(j, j) == '"' then return table.concat(out), j + 1 end
    local c = text:sub(j + 1, j + 1)
    if c == "u" then
      local hex = text:match("^%x%x%x%x", j + 2)
      if not hex then decode_error(text, j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      local nexti = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = text:match("^\\u(%x%x%x%x)", nexti)
        if lo then
          cp = 0x10000 + ((cp - 0xD800) << 10) + (tonumber(lo, 16) - 0xDC00)
          nexti = nexti + 6
        end
      end
      out[#out + 1] = utf8.char(cp)
      i = nexti
    elseif unescapes[c] then
      out[#out + 1] = unescapes[c]
      i = j + 2
    else
      decode_error(text, j, "bad escape")
    end
  end
end

function decode_value(text, pos)
  pos = skip(text, pos)
  local c = text:sub(pos, pos)
  if c == "{" then
    local obj = {}
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "}" then return obj, pos + 1 end
    while true do
      if text:sub(pos, pos) ~= '"' then decode_error(text, pos, "expected a key") end
      local k
      k, pos = decode_string(text, pos)
      pos = skip(text, pos)
      if text:sub(pos, pos) ~= ":" then decode_error(text, pos, "expected ':'") end
      obj[k], pos = decode_value(text, pos + 1)
      pos = skip(text, pos)
      local d = text:sub(pos, pos)
      if d == "}" then return obj, pos + 1 end
      if d ~= "," then decode_error(text, pos, "expected ',' or '}'") end
      pos = skip(text, pos + 1)
    end
  elseif c == "[" then
    local arr = M.array()
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "]" then return arr, pos + 1 end
    while true do
      arr[#arr + 1], pos = decode_value(text, pos)
      pos = skip(text, pos)
      local d = text:sub(pos, pos)
      if d == "]" then return arr, pos + 1 end
      if d ~= "," then decode_error(text, pos, "expected ',' or ']'") end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(text, pos)
  elseif text:find("^true", pos) then
    return true, pos + 4
  elseif text:find("^false", pos) then
    return false, pos + 5
  elseif text:find("^null", pos) then
    return M.null, pos + 4
  else
    local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" then decode_error(text, pos, "unexpected character") end
    local v = math.tointeger(tonumber(num)) or tonumber(num)
    if num:find("[.eE]") then v = tonumber(num) end
    if not v then decode_error(text, pos, "bad number") end
    return v, pos + #num
  end
end

-- decode(text) -> value | nil, message. null decodes to json.null.
function M.decode(text)
  local ok, v, pos = pcall(decode_value, text, 1)
  if not ok then return nil, v end
  if skip(text, pos) <= #text then return nil, "json: trailing characters" end
  return v
end

-- }======

return M
