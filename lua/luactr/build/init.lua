-- luactr.build: builds a recipe's plan into images, layer by layer.
--
-- Each step that changes the filesystem (run, copy) makes one layer; env,
-- workdir, user and label change only the image config. A layer's key is
-- a digest of the chain so far (the parent's key, every step before it,
-- metadata steps included, since `env` changes what a later `run` does),
-- the step as written and, for copy, the content and metadata of every
-- copied file. A key already in the store is a cache hit.
local copy = require "luactr.build.copy"
local core = require "luactr.core"
local errors = require "luactr.errors"
local ids = require "luactr.ids"
local json = require "luactr.json"
local spec = require "luactr.spec"
local users = require "luactr.spec.users"

local fs, digest = core.fs, core.digest

local M = {}

local fail, must = errors.fail, errors.must

-- {====== image configs ======

local function copy_table(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy_table(v) end
  return setmetatable(c, getmetatable(t))
end

-- The config an image built FROM scratch starts with.
local function scratch_image()
  return {
    architecture = "amd64", os = "linux",
    config = { Env = json.array{ "PATH=" .. spec.DEFAULT_PATH } },
    rootfs = { type = "layers", diff_ids = json.array() },
    history = json.array(),
    luactr = { layers = json.array(), chain = digest.sha256("scratch") },
  }
end

-- Replaces or adds KEY=VALUE in an Env array.
local function setenv(env, k, v)
  for i, kv in ipairs(env) do
    if kv:match("^([^=]*)") == k then
      env[i] = k .. "=" .. v
      return
    end
  end
  env[#env + 1] = k .. "=" .. v
end

local function envvalue(env, k)
  for _, kv in ipairs(env) do
    local key, v = kv:match("^([^=]*)=(.*)$")
    if key == k then return v end
  end
end

-- }======

-- {====== run ======

local function run_step(step, root, config)
  local c = config.config
  local argv = step.argv
  if step.sh then argv = { "/bin/sh", "-c", step.sh } end
  local user = users.resolve(root, c.User ~= "" and c.User or nil)
  local env = {}
  for _, kv in ipairs(c.Env or {}) do env[#env + 1] = kv end
  local s = spec.build({
    rootfs = root, cmd = argv, env = env, hostname = "luactr-build",
    workdir = (c.WorkingDir ~= "" and c.WorkingDir) or "/",
    network = step.network == "none" and "none" or "host",
    -- the host's resolver, for apt-get and friends, as docker build does
    host_resolv = step.network ~= "none" and fs.stat("/etc/resolv.conf") ~= nil,
  }, user)
  local proc, err, errno, where = core.spawn(s, { stdin = "null", forward_signals = true,
    die_with_parent = true, seccomp_cache = require("luactr.spec.seccomp").cache_dir(),
    make_cwd = true })  -- a step's WORKDIR is made, as docker build does
  if not proc then
    return nil, err, errors.spawn(where, errno)
  end
  local how, code = proc:wait()
  proc:close()
  if how == "exit" and code == 0 then return true end
  return nil, how == "exit" and ("exit status " .. code) or ("killed by signal " .. code),
    how == "exit" and code or 128 + code
end

-- }======

-- {====== debian bases ======

-- The host's Debian mirror, from its apt sources (deb822 or one-line),
-- so that nothing names a registry's host; nil lets debootstrap choose.
local function host_mirror()
  local files = { "/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list" }
  for _, f in ipairs(files) do
    local text = fs.read(f) or ""
    local uri = text:match("\nURIs:%s*(%S+)") or text:match("^URIs:%s*(%S+)")
      or text:match("\n%s*deb%s+(%S+)") or text:match("^%s*deb%s+(%S+)")
    if uri and not uri:find("security", 1, true) then return uri end
  end
end

local function debian_key(from)
  return digest.sha256(("debian %s %s %s"):format(from.suite, from.variant or "minbase",
    table.concat(from.include or {}, ",")))
end

local function build_debian(store, from, out)
  local key = debian_key(from)
  if store:has_layer(key) then return key, true end
  local work = store:begin_layer(nil, key)
  local argv = { "debootstrap", "--variant=" .. (from.variant or "minbase") }
  if from.include and #from.include > 0 then argv[#argv + 1] = "--include=" .. table.concat(from.include, ",") end
  argv[#argv + 1] = from.suite
  argv[#argv + 1] = work.path
  argv[#argv + 1] = host_mirror()
  out:write(("       debootstrap %s (the first time takes minutes)\n"):format(from.suite))
  local pid = must("debootstrap", core.sys.spawnp(argv))
  local how, code = core.sys.waitpid(pid)
  if how ~= "exit" or code ~= 0 then
    work:abort()
    fail("debootstrap %s failed (%s %s)", from.suite, how, code)
  end
  work:commit()
  return key, false
end

-- }======

-- {====== the build ======

local function step_label(step)
  return step.text or step.kind:upper()
end

-- make_layer(store, step, img, dir, key) -> true | nil, message, status,
-- freeable. Runs a run or copy step in fresh work on the image's top
-- layer and publishes it as layer `key`. When anything fails, the step
-- itself or our bookkeeping after it (the snapshot, the rename into
-- layers/, the read-only flag), nothing of it is left in layers/: a
-- failed step is never cached. `freeable` is store:freeable() at the
-- moment of the failure, before the step's own work is deleted.
local function make_layer(store, step, img, dir, key)
  local work
  local ok, res, msg, status = pcall(function()
    work = store:begin_layer(img.luactr.top, key)
    if step.kind == "run" then
      return run_step(step, work.path, img)
    end
    copy.run(step, work.path, img.config.WorkingDir, dir)
    return true
  end)
  if ok and res then
    ok, res = pcall(work.commit, work)
    if ok then return true end
  end
  -- a step ended by a signal (^C) did not run out of space
  local freeable = (ok and (status or 0) > 128) and 0 or store:freeable()
  if work then
    -- a work that cannot be deleted now is the next command's to clean
    local dropped, why = pcall(work.abort, work)
    if not dropped then io.stderr:write("luactr: ", tostring(why), "\n") end
  end
  if not ok then
    -- a failure names the step too; a bug stays as it is
    if not errors.is(res) then error(res, 0) end
    msg, status = res.message, res.status
  end
  return nil, msg, status, freeable
end

-- A store with less than this share of its size free gets the space
-- btrfs is still freeing before a step or an image needs room.
local LOW = 0.1

-- Says that the store (`how`: full, low on space) waits for btrfs, and
-- waits: true when it is done.
local function wait_for_space(store, out, how, freeable)
  out:write(("       the store is %s: waiting for btrfs to free the space of %d deleted subvolume%s\n")
    :format(how, freeable, freeable == 1 and "" or "s"))
  out:flush()
  return store:reclaim()
end

-- with_room(store, out, attempt, [again]) -> attempt's results but the
-- last. attempt() -> value | nil, message, status, freeable (see
-- make_layer). On a store short of space, the space of its deleted
-- subvolumes is waited for first; when attempt failed on a full store
-- with deleted subvolumes still to free (they were made meanwhile, or
-- the store was not yet short), their space is waited for and attempt
-- tried once more (saying `again` first). The message tells when that
-- was done.
local function with_room(store, out, attempt, again)
  local pending = store:freeable(LOW)
  if pending > 0 then wait_for_space(store, out, "low on space", pending) end
  local value, msg, status, freeable = attempt()
  if value or freeable == 0 then return value, msg, status end
  if not wait_for_space(store, out, "full", freeable) then
    return nil, msg .. " (btrfs is still freeing the space of deleted subvolumes: try again in a moment)", status
  end
  if again then
    out:write(again)
    out:flush()
  end
  value, msg, status = attempt()
  if not value then msg = msg .. " (even once btrfs had freed the space of deleted subvolumes)" end
  return value, msg, status
end

-- Starting point of an image: its config and chain, from its base.
local function base_of(image, built, store, plan, out)
  local from = image.from
  if from.kind == "scratch" then return scratch_image() end
  if from.kind == "image" then return copy_table(built[from.name]) end
  if from.kind == "store" then
    local img = store:image(from.name)
    if not img then fail("%s:%d: unknown base image '%s'", plan.file, image.from_line or image.line, from.name) end
    img.id, img.ref = nil, nil
    return img
  end
  if from.kind == "debian" then
    local t0 = core.sys.monotonic()
    local key, cached = build_debian(store, from, out)
    out:write(("[base] FROM debian %s%s\n"):format(from.suite,
      cached and " CACHED" or (" %.1fs"):format(core.sys.monotonic() - t0)))
    local img = scratch_image()
    img.luactr.layers = json.array{ key }
    img.luactr.top = key
    img.luactr.chain = key
    img.history[1] = { created_by = "debootstrap " .. from.suite }
    return img
  end
  fail("%s:%d: unknown kind of base '%s'", plan.file, image.line, tostring(from.kind))
end

local function build_image(image, built, store, plan, o)
  local out = o.out
  local img = base_of(image, built, store, plan, out)
  local c = img.config
  c.Env = c.Env or json.array()
  local L = img.luactr
  local nocache = o.no_cache
  local n = #image.steps
  out:write(("=> %s (%s:%d)\n"):format(image.name, plan.file:match("[^/]*$"), image.line))
  for i, step in ipairs(image.steps) do
    local text = step_label(step)
    local extra = ""
    if step.kind == "copy" then extra = "\n" .. copy.digest(step) end
    if nocache and (step.kind == "run" or step.kind == "copy") then
      -- --no-cache: fresh keys from here on, so every step runs again
      extra = extra .. "\nno-cache " .. M.nonce()
      nocache = false
    end
    L.chain = digest.sha256(L.chain .. "\n" .. text .. extra)
    local prefix = ("[%d/%d] %s"):format(i, n, text)
    if step.kind == "env" then
      for _, kv in ipairs(step.vars) do setenv(c.Env, kv[1], tostring(kv[2])) end
      out:write(prefix, "\n")
    elseif step.kind == "workdir" then
      local path = step.path
      if path:sub(1, 1) ~= "/" then path = (c.WorkingDir or "/"):gsub("/?$", "/") .. path end
      c.WorkingDir = path
      out:write(prefix, "\n")
    elseif step.kind == "user" then
      c.User = tostring(step.user)
      out:write(prefix, "\n")
    elseif step.kind == "label" then
      c.Labels = c.Labels or {}
      for _, kv in ipairs(step.labels) do c.Labels[kv[1]] = kv[2] end
      out:write(prefix, "\n")
    elseif step.kind == "run" or step.kind == "copy" then
      local key = L.chain
      if store:has_layer(key) then
        out:write(prefix, " CACHED\n")
      else
        out:write(prefix, "\n")
        out:flush()
        local t0 = core.sys.monotonic()
        local ok, msg, status = with_room(store, out, function()
          return make_layer(store, step, img, plan.dir, key)
        end, prefix .. " (again)\n")
        if not ok then
          errors.raise(status or errors.FAILED, "%s:%d: %s: %s", plan.file, step.line, text, msg)
        end
        out:write(("       done in %.2fs\n"):format(core.sys.monotonic() - t0))
      end
      L.layers[#L.layers + 1] = key
      L.top = key
    else
      fail("%s:%d: unknown step '%s'", plan.file, step.line, tostring(step.kind))
    end
    img.history[#img.history + 1] = { created_by = text,
      empty_layer = (step.kind ~= "run" and step.kind ~= "copy") or nil }
  end
  local s = image.config or {}
  if s.entrypoint then c.Entrypoint = json.array(copy_table(s.entrypoint)); c.Cmd = nil end
  if s.cmd then c.Cmd = json.array(copy_table(s.cmd)) end
  if s.expose then
    c.ExposedPorts = {}
    for _, p in ipairs(s.expose) do
      p = tostring(p)
      if not p:find("/", 1, true) then p = p .. "/tcp" end
      c.ExposedPorts[p] = {}
    end
  end
  if s.volumes then
    c.Volumes = {}
    for _, v in ipairs(s.volumes) do c.Volumes[v] = {} end
  end
  if s.labels then
    c.Labels = c.Labels or {}
    for k, v in pairs(s.labels) do c.Labels[k] = v end
  end
  if s.stop_signal then c.StopSignal = tostring(s.stop_signal) end
  return img
end

function M.nonce()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(16)
  f:close()
  return (b:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end))
end

-- build(plan, [{ store=, no_cache=, only={names}, out=file }])
--   -> { [name] = { id=, ref=, top= } }
-- Builds every image of the plan (or those named in `only` and what they
-- are built on), in order; a failed step raises and leaves nothing
-- half-built: its layer is discarded, no image is registered for it.
-- When a step or an image fails on a full btrfs store whose deleted
-- layers are still being freed, the build waits for that space (said on
-- `out`) and tries it once more.
function M.build(plan, o)
  o = o or {}
  o.out = o.out or io.stderr
  local store = o.store or require("luactr.storage").open()
  -- no layer is pruned (rmi) while this build looks up and makes layers
  -- that no image uses yet
  local hold <close> = store:hold_layers()
  -- every base must exist before anything is built
  for _, image in ipairs(plan.images) do
    if image.from.kind == "store" and not store:image(image.from.name) then
      fail("%s:%d: unknown base image '%s'", plan.file, image.from_line or image.line, image.from.name)
    end
  end
  local wanted
  if o.only and #o.only > 0 then
    wanted = {}
    local by_name = {}
    for _, image in ipairs(plan.images) do by_name[image.name] = image end
    local function want(name)
      local image = by_name[name]
      if not image then fail("%s: no image '%s' in this recipe", plan.file, name) end
      wanted[name] = true
      if image.from.kind == "image" then want(image.from.name) end
    end
    for _, name in ipairs(o.only) do want(name) end
  end
  local built, result = {}, {}
  for _, image in ipairs(plan.images) do
    if not wanted or wanted[image.name] then
      local t0 = core.sys.monotonic()
      local img = build_image(image, built, store, plan, o)
      built[image.name] = img
      local lock <close> = store:lock()
      local old = store:image(image.name)
      img.created = (old and old.luactr and old.luactr.chain == img.luactr.chain and old.created) or ids.now()
      local id, msg = with_room(store, o.out, function()
        local put, res = pcall(store.put_image, store, image.name, img)
        if put then return res end
        if not errors.is(res) then error(res, 0) end
        return nil, res.message, res.status, store:freeable()
      end)
      if not id then fail("%s:%d: %s", plan.file, image.line, msg) end
      result[image.name] = { id = id, top = img.luactr.top }
      o.out:write(("   %s %s in %.2fs\n"):format(image.name, id:sub(1, 12), core.sys.monotonic() - t0))
    end
  end
  return result
end

-- }======

return M
