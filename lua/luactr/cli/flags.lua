-- luactr.cli.flags: reading a verb's flags, Docker's way: short flags
-- may be grouped (-it), values follow as the next word or after '='
-- (--env=K=V, -eK=V), flags end at the first word that is not one, or at
-- "--". A mistake fails as "VERB: ...", status 125.
local errors = require "luactr.errors"

local M = {}

local fail = errors.fail

-- integer(value, name, verb) -> the flag's value as an integer (nil
-- stays nil), or a failure naming the flag.
function M.integer(value, name, verb)
  if value == nil then return nil end
  local n = math.tointeger(tonumber(value))
  if not n then fail("%s: %s: expected an integer, got '%s'", verb or "run", name, value) end
  return n
end

-- parse(verb, spec, args) -> options, rest
-- `spec`: long flag -> { short=, arg= (takes a value), list= (may be
-- given again), key= (the option's key; the flag's name by default),
-- integer= (its value made an integer) }. Reads flags from args[1..]
-- until the first operand or "--".
function M.parse(verb, spec, args)
  local shorts = {}
  for long, o in pairs(spec) do
    if o.short then shorts[o.short] = long end
  end
  local opts, i = {}, 1
  local function set(long, value)
    local o = spec[long]
    local key = o.key or long
    if o.integer then value = M.integer(value, "--" .. long, verb) end
    if o.list then
      opts[key] = opts[key] or {}
      table.insert(opts[key], value)
    else
      opts[key] = value
    end
  end
  local function value_for(name, inline)
    if inline then return inline end
    i = i + 1
    if args[i] == nil then fail("%s: option %s needs a value", verb, name) end
    return args[i]
  end
  while i <= #args do
    local a = args[i]
    if a == "--" then
      i = i + 1
      break
    elseif a:sub(1, 2) == "--" then
      local name, inline = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local o = spec[name]
      if not o then
        fail("%s: unknown option %s (see 'luactr %s --help')", verb, errors.quote("--" .. name), verb)
      end
      if o.arg then
        set(name, value_for("--" .. name, inline))
      elseif inline then
        fail("%s: option --%s takes no value", verb, name)
      else
        set(name, true)
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local j = 2
      while j <= #a do
        local c = a:sub(j, j)
        local long = shorts[c]
        if not long then
          fail("%s: unknown option %s (see 'luactr %s --help')", verb, errors.quote("-" .. c), verb)
        end
        if spec[long].arg then
          local rest = a:sub(j + 1)
          set(long, value_for("-" .. c, rest ~= "" and rest or nil))
          break
        end
        set(long, true)
        j = j + 1
      end
    else
      break
    end
    i = i + 1
  end
  return opts, table.move(args, i, #args, 1, {})
end

-- environment(list, verb) -> Docker's -e: KEY=VALUE, or KEY alone to pass
-- luactr's own value (none when luactr has none).
function M.environment(list, verb)
  local env = {}
  for _, kv in ipairs(list or {}) do
    if kv:find("=", 1, true) then
      env[#env + 1] = kv
    elseif kv ~= "" then
      local v = os.getenv(kv)
      if v then env[#env + 1] = kv .. "=" .. v end
    else
      fail("%s: empty environment variable", verb or "run")
    end
  end
  return env
end

return M
