-- luactr.build.recipe: reading a recipe into a plan.
--
--   local plan = recipe.load("recipes/hello.lua")
--   io.write(recipe.format(plan))
--
-- A recipe is a Lua file evaluated in an environment of its own (as
-- Prosody loads its config and xmake its xmake.lua): the recipe words
-- (image, debian, deploy, container and the steps run, copy, env, workdir,
-- user, label) and a safe part of the standard library. Evaluating it has
-- no side effect: it builds, writes and runs nothing (it only looks in the
-- recipe's folder, and at copy's host paths, to see that what is copied is
-- there). What it returns is the plan, a plain table (no function, no
-- metatable, no cycle) that the builder and the deployer are written
-- against:
--
--   { file = "/abs/recipe.lua", dir = "/abs",
--     images = {                 -- bases first, else in the recipe's order
--       { name = "hello", line = 6, from_line = 7,
--         from = { kind = "scratch" } | { kind = "image", name = "busybox" }
--              | { kind = "store", name = "alpine:3" }
--              | { kind = "debian", suite = "bookworm", variant = "minbase",
--                  include = { "python3" } },          -- sorted
--         steps = { { kind = "run", line = 9, text = "RUN ...",
--                     network = "host" | "none", sh = "..." | argv = {...} },
--                   { kind = "copy", sources = { { path = "/abs/files",
--                       rel = "files/" | host = true, is_dir = true,
--                       contents = true } }, dest = "/srv/",
--                     owner = { uid = 0, gid = 0 } | nil, mode = 420 | nil },
--                   { kind = "env", vars = { { "A", "1" } } },    -- sorted
--                   { kind = "workdir", path = "/srv" },
--                   { kind = "user", user = "1000:1000" },
--                   { kind = "label", labels = { { "k", "v" } } } },  -- sorted
--         config = { cmd, entrypoint, expose = { "8000/tcp" }, volumes,
--                    labels = { k = "v" }, stop_signal = "SIGTERM" } } },
--     deployments = { { name, line, containers = { { name, line,
--       image = "hello", replicas = 1, restart = "no", memory = "64M",
--       memory_bytes = 67108864, pids_limit, cpus, env = { { "A", "1" } },
--       ports = { { host_ip = nil, host = 8080, container = 8000,
--                   protocol = "tcp" } } } } } } }
--
-- Every step has `text`, the step in a canonical form that the builder
-- hashes into the layer cache key: it depends neither on table order, nor
-- on lines, nor on where the checkout is.
--
-- What the builder must honour (decided here, checked here where it can be):
-- * copy: a relative source is looked up in the recipe's folder and may
--   not leave it with ".." (checked lexically here). Symbolic links are not
--   followed out of it either: the builder opens sources beneath `dir`
--   with RESOLVE_IN_ROOT and copies a link inside a copied folder as a
--   link. Reading the host is what `host = "/abs/path"` is for.
-- * copy: "files/" (trailing slash, or ".") copies the folder's contents,
--   "files" copies the folder itself into the destination (rsync's rule;
--   a source that is a file copies the file). The destination is absolute;
--   one ending in "/" is a folder to copy into, otherwise the source is
--   copied to that very path. Several sources need a destination ending
--   in "/". There are no wildcards.
-- * copy: owner is numeric, "uid[:gid]" or uid (gid = uid, as Docker's
--   --chown); mode sets files' permission bits, and folders get the same
--   bits plus x wherever r is set (chmod's X), so a tree stays readable.
-- * run: network "host" unless the step says "none" (apt-get must work).
--
-- Errors are luactr errors with status 125 whose message starts with
-- "<recipe path>:<line>: " and names the word or field at fault. Lua does
-- not record the line of a field inside a table constructor; for a field of
-- an image, deploy or container table the line is found by looking for
-- `field =` in the source from the line of that definition to the line
-- before the next definition (and is the definition's own line when it is
-- not found, e.g. for images made in a loop).
--
-- A recipe may catch the errors of its words (pcall): it gets copies, so
-- that what it raises then, changed or not, cannot change the outcome; an
-- error of its own fails with status 125 at its line. Evaluating it may
-- take M.limits (256 MiB of memory, 10 s of CPU time) at most.
local check = require "luactr.check"
local core = require "luactr.core"
local errors = require "luactr.errors"
local reference = require "luactr.image.reference"
local units = require "luactr.units"

local M = {}

local show = check.show

-- {====== small helpers

local function fail(path, line, fmt, ...)
  errors.raise(errors.FAILED, "%s:%d: " .. fmt, path, line, ...)
end

-- Lexically normalised path: no ".", no "..", no doubled "/". nil when ".."
-- climbs above the start of a relative path; "/.." is "/".
local function normalize(p)
  local abs = p:sub(1, 1) == "/"
  local out = {}
  for part in p:gmatch("[^/]+") do
    if part == ".." then
      if #out > 0 then out[#out] = nil
      elseif not abs then return nil end
    elseif part ~= "." then
      out[#out + 1] = part
    end
  end
  local s = table.concat(out, "/")
  if abs then return "/" .. s end
  return s == "" and "." or s
end

-- "dir", "file" (anything else that can be opened) or nil. Opening "p/."
-- succeeds only for a folder.
local function probe(p)
  local f = io.open(p .. "/.", "r")
  if f then f:close() return "dir" end
  f = io.open(p, "r")
  if f then f:close() return "file" end
  return nil
end

-- The current folder as the shell's pwd says it: $PWD when it names this
-- folder (the path the user went through, links and all) and has no "."
-- or ".." in it, else the path without links.
local function cwd()
  local fs = core.fs
  local here, pwd = fs.stat("."), os.getenv("PWD")
  local there = pwd and pwd:sub(1, 1) == "/" and not (pwd .. "/"):find("/%.%.?/")
    and fs.stat(pwd)
  if here and there and here.dev == there.dev and here.ino == there.ino then return pwd end
  local d = fs.realpath(".")
  if not d then errors.raise(errors.FAILED, "recipe: cannot find the current folder") end
  return d
end

local function absolute(path)
  if path:sub(1, 1) ~= "/" then path = cwd() .. "/" .. path end
  return normalize(path)
end

local function is_abs(v) return type(v) == "string" and v:sub(1, 1) == "/" end

-- A JSON string, for step texts.
local function json(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
    return named[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

-- A word of a step text: as it is when plain, else a JSON string, so that
-- no two different steps can have the same text.
local function word(s)
  if s:match("^[%w%./_+:@,%%][%w%./_+:@,%%%-]*$") then return s end
  return json(s)
end

local function json_array(t)
  local out = {}
  for i, s in ipairs(t) do out[i] = json(s) end
  return "[" .. table.concat(out, ",") .. "]"
end

-- Sorted { key, value } pairs of a map.
local function sorted_pairs(map, value)
  local out = {}
  for k, v in pairs(map) do out[#out + 1] = { k, value and value(v) or v } end
  table.sort(out, function(a, b) return a[1] < b[1] end)
  return out
end

local function scalar(v)
  if math.type(v) == "integer" then return ("%d"):format(v) end
  return tostring(v)
end

local function assignments(pairs_)
  local out = {}
  for i, p in ipairs(pairs_) do out[i] = word(p[1]) .. "=" .. word(p[2]) end
  return table.concat(out, " ")
end

local function copy_array(t)
  local out = {}
  for i, v in ipairs(t) do out[i] = v end
  return out
end

-- The array items and the other fields of a table; the keys that are
-- neither (0, -1, 1.5, true) are returned apart. Holes in the array part
-- (a `cond and run "x" or nil`) are skipped.
local function split(t)
  local index, hash, odd = {}, {}, nil
  for k in pairs(t) do
    if math.type(k) == "integer" and k >= 1 then index[#index + 1] = k
    elseif type(k) == "string" then hash[k] = t[k]
    else odd = odd or k end
  end
  table.sort(index)
  local items = {}
  for _, k in ipairs(index) do items[#items + 1] = t[k] end
  return items, hash, odd
end

-- }======

-- {====== names, references and values

-- An image name (luactr.image.reference: Docker's grammar, as `luactr tag`
-- checks it); with a digest ("@sha256:...") only when it names an image
-- of the store (`store`), since a recipe's image is named by its tag.
local function valid_reference(s, store)
  local r = reference.parse(s)
  return r ~= nil and (store or not r.digest)
end

local function valid_name(s)  -- a deployment's or a container's
  return type(s) == "string" and s:match("^[%w][%w_.-]*$") ~= nil and #s <= 128
end

-- "SIGTERM", "TERM" or 15 -> "SIGTERM"; nil when it is no signal.
local signal_name = units.signal_name

-- 8000 or "8000", "8000/udp" -> "8000/udp"
local function port_spec(v)
  local port, proto
  if math.type(v) == "integer" then port, proto = v, "tcp"
  elseif type(v) == "string" then
    local p, pr = v:match("^(%d+)/(%a+)$")
    if not p then p, pr = v:match("^(%d+)$"), "tcp" end
    port, proto = tonumber(p), pr
  end
  if not port or port < 1 or port > 65535 then return nil end
  if proto ~= "tcp" and proto ~= "udp" and proto ~= "sctp" then return nil end
  return ("%d/%s"):format(port, proto)
end

-- "[IP:]HOST:CONTAINER[/proto]" -> { host_ip, host, container, protocol }
local function port_mapping(v)
  if type(v) ~= "string" then return nil end
  local body, proto = v:match("^(.-)/(%a+)$")
  body, proto = body or v, proto or "tcp"
  if proto ~= "tcp" and proto ~= "udp" and proto ~= "sctp" then return nil end
  local ip, h, c = body:match("^(%d+%.%d+%.%d+%.%d+):(%d+):(%d+)$")
  if not ip then h, c = body:match("^(%d+):(%d+)$") end
  h, c = tonumber(h), tonumber(c)
  if not h or h < 1 or h > 65535 or c < 1 or c > 65535 then return nil end
  if ip then
    for b in ip:gmatch("%d+") do if tonumber(b) > 255 then return nil end end
  end
  return { host_ip = ip, host = math.tointeger(h), container = math.tointeger(c), protocol = proto }
end

-- "64M", "512k", "1.5g", 1048576 -> bytes (luactr.units' sizes), more
-- than none
local function memory_bytes(v)
  local n = units.size(v)
  return n and n > 0 and n or nil
end

local function restart_policy(v)
  if v == "no" or v == "always" or v == "unless-stopped" or v == "on-failure" then return true end
  return type(v) == "string" and v:match("^on%-failure:%d+$") ~= nil
end

-- "1000:1000", "1000" or 1000 -> { uid, gid }
local function owner_ids(v)
  local uid, gid
  if math.type(v) == "integer" then uid, gid = v, v
  elseif type(v) == "string" then
    uid, gid = v:match("^(%d+):(%d+)$")
    if not uid then uid = v:match("^(%d+)$") gid = uid end
    uid, gid = math.tointeger(tonumber(uid)), math.tointeger(tonumber(gid))
  end
  if not uid or uid < 0 or gid < 0 or uid > 0xfffffffe or gid > 0xfffffffe then return nil end
  return { uid = uid, gid = gid }
end

-- "0644" or 420 -> 420
local function file_mode(v)
  local m
  if math.type(v) == "integer" then m = v
  elseif type(v) == "string" and v:match("^[0-7][0-7][0-7][0-7]?$") then m = tonumber(v, 8) end
  if not m or m < 0 or m > 4095 then return nil end
  return m
end

local USER_PART = "[%w_][%w_.%-]*"
local function valid_user(v)
  if math.type(v) == "integer" then return v >= 0 end
  return type(v) == "string" and (v:match("^" .. USER_PART .. "$") or
    v:match("^" .. USER_PART .. ":" .. USER_PART .. "$")) ~= nil
end

local ENV_NAME = "^[%a_][%w_]*$"

-- }======

-- {====== validators of the settings (the hash part of a table)

local nonempty_string = check.satisfies(function(v) return type(v) == "string" and v ~= "" end,
  "a non-empty string")

local command = check.expect("a string or a non-empty array of strings",
  check.either(nonempty_string,
    check.all(check.array(check.string),
      check.satisfies(function(t) return #t > 0 end, "a non-empty array"))))

local abs_path = check.satisfies(is_abs, "an absolute path")
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- { NAME = "value" | 1 }
local env_values = check.map(check.expect("a string or a number",
  check.either(check.string, check.number)))
local function env_map(v, path)
  local msg = env_values(v, path)
  if msg then return msg end
  for _, k in ipairs(sorted_keys(v)) do
    if not k:match(ENV_NAME) then
      return ("%s: '%s' is not a variable name (letters, digits and '_', not first a digit)"):format(path, k)
    end
  end
  return nil
end

-- { key = "value" }
local label_values = check.map(check.string)
local function labels_map(v, path)
  local msg = label_values(v, path)
  if msg then return msg end
  if v[""] then return ("%s: a label key is empty"):format(path) end
  return nil
end

local IMAGE_FIELDS = {
  from = true,  -- checked on its own
  cmd = command,
  entrypoint = command,
  expose = check.array(check.satisfies(port_spec, "a port (8000 or '8000/udp')")),
  volumes = check.array(abs_path),
  labels = labels_map,
  stop_signal = check.satisfies(signal_name, "a signal ('SIGTERM' or 15)"),
}

-- A --device string (luactr.spec.devices.parse): HOST[:CONTAINER][:rwm].
local function device_spec(v)
  return type(v) == "string" and pcall(require("luactr.spec.devices").parse, v)
end

-- A container entry's fields: those of the run options it shares with
-- luactr.run take their keys and checks from luactr.spec.options, with
-- what a deployment needs of their values on top; image and replicas are
-- a deployment's own.
local run_option = require("luactr.spec.options").checks

local CONTAINER_FIELDS = {
  image = true,  -- checked on its own
  replicas = check.all(check.integer,
    check.satisfies(function(n) return n >= 0 end, "a count (0 or more)")),
  memory = check.all(run_option.memory,
    check.satisfies(memory_bytes, "a size ('64M', '512k', '1g' or bytes)")),
  pids_limit = check.all(run_option.pids_limit,
    check.satisfies(function(n) return n > 0 end, "a positive integer")),
  cpus = check.all(check.number,
    check.satisfies(function(n) return n > 0 end, "a positive number")),
  ports = check.array(check.satisfies(port_mapping, "'HOST:CONTAINER[/proto]'")),
  restart = check.all(run_option.restart, check.satisfies(restart_policy,
    "'no', 'on-failure[:N]', 'always' or 'unless-stopped'")),
  env = env_map,
  userns = run_option.userns,
  devices = check.all(run_option.devices,
    check.array(check.satisfies(device_spec, "a device 'HOST[:CONTAINER][:rwm]'"))),
}

local STEP_WORDS = { run = true, copy = true, env = true, workdir = true, user = true, label = true }

-- }======

-- {====== evaluation: the recipe's environment

local SAFE = { "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
  "tonumber", "tostring", "type", "xpcall" }
local LIBS = { "string", "table", "math", "utf8" }

-- The line the recipe is at: that of the innermost frame of its chunk.
local function where(S)
  for level = 2, 200 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.source == S.chunkname then return info.currentline end
  end
  return 1
end

-- {------ what a recipe may catch, and what it may use

-- An error that a word raises reaches the recipe as a copy: a table with
-- its message and status, that prints as the message. The error itself
-- stays with the loader (S.raised, by copy), so that a recipe that
-- catches one, changes it and raises it again, or raises anything else,
-- cannot pass for luactr's verdict: a copy that comes back up is the
-- error as it was; anything else is the recipe's own error (status 125).
local COPY = { __tostring = function(c) return tostring(c.message) end, __metatable = false }

local function raise_copy(S, e)
  local copy = setmetatable({ message = e.message, status = e.status }, COPY)
  S.raised[copy] = e
  error(copy, 0)
end

-- f as the recipe may call it: its luactr errors are raised as copies.
local function guarded(S, f)
  return function(...)
    local r = table.pack(pcall(f, ...))
    if r[1] then return table.unpack(r, 2, r.n) end
    if errors.is(r[2]) then raise_copy(S, r[2]) end
    error(r[2], 0)
  end
end

-- What evaluating a recipe may take: memory (beyond what was in use when
-- it began) and CPU time. Past either, the recipe stops at the line it is
-- at, with an error it cannot catch: no instruction of its runs any
-- more. They are checked every CHECK_EVERY instructions, so that one
-- operation may go past the memory limit before it is seen (a string is
-- 2 GiB at most); running out of memory is said naming the recipe too.
M.limits = { memory = 256 * 2 ^ 20, seconds = 10 }
local CHECK_EVERY = 1000

-- Watches the evaluation of a recipe; returns the function that stops.
local function watch(S)
  local old = table.pack(debug.gethook())
  local max_kb = collectgarbage("count") + M.limits.memory / 1024
  local deadline = os.clock() + M.limits.seconds
  local function over()
    if collectgarbage("count") > max_kb then
      collectgarbage()  -- garbage does not count
      if collectgarbage("count") > max_kb then
        return ("the recipe uses more than %g MiB of memory"):format(M.limits.memory / 2 ^ 20)
      end
    end
    if os.clock() > deadline then
      return ("the recipe has run for more than %g seconds (a loop that never ends?)")
        :format(M.limits.seconds)
    end
  end
  local function hook()
    local info = debug.getinfo(2, "Sl")
    local recipe = info and info.source == S.chunkname
    if recipe then S.seen_line = info.currentline end
    if not S.over then
      local why = over()
      if not why then return end
      S.over = errors.new(errors.FAILED, "%s:%d: %s", S.path, where(S), why)
      debug.sethook(hook, "", 1)  -- from now on, at each instruction
    end
    if recipe then raise_copy(S, S.over) end
  end
  debug.sethook(hook, "", CHECK_EVERY)
  return function()
    if type(old[1]) == "function" then
      debug.sethook(old[1], old[2], old[3])
    else
      debug.sethook()
    end
  end
end

-- }------

-- An opaque object handed to the recipe (a step, an image, ...); what it
-- stands for is kept in S.objects. It cannot be changed.
local function object(S, what, record)
  local obj = setmetatable({}, {
    __name = "luactr " .. what,
    __metatable = false,
    __tostring = function() return what end,
    __index = guarded(S, function(_, k)
      if k == "name" and record.name then return record.name end
      fail(S.path, where(S), "%s has no field '%s'", what, tostring(k))
    end),
    __newindex = guarded(S, function(_, k)
      fail(S.path, where(S), "%s cannot be changed (field '%s')", what, tostring(k))
    end),
  })
  S.objects[obj] = record
  return obj
end

-- {------ the steps

local function new_step(S, kind, line, data, text)
  data.kind, data.line, data.text = kind, line, text
  S.steps[#S.steps + 1] = data
  return object(S, kind .. " step", data)
end

local function arg_table(S, word, line, a, what)
  if type(a) ~= "table" or S.objects[a] then
    fail(S.path, line, "%s: expected %s, got %s", word, what,
      S.objects[a] and tostring(a) or show(a))
  end
  local items, opts, odd = split(a)
  if odd ~= nil then fail(S.path, line, "%s: unknown option '%s'", word, tostring(odd)) end
  return items, opts
end

local function checked(S, line, validator, v, path)
  local msg = validator(v, path)
  if msg then fail(S.path, line, "%s", msg) end
end

local function step_run(S, a)
  local line = where(S)
  local what = "a command (a string, an array of strings, or { sh = '...' })"
  local step = { network = "host" }
  if type(a) == "string" then
    checked(S, line, nonempty_string, a, "run")
    step.sh = a
  else
    local items, opts = arg_table(S, "run", line, a, what)
    for k, v in pairs(opts) do
      if k == "network" then
        checked(S, line, check.enum("host", "none"), v, "run: network")
        step.network = v
      elseif k == "sh" then
        checked(S, line, nonempty_string, v, "run: sh")
        step.sh = v
      else
        fail(S.path, line, "run: unknown option '%s'", k)
      end
    end
    if step.sh and #items > 0 then
      fail(S.path, line, "run: give a command array or sh = '...', not both")
    elseif not step.sh then
      if #items == 0 then fail(S.path, line, "run: no command") end
      checked(S, line, check.array(check.string), items, "run")
      step.argv = items
    end
  end
  local text = "RUN " .. (step.network == "none" and "--network=none " or "") ..
    (step.argv and json_array(step.argv) or step.sh)
  return new_step(S, "run", line, step, text)
end

local function copy_source(S, line, src, host)
  if type(src) ~= "string" or src == "" then
    fail(S.path, line, "copy: expected a source path, got %s", show(src))
  end
  local contents = src:sub(-1) == "/"
  local path, rel
  if host then
    if not is_abs(src) then
      fail(S.path, line, "copy: host source '%s' is not an absolute path", src)
    end
    path = normalize(src)
  else
    if is_abs(src) then
      fail(S.path, line, "copy: source '%s' is absolute: use host = '%s' to copy from the host", src, src)
    end
    rel = normalize(src)
    if not rel then
      fail(S.path, line, "copy: source '%s' is outside the recipe's folder", src)
    end
    path = rel == "." and S.dir or S.dir .. "/" .. rel
    if rel == "." then contents = true end
  end
  local kind = probe(path)
  if not kind then
    fail(S.path, line, "copy: source '%s' does not exist%s", src,
      host and "" or (" in " .. S.dir))
  elseif contents and kind ~= "dir" then
    fail(S.path, line, "copy: source '%s' is not a folder", src)
  end
  local is_dir = kind == "dir"
  contents = is_dir and contents
  local source = { path = path, is_dir = is_dir, contents = contents }
  if host then
    source.host = true
  else
    source.rel = rel == "." and "./" or (contents and rel .. "/" or rel)
  end
  return source
end

local function step_copy(S, a)
  local line = where(S)
  local items, opts = arg_table(S, "copy", line, a,
    "{ source..., destination } or { host = '/path', to = '/destination' }")
  for k in pairs(opts) do
    if k ~= "host" and k ~= "to" and k ~= "owner" and k ~= "mode" then
      fail(S.path, line, "copy: unknown option '%s'", k)
    end
  end
  local srcs, dest
  if opts.to ~= nil then
    srcs, dest = items, opts.to
  elseif opts.host ~= nil and #items <= 1 then
    srcs, dest = {}, items[1]
  else
    srcs, dest = { table.unpack(items, 1, #items - 1) }, items[#items]
  end
  if opts.host ~= nil then
    if #srcs > 0 then
      fail(S.path, line, "copy: give host sources or sources in the recipe's folder, not both")
    end
    srcs = type(opts.host) == "table" and opts.host or { opts.host }
    checked(S, line, check.array(check.string), srcs, "copy: host")
  end
  if dest == nil or #srcs == 0 then
    fail(S.path, line, "copy: expected one or more sources and a destination")
  end
  checked(S, line, abs_path, dest, "copy: destination")
  if #srcs > 1 and dest:sub(-1) ~= "/" then
    fail(S.path, line, "copy: the destination of several sources must end with '/', got '%s'", dest)
  end
  local step = { sources = {}, dest = normalize(dest) }
  if dest:sub(-1) == "/" and step.dest ~= "/" then step.dest = step.dest .. "/" end
  local words = {}
  for i, src in ipairs(srcs) do
    local s = copy_source(S, line, src, opts.host ~= nil)
    step.sources[i] = s
    words[i] = word(s.rel or (s.contents and s.path ~= "/" and s.path .. "/" or s.path))
  end
  if opts.owner ~= nil then
    step.owner = owner_ids(opts.owner)
    if not step.owner then
      fail(S.path, line, "copy: owner: expected numeric 'uid[:gid]' or a uid, got %s", show(opts.owner))
    end
  end
  if opts.mode ~= nil then
    step.mode = file_mode(opts.mode)
    if not step.mode then
      fail(S.path, line, "copy: mode: expected an octal string ('0644') or an integer, got %s", show(opts.mode))
    end
  end
  local text = "COPY " .. (opts.host ~= nil and "--host " or "") .. table.concat(words, " ") ..
    " " .. word(step.dest) ..
    (step.owner and (" owner=%d:%d"):format(step.owner.uid, step.owner.gid) or "") ..
    (step.mode and (" mode=%04o"):format(step.mode) or "")
  return new_step(S, "copy", line, step, text)
end

local function step_env(S, a)
  local line = where(S)
  local items = arg_table(S, "env", line, a, "a table { NAME = 'value' }")
  if #items > 0 then fail(S.path, line, "env: expected NAME = 'value' fields, got an array item") end
  checked(S, line, env_map, a, "env")
  if next(a) == nil then fail(S.path, line, "env: no variable") end
  local vars = sorted_pairs(a, scalar)
  return new_step(S, "env", line, { vars = vars }, "ENV " .. assignments(vars))
end

local function step_workdir(S, a)
  local line = where(S)
  checked(S, line, abs_path, a, "workdir")
  local path = normalize(a)
  return new_step(S, "workdir", line, { path = path }, "WORKDIR " .. word(path))
end

local function step_user(S, a)
  local line = where(S)
  checked(S, line, check.satisfies(valid_user, "'user[:group]' or a uid"), a, "user")
  local user = scalar(a)
  return new_step(S, "user", line, { user = user }, "USER " .. word(user))
end

local function step_label(S, a)
  local line = where(S)
  local items = arg_table(S, "label", line, a, "a table { key = 'value' }")
  if #items > 0 then fail(S.path, line, "label: expected key = 'value' fields, got an array item") end
  checked(S, line, labels_map, a, "label")
  if next(a) == nil then fail(S.path, line, "label: no label") end
  local labels = sorted_pairs(a)
  return new_step(S, "label", line, { labels = labels }, "LABEL " .. assignments(labels))
end

-- }------

-- debian "bookworm" or debian { suite = "bookworm", variant = "minbase", include = {...} }
local function word_debian(S, a)
  local line = where(S)
  local d = type(a) == "string" and { suite = a } or a
  if type(d) ~= "table" or S.objects[d] then
    fail(S.path, line, "debian: expected a suite name or { suite = ..., variant = ..., include = ... }, got %s", show(a))
  end
  local _, opts, odd = split(d)
  if odd ~= nil or #d > 0 then fail(S.path, line, "debian: unknown field '%s'", tostring(odd or 1)) end
  checked(S, line, check.record({
    suite = check.string,
    variant = check.enum("minbase", "buildd", "fakechroot"),
    include = check.array(check.satisfies(function(p)
      return type(p) == "string" and p:match("^[a-z0-9][a-z0-9+.-]+$") ~= nil
    end, "a package name")),
  }, { "suite" }), opts, "debian")
  if not d.suite:match("^[a-z]+$") then
    fail(S.path, line, "debian: '%s' is not a suite name (a codename like 'bookworm', or 'stable')", d.suite)
  end
  local include = copy_array(d.include or {})
  table.sort(include)
  return object(S, "debian base", {
    kind = "debian", line = line,
    from = { kind = "debian", suite = d.suite, variant = d.variant or "minbase", include = include },
  })
end

-- name "x" { ... }: the definition words are curried; a name without its
-- table is found at the end. A container's name need only be unique in its
-- deploy (checked there).
local function definer(S, kind, list, valid, hint, reusable)
  return guarded(S, function(name)
    local line = where(S)
    if not valid(name) then
      fail(S.path, line, "%s: expected a name (%s), got %s", kind, hint, show(name))
    end
    local def = { kind = kind, name = name, line = line }
    S.defs[#S.defs + 1] = def
    return guarded(S, function(t)
      local l = where(S)
      def.body = true
      if type(t) ~= "table" or S.objects[t] then
        fail(S.path, l, "%s '%s': expected a table { ... }, got %s", kind, name,
          S.objects[t] and tostring(t) or show(t))
      end
      for _, other in ipairs(reusable and {} or list) do
        if other.name == name then
          fail(S.path, line, "%s '%s' is already defined at line %d", kind, name, other.line)
        end
      end
      -- a shallow copy: what the recipe does to its table later is not seen
      def.items, def.fields, def.odd = split(t)
      list[#list + 1] = def
      return object(S, ("%s '%s'"):format(kind, name), def)
    end)
  end)
end

local function environment(S)
  local env = {}
  for _, k in ipairs(SAFE) do env[k] = _G[k] end
  for _, lib in ipairs(LIBS) do
    env[lib] = {}
    for k, v in pairs(_G[lib]) do env[lib][k] = v end
  end
  env.os = { getenv = os.getenv }
  local function word_(f) return guarded(S, function(a) return f(S, a) end) end
  env.run, env.copy, env.env = word_(step_run), word_(step_copy), word_(step_env)
  env.workdir, env.user, env.label = word_(step_workdir), word_(step_user), word_(step_label)
  env.debian = word_(word_debian)
  env.image = definer(S, "image", S.images, function(n) return valid_reference(n, false) end,
    "lowercase letters, digits, '.', '_', '-', '/' and an optional ':tag'")
  env.deploy = definer(S, "deploy", S.deploys, valid_name, "letters, digits, '.', '_', '-'")
  env.container = definer(S, "container", S.containers, valid_name,
    "letters, digits, '.', '_', '-'", true)
  for k, v in pairs(env) do if type(v) == "function" then S.words[v] = k end end
  return setmetatable(env, {
    __index = guarded(S, function(_, k)
      fail(S.path, where(S), "unknown word '%s'", tostring(k))
    end),
    __newindex = guarded(S, function(_, k)
      fail(S.path, where(S), "assignment to global '%s' (use local)", tostring(k))
    end),
    __metatable = false,
  })
end

-- }======

-- {====== validation of the definitions, once the recipe has run

-- The line of `key = ...` within a definition (see the head of the file).
local function key_line(S, def, key)
  if type(key) ~= "string" then return def.line end
  local plain = key:match("^[%a_][%w_]*$") and "%f[%w_]" .. key .. "%s*=%f[^=]"
  local quoted = "%[%s*[\"']" .. key:gsub("%p", "%%%0") .. "[\"']%s*%]%s*="
  for i = def.line, def.window_end do
    local l = S.lines[i]
    if l and not l:match("^%s*%-%-") and ((plain and l:find(plain)) or l:find(quoted)) then
      return i
    end
  end
  return def.line
end

local function check_fields(S, def, fields, label)
  if def.odd ~= nil then
    fail(S.path, def.line, "%s: unknown field '%s'", label, tostring(def.odd))
  end
  local keys = sorted_keys(def.fields)
  local lines = {}
  for _, k in ipairs(keys) do lines[k] = key_line(S, def, k) end
  table.sort(keys, function(a, b)
    if lines[a] ~= lines[b] then return lines[a] < lines[b] end
    return a < b
  end)
  for _, k in ipairs(keys) do
    local line = key_line(S, def, k)
    if not fields[k] then
      local hint = STEP_WORDS[k] and (" (%s is a step: write %s { ... } in the list)"):format(k, k) or ""
      fail(S.path, line, "%s: unknown field '%s'%s", label, k, hint)
    elseif fields[k] ~= true then
      checked(S, line, fields[k], def.fields[k], label .. ": " .. k)
    end
  end
end

-- The steps of an image: its array items, a plain table of steps counting
-- as its steps in order (a list a recipe reuses). Lists may be nested as
-- deep as a recipe builds them ({ list, step } again and again): they are
-- walked with a stack of their own, not by recursion.
local function collect_steps(S, def, items)
  local out, within = {}, {}
  local stack = { { items = items, i = 0 } }
  while #stack > 0 do
    local top = stack[#stack]
    top.i = top.i + 1
    local item = top.items[top.i]
    local rec = S.objects[item]
    if top.i > #top.items then
      stack[#stack] = nil
      if top.list then within[top.list] = nil end
    elseif rec and rec.text then
      rec.used = true
      out[#out + 1] = rec
    elseif type(item) == "table" and not rec then
      if within[item] then
        fail(S.path, def.line, "image '%s': a list of steps contains itself", def.name)
      end
      within[item] = true
      stack[#stack + 1] = { items = (split(item)), i = 0, list = item }
    elseif item ~= false then
      local what = rec and tostring(item) or S.words[item] and ("the word '%s' (not called)"):format(S.words[item])
        or show(item)
      fail(S.path, def.line, "image '%s': item %d is %s, not a step (run, copy, env, workdir, user, label)",
        def.name, top.i, what)
    end
  end
  return out
end

-- A copy of plain data, so that a step used by two images gives the plan
-- two tables, not one shared.
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = deep_copy(x) end
  return t
end

local function plan_step(rec)
  local step = deep_copy(rec)
  step.used = nil
  return step
end

local function plan_image(S, def)
  local label = ("image '%s'"):format(def.name)
  check_fields(S, def, IMAGE_FIELDS, label)
  local f = def.fields
  local img = { name = def.name, line = def.line, steps = {}, config = {} }
  -- from
  local from = f.from
  img.from_line = key_line(S, def, "from")
  local rec = S.objects[from]
  if from == nil then
    fail(S.path, def.line, "%s: field 'from' is missing (an image, \"scratch\" or debian \"bookworm\")", label)
  elseif from == "scratch" then
    img.from = { kind = "scratch" }
  elseif rec and rec.kind == "image" then
    img.from = { kind = "image", name = rec.name }
  elseif rec and rec.kind == "debian" then
    img.from, img.from_line = rec.from, rec.line
  elseif type(from) == "string" and valid_reference(from, true) then
    img.from = { kind = "name", name = from }  -- resolved once all are known
  elseif type(from) == "string" then
    fail(S.path, img.from_line, "%s: from: '%s' is not an image name", label, from)
  else
    fail(S.path, img.from_line, "%s: from: expected \"scratch\", an image, an image name or debian \"suite\", got %s",
      label, rec and tostring(from) or show(from))
  end
  for i, s in ipairs(collect_steps(S, def, def.items)) do img.steps[i] = plan_step(s) end
  -- settings
  local c = img.config
  for _, k in ipairs({ "cmd", "entrypoint" }) do
    if type(f[k]) == "string" then c[k] = { "/bin/sh", "-c", f[k] }
    elseif f[k] then c[k] = copy_array(f[k]) end
  end
  if f.expose then
    c.expose = {}
    for i, p in ipairs(f.expose) do c.expose[i] = port_spec(p) end
  end
  if f.volumes then
    c.volumes = {}
    for i, v in ipairs(f.volumes) do c.volumes[i] = normalize(v) end
  end
  if f.labels then
    c.labels = {}
    for k, v in pairs(f.labels) do c.labels[k] = v end
  end
  if f.stop_signal then c.stop_signal = signal_name(f.stop_signal) end
  return img
end

-- Bases before the images built on them, else in the recipe's order; a
-- from by name is resolved here, to an image of the recipe or the store.
local function order_images(S, images)
  local by_name = {}
  for _, img in ipairs(images) do by_name[img.name] = img end
  for _, img in ipairs(images) do
    if img.from.kind == "name" then
      img.from.kind = by_name[img.from.name] and "image" or "store"
    end
  end
  local out, state, stack = {}, {}, {}
  local function visit(img)
    if state[img] == "done" then return end
    if state[img] == "visiting" then
      local names, start = {}, nil
      for i, s in ipairs(stack) do if s == img then start = i end end
      for i = start, #stack do names[#names + 1] = stack[i].name end
      names[#names + 1] = img.name
      fail(S.path, img.from_line, "image '%s': from makes a cycle: %s", img.name,
        table.concat(names, " -> "))
    end
    state[img] = "visiting"
    stack[#stack + 1] = img
    if img.from.kind == "image" then visit(by_name[img.from.name]) end
    stack[#stack] = nil
    state[img] = "done"
    out[#out + 1] = img
  end
  for _, img in ipairs(images) do visit(img) end
  return out
end

local function plan_container(S, def)
  local label = ("container '%s'"):format(def.name)
  if #def.items > 0 then
    fail(S.path, def.line, "%s: unknown field '1' (a container has only named fields)", label)
  end
  check_fields(S, def, CONTAINER_FIELDS, label)
  local f = def.fields
  local c = { name = def.name, line = def.line, replicas = f.replicas or 1, restart = f.restart or "no",
    pids_limit = f.pids_limit, cpus = f.cpus, userns = f.userns, devices = f.devices }
  local rec = S.objects[f.image]
  if f.image == nil then
    fail(S.path, def.line, "%s: field 'image' is missing", label)
  elseif rec and rec.kind == "image" then
    c.image = rec.name
  elseif valid_reference(f.image, true) then
    c.image = f.image
  else
    fail(S.path, key_line(S, def, "image"), "%s: image: expected an image or an image name, got %s",
      label, rec and tostring(f.image) or show(f.image))
  end
  if f.memory then c.memory, c.memory_bytes = f.memory, memory_bytes(f.memory) end
  if f.ports then
    c.ports = {}
    for i, p in ipairs(f.ports) do c.ports[i] = port_mapping(p) end
  end
  if f.env then c.env = sorted_pairs(f.env, scalar) end
  return c
end

local function plan_deploy(S, def)
  local label = ("deploy '%s'"):format(def.name)
  check_fields(S, def, {}, label)
  local d = { name = def.name, line = def.line, containers = {} }
  local names = {}
  for i, item in ipairs(def.items) do
    local rec = S.objects[item]
    if not (rec and rec.kind == "container") then
      fail(S.path, def.line, "%s: item %d is %s, not a container", label, i,
        rec and tostring(item) or S.words[item] and ("the word '%s' (not called)"):format(S.words[item])
        or show(item))
    end
    if names[rec.name] then
      fail(S.path, rec.line, "%s: container '%s' is already defined at line %d", label, rec.name, names[rec.name])
    end
    names[rec.name] = rec.line
    rec.used = true
    d.containers[#d.containers + 1] = plan_container(S, rec)
  end
  if #d.containers == 0 then fail(S.path, def.line, "%s: no container", label) end
  return d
end

local function make_plan(S)
  -- a definition's fields are looked for up to the next definition
  local starts = {}
  for _, def in ipairs(S.defs) do starts[#starts + 1] = def.line end
  table.sort(starts)
  for _, def in ipairs(S.defs) do
    def.window_end = #S.lines
    for _, l in ipairs(starts) do
      if l > def.line then def.window_end = l - 1 break end
    end
    if not def.body then
      fail(S.path, def.line, "%s '%s' has no table: write %s '%s' { ... }", def.kind, def.name,
        def.kind, def.name)
    end
  end
  local images = {}
  for i, def in ipairs(S.images) do images[i] = plan_image(S, def) end
  local deployments = {}
  for i, def in ipairs(S.deploys) do deployments[i] = plan_deploy(S, def) end
  for _, step in ipairs(S.steps) do
    if not step.used then
      fail(S.path, step.line, "%s step outside of any image", step.kind)
    end
  end
  for _, def in ipairs(S.containers) do
    if not def.used then
      fail(S.path, def.line, "container '%s' outside of any deploy", def.name)
    end
  end
  if #images == 0 and #deployments == 0 then
    fail(S.path, 1, "the recipe defines no image and no deploy")
  end
  return { file = S.file, dir = S.dir, images = order_images(S, images), deployments = deployments }
end

-- }======

-- Evaluates a recipe's text; `path` names it in messages and its folder is
-- where relative copy sources are.
function M.load_string(text, path)
  path = path or "recipe.lua"
  local file = absolute(path)
  local S = {
    path = path, chunkname = "@" .. path, file = file, dir = file:match("^(.*)/[^/]*$"),
    lines = {}, objects = setmetatable({}, { __mode = "k" }), words = {},
    raised = setmetatable({}, { __mode = "k" }),
    defs = {}, images = {}, deploys = {}, containers = {}, steps = {},
  }
  if S.dir == "" then S.dir = "/" end
  -- a first line "#!/usr/bin/env luactr" is skipped, as lua(1) does
  if text:sub(1, 1) == "#" then text = "--" .. text end
  for l in (text .. "\n"):gmatch("(.-)\r?\n") do S.lines[#S.lines + 1] = l end
  -- Lua shortens a long chunk name in its messages: give the whole path back.
  local short = debug.getinfo(load("", S.chunkname), "S").short_src
  local function whole(msg)
    if msg:sub(1, #short + 1) == short .. ":" then return path .. msg:sub(#short + 1) end
    return msg
  end
  -- in a pcall: a message handler of the caller's (a traceback) would
  -- be added to an error of the parser that is not a syntax error
  local loaded, chunk, err = pcall(load, text, S.chunkname, "t", environment(S))
  if not loaded then chunk, err = nil, chunk end
  if not chunk then
    if err == "C stack overflow" then err = err .. " (the recipe nests too deeply)" end
    if not err:find("^" .. short:gsub("%p", "%%%0") .. ":%d+:") then err = path .. ": " .. err end
    errors.raise(errors.FAILED, "%s", whole(err))
  end
  local at_line = "^" .. path:gsub("%p", "%%%0") .. ":%d+:"
  local stop = watch(S)
  local ok, e = xpcall(chunk, function(e)
    -- the error of a word; the recipe's own, whatever it is, is a failure
    if S.raised[e] then return S.raised[e] end
    local msg = type(e) == "string" and whole(e) or errors.is(e) and e.message
      or ("error object is a %s value"):format(type(e))
    if not msg:find(at_line) then
      msg = ("%s:%d: %s"):format(path, where(S), msg)
    end
    return msg
  end)
  stop()
  if S.over then error(S.over, 0) end
  if not ok then
    if errors.is(e) then error(e, 0) end
    if e == "not enough memory" then
      -- past the message handler (Lua calls none for it): no line is known
      e = ("%s: not enough memory to evaluate the recipe%s"):format(path,
        S.seen_line and (" (last seen at line %d)"):format(S.seen_line) or "")
    elseif not tostring(e):find(at_line) then
      e = ("%s: %s"):format(path, tostring(e))
    end
    errors.raise(errors.FAILED, "%s", e)
  end
  return make_plan(S)
end

-- Reads and evaluates the recipe at `path`.
function M.load(path)
  local f, err = io.open(path, "r")
  if not f then errors.raise(errors.FAILED, "%s", err) end
  local text, rerr = f:read("a")
  f:close()
  if not text then errors.raise(errors.FAILED, "%s: %s", path, rerr) end
  return M.load_string(text, path)
end

-- {====== printing

local function describe_from(img)
  local f = img.from
  if f.kind == "scratch" then return "scratch" end
  if f.kind == "image" then return f.name .. " (this recipe)" end
  if f.kind == "store" then return f.name .. " (store)" end
  local s = ("debian %s (%s)"):format(f.suite, f.variant)
  if #f.include > 0 then s = s .. " + " .. table.concat(f.include, " ") end
  return s
end

-- The plan for a reader: the images in build order with their numbered
-- steps and settings, then the deployments.
function M.format(plan)
  local out = {}
  local function add(fmt, ...) out[#out + 1] = fmt:format(...) end
  add("recipe %s", plan.file)
  for _, img in ipairs(plan.images) do
    add("")
    add("image %s  (line %d)", img.name, img.line)
    add("  FROM %s", describe_from(img))
    for i, step in ipairs(img.steps) do
      local head = ("  [%d/%d] "):format(i, #img.steps)
      add("%s%s", head, (step.text:gsub("\n", "\n" .. (" "):rep(#head))))
    end
    local c = img.config
    if c.entrypoint then add("  ENTRYPOINT %s", json_array(c.entrypoint)) end
    if c.cmd then add("  CMD %s", json_array(c.cmd)) end
    if c.expose then add("  EXPOSE %s", table.concat(c.expose, " ")) end
    if c.volumes then add("  VOLUME %s", json_array(c.volumes)) end
    if c.labels then add("  LABELS %s", assignments(sorted_pairs(c.labels))) end
    if c.stop_signal then add("  STOPSIGNAL %s", c.stop_signal) end
  end
  for _, d in ipairs(plan.deployments) do
    add("")
    add("deploy %s  (line %d)", d.name, d.line)
    for _, c in ipairs(d.containers) do
      local parts = { "image " .. c.image, "replicas " .. c.replicas, "restart " .. c.restart }
      if c.memory then parts[#parts + 1] = "memory " .. scalar(c.memory) end
      if c.pids_limit then parts[#parts + 1] = "pids_limit " .. c.pids_limit end
      if c.cpus then parts[#parts + 1] = "cpus " .. scalar(c.cpus) end
      if c.ports then
        local ps = {}
        for i, p in ipairs(c.ports) do
          ps[i] = ("%s%d:%d/%s"):format(p.host_ip and p.host_ip .. ":" or "", p.host, p.container, p.protocol)
        end
        parts[#parts + 1] = "ports " .. table.concat(ps, " ")
      end
      if c.env then parts[#parts + 1] = "env " .. assignments(c.env) end
      if c.userns then parts[#parts + 1] = "userns " .. c.userns end
      add("  container %s: %s", c.name, table.concat(parts, ", "))
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- }======

return M
