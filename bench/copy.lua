-- bench/copy.lua: the builder's copy of a 200 MB folder (issue 10).
--
--   make bench                     (or: lua5.4 bench/copy.lua, as root)
--   BENCH_COPY_ROUNDS=9 make bench
--
-- Makes a folder of 200 MB in a temp folder (4 files of 40 MB of random
-- data, and 10 000 small files of 4 KiB in 100 folders, a few hard links
-- among them), and a recipe that copies it into an image, FROM scratch.
-- Each round is `luactr build -q --no-cache` of that recipe into a store
-- of its own (a btrfs loop image under the temp folder), timed from
-- spawn to exit; the copy step alone is the "done in" line that build
-- prints for it (without the content digest of the cache key, which the
-- whole build includes). Between rounds the image is removed (rmi prunes
-- its layer) and the store synced, outside the timing. Everything made
-- is removed at the end.

local lib = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib.lua")
local TOP = lib.TOP

local sys = require("luactr.core").sys
local LUACTR = TOP .. "/bin/luactr"
local ROUNDS = tonumber(os.getenv("BENCH_COPY_ROUNDS")) or 5
local q = lib.quote

local sh = lib.sh

local tmp
local function die(fmt, ...)
  io.stderr:write("bench: ", fmt:format(...), "\n")
  if tmp then
    sh("umount " .. q(tmp .. "/root/store"))
    sh("rm -rf --one-file-system " .. q(tmp))
  end
  os.exit(1)
end

local function must(cmd)
  local ok, out = sh(cmd)
  if not ok then die("%s failed:\n%s", cmd, out) end
  return out
end

local MiB = 1 << 20

-- The folder to copy: 4 x 40 MiB + 10 000 x 4 KiB = 200 MiB.
local function make_source(dir)
  must("mkdir -p " .. q(dir .. "/data/big"))
  for i = 1, 4 do
    must(("head -c %d /dev/urandom > %s/data/big/blob%d"):format(40 * MiB, q(dir), i))
  end
  local f = assert(io.open("/dev/urandom", "rb"))
  local noise = f:read(4096 * 16)
  f:close()
  for d = 1, 100 do
    local sub = ("%s/data/small/d%03d"):format(dir, d)
    must("mkdir -p " .. q(sub))
    for i = 1, 100 do
      local out = assert(io.open(("%s/f%03d"):format(sub, i), "wb"))
      local at = ((d * 100 + i) % 15) * 4096
      out:write(("%d/%d\n"):format(d, i), noise:sub(at + 1, at + 4096 - 8))
      out:close()
    end
    must(("ln %s/f001 %s/hard"):format(q(sub), q(sub)))
  end
  local out = assert(io.open(dir .. "/recipe.lua", "w"))
  out:write('image "bench-copy" {\n  from = "scratch",\n  copy { "data/", "/data/" },\n}\n')
  out:close()
end

local quantile = lib.quantile

local function main()
  tmp = must("mktemp -d /tmp/luactr-bench-copy.XXXXXX"):match("[^\n]+")
  local src = tmp .. "/src"
  make_source(src)
  local size = must("du -sb --apparent-size " .. q(src .. "/data")):match("^(%d+)")
  sys.setenv("LUACTR_ROOT", tmp .. "/root")
  local recipe = src .. "/recipe.lua"
  must(LUACTR .. " info")  -- the store, made and mounted, outside the timing
  local whole, step = {}, {}
  for r = 1, ROUNDS do
    must("sync")
    local t0 = sys.monotonic()
    local ok, out = sh(("%s build --no-cache %s"):format(LUACTR, q(recipe)))
    whole[r] = sys.monotonic() - t0
    if not ok then die("build failed:\n%s", out) end
    step[r] = tonumber(out:match("COPY data/ /data/\n%s*done in ([%d.]+)s"))
    if not step[r] then die("no 'done in' line in:\n%s", out) end
    must(LUACTR .. " rmi bench-copy")
  end
  table.sort(whole)
  table.sort(step)
  print()
  print(("luactr bench: the builder's copy of a %.0f MiB folder (4 x 40 MiB, 10 000 x 4 KiB), "
    .. "build --no-cache, %d rounds; driver btrfs (loop image)"):format(size / MiB, ROUNDS))
  print()
  print(("%-22s %9s %9s %9s"):format("command", "p10 ms", "median", "p90 ms"))
  for _, row in ipairs({ { "build (digest + copy)", whole }, { "copy step", step } }) do
    local xs = row[2]
    print(("%-22s %9.0f %9.0f %9.0f"):format(row[1], quantile(xs, 0.1) * 1e3,
      quantile(xs, 0.5) * 1e3, quantile(xs, 0.9) * 1e3))
  end
  must("umount " .. q(tmp .. "/root/store"))
  must("rm -rf --one-file-system " .. q(tmp))
end

main()
