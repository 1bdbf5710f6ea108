-- Test support: a busybox root filesystem, a private LUACTR_ROOT, and a
-- way to run commands and see what a user would (status, stdout, stderr).
-- Everything made here is removed when the test run ends, failed or not.
local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.q = shell_quote

local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.readfile = readfile

local function pwd()
  local p = io.popen("pwd")
  local d = p:read("l")
  p:close()
  return d
end

M.TOP = pwd()
M.LUACTR = M.TOP .. "/bin/luactr"
M.BUILD = M.TOP .. "/" .. (os.getenv("LUACTR_BUILDDIR") or "build")

local made = {}

-- A fresh folder under /tmp, removed at the end of the run.
function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/luactr-test.XXXXXX")
  local dir = p:read("l")
  p:close()
  made[#made + 1] = dir
  return dir
end

-- Removes what the run made; refuses to remove a folder that still has a
-- mount beneath it (that would be a leak to report, not to paper over).
local function cleanup()
  for i = #made, 1, -1 do
    local dir = made[i]
    local mounted = false
    for line in io.lines("/proc/self/mountinfo") do
      if line:find(dir, 1, true) then mounted = true end
    end
    if mounted then
      io.stderr:write("tests: a mount is left under ", dir, "\n")
    else
      os.execute("rm -rf " .. shell_quote(dir))
    end
  end
end
M._sentinel = setmetatable({}, { __gc = cleanup })

M.ROOT = M.tmpdir()  -- the private LUACTR_ROOT of this run

-- Runs a shell command line; returns status, stdout, stderr.
-- The status is the shell's: the exit code, or 128+N for a signal.
function M.sh(cmd, stdin)
  local dir = M.tmpdir()
  local full = ("cd %s && (export LUACTR_ROOT=%s\n%s\n) >%s/out 2>%s/err"):format(
    shell_quote(M.TOP), shell_quote(M.ROOT), cmd, dir, dir)
  if stdin then
    local f = assert(io.open(dir .. "/in", "wb"))
    f:write(stdin)
    f:close()
    full = full .. " <" .. dir .. "/in"
  else
    full = full .. " </dev/null"
  end
  local _, how, code = os.execute(full)
  local out, err = readfile(dir .. "/out"), readfile(dir .. "/err")
  os.execute("rm -rf " .. shell_quote(dir))
  return how == "exit" and code or 128 + code, out, err
end

local rootfs
-- The busybox root filesystem, made once per run from busybox-static.
function M.rootfs()
  if not rootfs then
    local dir = M.tmpdir() .. "/rootfs"
    assert(os.execute(M.TOP .. "/scripts/busybox-rootfs " .. dir .. " >/dev/null"))
    rootfs = dir
  end
  return rootfs
end

local probe_root
-- A copy of the busybox fixture with tests/probes/probe.c built (static)
-- into its /bin, made once per run and removed with the run's folders.
function M.probe_rootfs()
  if not probe_root then
    local dir = M.tmpdir()
    M.must(("cp -a %s %s/rootfs"):format(shell_quote(M.rootfs()), shell_quote(dir)))
    M.must(("cc -static -O2 -o %s/rootfs/bin/probe %s/tests/probes/probe.c"):format(
      shell_quote(dir), shell_quote(M.TOP)))
    probe_root = dir .. "/rootfs"
  end
  return probe_root
end

-- `luactr run --rootfs FIXTURE <options> -- <cmd>`: status, stdout, stderr.
-- `options` and `cmd` are shell words as written.
function M.run(options, cmd, stdin)
  return M.sh(("%s run --rootfs %s %s -- %s"):format(M.LUACTR,
    shell_quote(M.rootfs()), options or "", cmd), stdin)
end

-- Runs `script` in the container with /bin/sh -c.
function M.run_sh(options, script, stdin)
  return M.run(options, "sh -c " .. shell_quote(script), stdin)
end

-- A fresh LUACTR_ROOT for tests of the store, and its teardown: unmounts
-- the store (the loop device frees itself) and fails the test if anything
-- stays mounted beneath the root or a loop device still holds its image.
-- Use as: local root = support.store_root(); finally(root.teardown)
function M.store_root(driver)
  local dir = M.tmpdir()
  local root = { path = dir, driver = driver }
  function root.env()
    return ("LUACTR_ROOT=%s%s"):format(shell_quote(dir),
      driver and (" LUACTR_DRIVER=" .. driver) or "")
  end
  -- runs `luactr ARGS` (shell words) against this root
  function root.luactr(args, stdin)
    return M.sh(("%s %s %s"):format(root.env(), M.LUACTR, args), stdin)
  end
  -- the REPOSITORY column of `luactr images` (sorted, as it prints it)
  function root.image_names()
    local status, out, err = root.luactr("images")
    assert(status == 0, "luactr images: " .. tostring(out) .. tostring(err))
    local names = {}
    for i, line in ipairs(M.lines(out)) do
      if i > 1 then names[#names + 1] = line:match("^(%S+)") end
    end
    return names
  end
  function root.teardown()
    local points = {}
    for _, line in ipairs(M.mounts()) do
      local point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
      if point and point:sub(1, #dir) == dir then points[#points + 1] = point end
    end
    -- deepest first: container roots and build mounts, then the store
    table.sort(points, function(a, b) return #a > #b end)
    local leaked = {}
    for _, point in ipairs(points) do
      if point ~= dir .. "/store" then leaked[#leaked + 1] = point end
      os.execute(("umount %s 2>/dev/null || umount -l %s"):format(shell_quote(point), shell_quote(point)))
    end
    -- the loop device lets go of the image just after the unmount returns;
    -- later, while a mount namespace made meanwhile (another run's
    -- container, before its pivot_root) still holds a copy of the mount
    local loops
    for _ = 1, 400 do
      local p = io.popen("losetup -j " .. shell_quote(dir .. "/store.img") .. " 2>/dev/null")
      loops = p:read("a")
      p:close()
      if loops == "" then break end
      os.execute("sleep 0.05")
    end
    os.execute("rm -rf --one-file-system " .. shell_quote(dir))
    assert(#leaked == 0, "left mounted: " .. table.concat(leaked, " "))
    assert(loops == "", "loop device left: " .. loops)
  end
  return root
end

-- Polls cond() every 50 ms, for `seconds` (10) at most, until it gives
-- a true value; returns that value, or nil.
function M.eventually(cond, seconds)
  local sys = require("luactr.core").sys
  local deadline = sys.monotonic() + (seconds or 10)
  repeat
    local v = cond()
    if v then return v end
    sys.sleep(0.05)
  until sys.monotonic() > deadline
  return nil
end

-- The same, as true or false.
function M.wait_until(cond, seconds)
  return M.eventually(cond, seconds) ~= nil
end

-- Is process `pid` there, and not a zombie (ended, not yet reaped)?
function M.alive(pid)
  local stat = readfile("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("%) [ZX] ")
end

-- Runs a shell command that must succeed (setup, not what is tested).
function M.must(cmd)
  assert(os.execute(cmd), cmd)
end

-- Writes `data` to `path`, making its folder.
function M.write(path, data)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then M.must("mkdir -p " .. shell_quote(dir)) end
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- The lines a command prints (stderr dropped), sorted.
function M.listing(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local list = M.lines(p:read("a"))
  p:close()
  table.sort(list)
  return list
end

-- The host's mount table, as lines.
-- Is `path` another run's (a suite or a bench running beside this one
-- on the same machine), not this run's nor the host's own?
function M.foreign(path)
  local top = path:match("^/tmp/(luactr%-test%.[^/]+)") or path:match("^/tmp/(luactr%-bench[^/]*)")
  if not top then return false end
  for _, dir in ipairs(made) do
    if dir == "/tmp/" .. top then return false end
  end
  return true
end

-- The mount table, as lines of mountinfo, without other runs' mounts.
function M.mounts()
  local t = {}
  for line in io.lines("/proc/self/mountinfo") do
    local point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if not (point and M.foreign(point)) then t[#t + 1] = line end
  end
  return t
end

-- Splits text into lines.
function M.lines(s)
  local t = {}
  for line in (s or ""):gmatch("[^\n]*") do
    if line ~= "" then t[#t + 1] = line end
  end
  return t
end

return M
