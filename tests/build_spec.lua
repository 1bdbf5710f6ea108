-- `luactr build`: recipes built into images, one layer per step that
-- changes files, cached, through the command line a user types. The core
-- blocks run on both store drivers (btrfs and overlay).
local support = require "support"
local json = require "luactr.json"

local q = support.q

-- Every recipe here starts with this base: the host's busybox-static.
local BASE = [[
local base = image "base" {
  from = "scratch",
  copy { host = "/bin/busybox", to = "/bin/busybox" },
  run { "/bin/busybox", "--install", "-s", "/bin" },
}
]]

local sh = support.must

local write = support.write

-- A recipe folder of its own: recipe.lua with `text`, and `files`
-- (relative path -> content). Returns the folder and the recipe's path.
local function recipe_dir(text, files)
  local dir = support.tmpdir()
  for path, content in pairs(files or {}) do write(dir .. "/" .. path, content) end
  write(dir .. "/recipe.lua", text)
  return dir, dir .. "/recipe.lua"
end

-- The line of `text` where `needle` first appears.
local function line_of(text, needle)
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(needle, 1, true) then return n end
  end
  error("not in the recipe: " .. needle)
end

-- The progress lines ("[i/n] STEP [CACHED]") of image `name` in build's
-- output.
local function progress(err, name)
  local list, inside = {}, false
  for line in (err or ""):gmatch("[^\n]+") do
    local image = line:match("^=> (%S+)")
    if image then
      inside = image == name
    elseif inside and line:match("^%[%d+/%d+%] ") then
      list[#list + 1] = line
    end
  end
  return list
end

-- Entries of a folder, dot files left out, as a sorted list.
local function entries(dir)
  local p = io.popen("ls " .. q(dir) .. " 2>/dev/null")
  local list = support.lines(p:read("a"))
  p:close()
  table.sort(list)
  return list
end

local function everything_in(dir)
  local p = io.popen("ls -A " .. q(dir) .. " 2>/dev/null")
  local list = support.lines(p:read("a"))
  p:close()
  return list
end

-- The image ids `luactr images -q` shows.
local function image_ids(root)
  local st, out = root.luactr("images -q")
  assert.are.equal(0, st)
  return support.lines(out)
end

-- Builds `recipe` and expects it to succeed; returns stdout, stderr.
local function build(root, recipe, args)
  local st, out, err = root.luactr("build " .. (args or "") .. " " .. q(recipe))
  assert.are.equal(0, st, err)
  return out, err
end

for _, driver in ipairs({ "btrfs", "overlay" }) do
  describe("luactr build on " .. driver .. " #root", function()
    local function store_root()
      local root = support.store_root(driver)
      finally(root.teardown)
      return root
    end

    local function layers(root) return entries(root.path .. "/store/layers") end

    -- A recipe of an image "app" on the base with the steps `steps`
    -- (recipe lines), in a folder of its own with `files`: its folder,
    -- path and text.
    local function app_recipe(steps, files)
      local text = BASE .. 'image "app" {\n  from = base,\n  ' .. steps .. ",\n}\n"
      local dir, recipe = recipe_dir(text, files)
      return dir, recipe, text
    end

    -- Builds an image "app" of the one `step` on the base, with `files`
    -- (and what setup(dir) makes), and expects the step to fail: the
    -- build exits 125 and registers no image of it. Returns stderr, the
    -- recipe's path and the step's line.
    local function failed_copy(root, step, files, setup)
      local dir, recipe, text = app_recipe(step, files)
      if setup then setup(dir) end
      local st, _, err = root.luactr("build " .. q(recipe))
      assert.are.equal(125, st)
      assert.are.same({ "base" }, root.image_names())
      return err, recipe, line_of(text, step)
    end

    describe("recipes/hello.lua", function()
      it("builds both images, and the hello image runs its command", function()
        local root = store_root()
        local st, _, err = root.luactr("build recipes/hello.lua")
        assert.are.equal(0, st, err)
        assert.are.same({
          "[1/3] COPY --host /bin/busybox /bin/busybox",
          '[2/3] RUN ["/bin/busybox","--install","-s","/bin"]',
          "[3/3] ENV PATH=/bin",
        }, progress(err, "busybox"))
        assert.are.same({
          "[1/6] ENV GREETING=hello",
          "[2/6] COPY files/ /srv/",
          "[3/6] WORKDIR /srv",
          "[4/6] RUN echo built > /srv/built",
          "[5/6] USER 1000:1000",
          "[6/6] LABEL org.opencontainers.image.title=hello",
        }, progress(err, "hello"))
        assert.are.same({ "busybox", "hello" }, root.image_names())
        local out
        st, out = root.luactr("run --rm hello")
        assert.are.equal(0, st)
        assert.matches("^Hello from a luactr image: this file was copied from recipes/files/%.\nhello from %x+\n$", out)
      end)

      it("rebuilds from the cache: every step CACHED, the same image ids", function()
        local root = store_root()
        build(root, "recipes/hello.lua")
        local ids = image_ids(root)
        local before = layers(root)
        local _, err = build(root, "recipes/hello.lua")
        assert.are.same({
          "[1/3] COPY --host /bin/busybox /bin/busybox CACHED",
          '[2/3] RUN ["/bin/busybox","--install","-s","/bin"] CACHED',
          "[3/3] ENV PATH=/bin",
        }, progress(err, "busybox"))
        assert.are.same({
          "[1/6] ENV GREETING=hello",
          "[2/6] COPY files/ /srv/ CACHED",
          "[3/6] WORKDIR /srv",
          "[4/6] RUN echo built > /srv/built CACHED",
          "[5/6] USER 1000:1000",
          "[6/6] LABEL org.opencontainers.image.title=hello",
        }, progress(err, "hello"))
        assert.are.same(ids, image_ids(root))
        assert.are.same(before, layers(root))
      end)

      it("is built by `luactr recipes/hello.lua` as by `luactr build`", function()
        local root = store_root()
        local st, _, err = root.luactr("recipes/hello.lua")
        assert.are.equal(0, st, err)
        assert.are.equal(6, #progress(err, "hello"))
        assert.are.same({ "busybox", "hello" }, root.image_names())
        local ids = image_ids(root)
        st, _, err = root.luactr("recipes/hello.lua")
        assert.are.equal(0, st)
        assert.are.equal("[4/6] RUN echo built > /srv/built CACHED", progress(err, "hello")[4])
        assert.are.same(ids, image_ids(root))
        local out
        st, out = root.luactr("run --rm hello cat /srv/built")
        assert.are.equal("built\n", out)
      end)

      it("reruns every step with --no-cache, and the images still work", function()
        local root = store_root()
        build(root, "recipes/hello.lua")
        local before = layers(root)
        local _, err = build(root, "recipes/hello.lua", "--no-cache")
        assert.is_nil(err:find("CACHED", 1, true), err)
        assert.are.equal(3, #progress(err, "busybox"))
        assert.are.equal(6, #progress(err, "hello"))
        -- four new layers, made again
        assert.are.equal(#before + 4, #layers(root))
        local st, out = root.luactr("run --rm hello")
        assert.are.equal(0, st)
        assert.matches("^Hello from a luactr image", out)
        -- and a later build without --no-cache uses what --no-cache made
        _, err = build(root, "recipes/hello.lua")
        assert.are.equal("[4/6] RUN echo built > /srv/built CACHED", progress(err, "hello")[4])
      end)
    end)

    describe("the layer cache", function()
      local RECIPE = BASE .. [[
image "app" {
  from = base,
  copy { "first.txt", "/first.txt" },
  copy { "data/", "/data/" },
  env { STAGE = "one" },
  run "cat /data/x > /seen; echo $STAGE >> /seen",
  copy { "last.txt", "/last.txt" },
}
]]
      local FILES = { ["first.txt"] = "first\n", ["data/x"] = "old\n", ["last.txt"] = "last\n" }

      it("rebuilds from the step that copies a changed file on", function()
        local root = store_root()
        local dir, recipe = recipe_dir(RECIPE, FILES)
        build(root, recipe)
        write(dir .. "/data/x", "new\n")
        local _, err = build(root, recipe)
        assert.are.same({
          "[1/5] COPY first.txt /first.txt CACHED",
          "[2/5] COPY data/ /data/",
          "[3/5] ENV STAGE=one",
          "[4/5] RUN cat /data/x > /seen; echo $STAGE >> /seen",
          "[5/5] COPY last.txt /last.txt",
        }, progress(err, "app"))
        local st, out = root.luactr("run --rm app cat /seen")
        assert.are.equal(0, st)
        assert.are.equal("new\none\n", out)
      end)

      it("rebuilds from the step that copies a file whose mode changed", function()
        local root = store_root()
        local dir, recipe = recipe_dir(RECIPE, FILES)
        sh("chmod 644 " .. q(dir .. "/data/x"))
        build(root, recipe)
        sh("chmod 600 " .. q(dir .. "/data/x"))
        local _, err = build(root, recipe)
        assert.are.same({
          "[1/5] COPY first.txt /first.txt CACHED",
          "[2/5] COPY data/ /data/",
          "[3/5] ENV STAGE=one",
          "[4/5] RUN cat /data/x > /seen; echo $STAGE >> /seen",
          "[5/5] COPY last.txt /last.txt",
        }, progress(err, "app"))
        local st, out = root.luactr("run --rm app stat -c %a /data/x")
        assert.are.equal(0, st)
        assert.are.equal("600\n", out)
      end)

      it("reruns a run step after an env step before it changed", function()
        local root = store_root()
        local _, recipe = recipe_dir(RECIPE, FILES)
        build(root, recipe)
        write(recipe, (RECIPE:gsub('STAGE = "one"', 'STAGE = "two"')))
        local _, err = build(root, recipe)
        assert.are.same({
          "[1/5] COPY first.txt /first.txt CACHED",
          "[2/5] COPY data/ /data/ CACHED",
          "[3/5] ENV STAGE=two",
          "[4/5] RUN cat /data/x > /seen; echo $STAGE >> /seen",
          "[5/5] COPY last.txt /last.txt",
        }, progress(err, "app"))
        local st, out = root.luactr("run --rm app cat /seen")
        assert.are.equal(0, st)
        assert.are.equal("old\ntwo\n", out)
      end)
    end)

    describe("copy", function()
      it("refuses a source whose link leads out of the recipe's folder, and follows one that stays in", function()
        local root = store_root()
        local host = support.tmpdir()
        write(host .. "/secret", "host only\n")
        local dir, recipe = recipe_dir(BASE .. [[
image "app" {
  from = base,
  copy { "out/", "/stolen/" },
}
]], { ["inside/f"] = "inside\n" })
        sh(("ln -s %s %s/out && ln -s inside %s/alias"):format(q(host), q(dir), q(dir)))
        local st, _, err = root.luactr("build " .. q(recipe))
        assert.are_not.equal(0, st)
        assert.matches("out/ leads out of the recipe's folder through a link", err, 1, true)
        write(recipe, BASE .. [[
image "app" {
  from = base,
  copy { "alias/", "/in/" },
}
]])
        build(root, recipe)
        local out
        st, out = root.luactr("run --rm app cat /in/f")
        assert.are.equal(0, st)
        assert.are.equal("inside\n", out)
      end)

      it("copies a folder's contents with 'dir/', the folder itself with 'dir', a file into 'dest/'", function()
        local root = store_root()
        local dir, recipe = recipe_dir(BASE .. [[
image "app" {
  from = base,
  copy { "tree/", "/contents/" },
  copy { "tree", "/itself/" },
  copy { "tree", "/exact" },
  copy { "one.txt", "/into/" },
  copy { "one.txt", "/renamed.txt" },
}
]], { ["tree/a.txt"] = "a\n", ["tree/sub/b.txt"] = "b\n", ["one.txt"] = "one\n" })
        sh("chmod 750 " .. q(dir .. "/tree") .. " && chmod 700 " .. q(dir .. "/tree/sub"))
        build(root, recipe)
        local st, out = root.luactr([[run --rm -u 0 app sh -c 'cd / && find contents itself exact into renamed.txt | sort | xargs stat -c "%n %a %F"; cat /exact/sub/b.txt']])
        assert.are.equal(0, st)
        assert.are.same({
          "contents 755 directory",
          "contents/a.txt 644 regular file",
          "contents/sub 700 directory",
          "contents/sub/b.txt 644 regular file",
          "exact 750 directory",
          "exact/a.txt 644 regular file",
          "exact/sub 700 directory",
          "exact/sub/b.txt 644 regular file",
          "into 755 directory",
          "into/one.txt 644 regular file",
          "itself 755 directory",
          "itself/tree 750 directory",
          "itself/tree/a.txt 644 regular file",
          "itself/tree/sub 700 directory",
          "itself/tree/sub/b.txt 644 regular file",
          "renamed.txt 644 regular file",
          "b",
        }, support.lines(out))
      end)

      it("applies owner and mode to every file and folder it copies", function()
        local root = store_root()
        local _, recipe = recipe_dir(BASE .. [[
image "app" {
  from = base,
  copy { "tree/", "/owned/", owner = "1000:1001", mode = "0640" },
  copy { "tree", "/opt/", owner = 1002 },
  copy { "tree/a.txt", "/exec", mode = "0755" },
}
]], { ["tree/a.txt"] = "a\n", ["tree/sub/b.txt"] = "b\n" })
        build(root, recipe)
        local st, out = root.luactr([[run --rm -u 0 app sh -c 'cd / && find owned opt/tree exec | sort | xargs stat -c "%n %a %u:%g"']])
        assert.are.equal(0, st)
        assert.are.same({
          "exec 755 0:0",
          "opt/tree 755 1002:1002",
          "opt/tree/a.txt 644 1002:1002",
          "opt/tree/sub 755 1002:1002",
          "opt/tree/sub/b.txt 644 1002:1002",
          "owned 755 0:0",                   -- made for the copy, not copied
          "owned/a.txt 640 1000:1001",
          "owned/sub 750 1000:1001",         -- folders: x wherever r is set
          "owned/sub/b.txt 640 1000:1001",
        }, support.lines(out))
      end)

      it("copies from the host with host =", function()
        local root = store_root()
        local hostdir = support.tmpdir()
        write(hostdir .. "/conf/app.conf", "port = 80\n")
        local _, recipe = recipe_dir(BASE .. ([[
image "app" {
  from = base,
  copy { host = %q, to = "/etc/app.conf" },
  copy { host = %q, to = "/etc/" },
}
]]):format(hostdir .. "/conf/app.conf", hostdir .. "/conf"))
        build(root, recipe)
        local st, out = root.luactr("run --rm app cat /etc/app.conf /etc/conf/app.conf")
        assert.are.equal(0, st)
        assert.are.equal("port = 80\nport = 80\n", out)
      end)

      it("stops the build with the recipe's file:line when a copy cannot be made", function()
        local root = store_root()
        local step = 'copy { "one.txt", "/bin" }'
        local err, recipe, line = failed_copy(root, step, { ["one.txt"] = "one\n" })
        assert.matches("\nluactr: " .. recipe:gsub("%p", "%%%0") .. ":" .. line
          .. ": COPY one.txt /bin: /bin is a folder in the image %(/bin/ copies into it%)\n$", err)
        assert.are.same({}, everything_in(root.path .. "/store/tmp"))
      end)

      it("never writes outside the image through a link the image holds", function()
        local root = store_root()
        local bait = support.tmpdir() .. "/bait"
        sh("mkdir -p " .. q(bait))
        -- /abs, /rel and /victim point out of the root if followed on the host
        local _, recipe = recipe_dir(BASE .. ([[
image "app" {
  from = base,
  run { "ln", "-s", %q, "/abs" },
  run { "ln", "-s", %q, "/rel" },
  run { "ln", "-s", %q, "/victim" },
  copy { "one.txt", "/abs/" },
  copy { "tree", "/rel/" },
  copy { "one.txt", "/victim" },
}
]]):format("/../../../.." .. bait, "../../../../../../../.." .. bait, "/../../.." .. bait .. "/victim"),
          { ["one.txt"] = "one\n", ["tree/a.txt"] = "a\n" })
        build(root, recipe)
        assert.are.same({}, everything_in(bait))
        -- the copies landed inside the image, where the links lead there
        local st, out = root.luactr(("run --rm app sh -c %s"):format(q(
          ("cat %s/one.txt %s/tree/a.txt; test -L /victim || cat /victim"):format(bait, bait))))
        assert.are.equal(0, st)
        assert.are.equal("one\na\none\n", out)
      end)
    end)

    describe("copy keeps", function()
      -- The host path of `path` in the top layer of image `name`.
      local function in_layer(root, name, path)
        local st, out = root.luactr("inspect " .. name)
        assert.are.equal(0, st)
        local top = json.decode(out)[1].luactr.top
        return ("%s/store/layers/%s%s%s"):format(root.path, top, driver == "overlay" and "/diff" or "", path)
      end

      it("hard links, times, set-id bits and extended attributes", function()
        local root = store_root()
        local dir, recipe = app_recipe('copy { "tree/", "/t/" }',
          { ["tree/a"] = "a\n", ["tree/sub/s"] = "s\n", ["tree/tool"] = "#!/bin/sh\n" })
        sh(("cd %s/tree && ln a sub/hard && ln a again && chmod 4755 tool && "
          .. "setfattr -n user.note -v hello a && setfattr -n user.kind -v folder sub && "
          .. "touch -d '2001-02-03 04:05:06 UTC' a tool sub"):format(q(dir)))
        build(root, recipe)
        local st, out = root.luactr([[run --rm -u 0 app sh -c 'cd /t && stat -c "%n %h %i %a %Y" a sub/hard again tool sub']])
        assert.are.equal(0, st)
        local rows = {}
        for _, line in ipairs(support.lines(out)) do
          local name, links, ino, mode, mtime = line:match("^(%S+) (%d+) (%d+) (%d+) (%d+)$")
          rows[name] = { links = tonumber(links), ino = ino, mode = mode, mtime = tonumber(mtime) }
        end
        assert.are.same({ 3, 3, 3 }, { rows.a.links, rows["sub/hard"].links, rows.again.links })
        assert.are.same({ rows.a.ino, rows.a.ino }, { rows["sub/hard"].ino, rows.again.ino })
        assert.are.same({ 981173106, 981173106, 981173106 }, { rows.a.mtime, rows.tool.mtime, rows.sub.mtime })
        assert.are.equal("4755", rows.tool.mode)
        local _, note = support.sh("getfattr --only-values -n user.note " .. q(in_layer(root, "app", "/t/again")))
        local _, kind = support.sh("getfattr --only-values -n user.kind " .. q(in_layer(root, "app", "/t/sub")))
        assert.are.same({ "hello", "folder" }, { note, kind })
      end)

      it("links as links: one in the recipe's folder is not followed out of it", function()
        local root = store_root()
        local secret = support.tmpdir() .. "/secret"
        write(secret, "host only\n")
        local dir, recipe = app_recipe('copy { "tree", "/t/" }', { ["tree/a"] = "a\n" })
        sh(("ln -s %s %s/tree/out"):format(q(secret), q(dir)))
        build(root, recipe)
        local st, out = root.luactr([[run --rm app sh -c 'readlink /t/tree/out; cat /t/tree/out || echo unreadable']])
        assert.are.equal(0, st)
        assert.are.equal(secret .. "\nunreadable\n", out)
      end)
    end)

    describe("copy never", function()
      it("follows a link the image holds inside a folder it copies into", function()
        local root = store_root()
        local bait = support.tmpdir() .. "/bait"
        sh("mkdir -p " .. q(bait))
        local _, recipe = app_recipe(('run { "mkdir", "/data" }, run { "ln", "-s", %q, "/data/sub" }, '
          .. 'run { "ln", "-s", %q, "/data/file" }, copy { "tree/", "/data/" }'):format(bait, bait .. "/file"),
          { ["tree/sub/x"] = "x\n", ["tree/file"] = "f\n" })
        build(root, recipe)
        assert.are.same({}, everything_in(bait))
        -- the links were replaced by what the copy made
        local st, out = root.luactr([[run --rm app sh -c 'test -L /data/sub || test -L /data/file || cat /data/sub/x /data/file']])
        assert.are.equal(0, st)
        assert.are.equal("x\nf\n", out)
      end)

      it("copies a fifo, a socket or a device: the step fails saying which", function()
        local root = store_root()
        local err, recipe, line = failed_copy(root, 'copy { "tree/", "/t/" }', { ["tree/a"] = "a\n" },
          function(dir) sh("mkfifo " .. q(dir .. "/tree/pipe")) end)
        assert.matches(("%s:%d: COPY tree/ /t/: copy special file tree/pipe: Operation not permitted\n"):format(
          recipe, line), err, 1, true)
      end)
    end)

    describe("a failing run step", function()
      local RECIPE = BASE .. [[
image "app" {
  from = base,
  copy { "first.txt", "/first.txt" },
  run "echo about to fail; exit 3",
}
]]

      it("stops the build, says where, registers no image and leaves no half layer", function()
        local root = store_root()
        local _, recipe = recipe_dir(RECIPE, { ["first.txt"] = "first\n" })
        assert.are.equal(0, (root.luactr("build " .. q(recipe) .. " base")))
        local before = layers(root)
        local st, out, err = root.luactr("build " .. q(recipe))
        assert.are_not.equal(0, st)
        assert.matches("about to fail", out)
        assert.matches("luactr: " .. recipe:gsub("%p", "%%%0") .. ":" .. line_of(RECIPE, "exit 3")
          .. ": RUN echo about to fail; exit 3: exit status 3\n$", err)
        assert.are.same({ "base" }, root.image_names())
        -- the copy step before it is a whole layer and stays as cache; the
        -- failed step left none, and nothing is left in the store's tmp/
        assert.are.equal(#before + 1, #layers(root))
        assert.are.same({}, everything_in(root.path .. "/store/tmp"))
        if driver == "btrfs" then
          local p = io.popen("btrfs subvolume list -o " .. q(root.path .. "/store"))
          assert.are.equal(#layers(root), #support.lines(p:read("a")))
          p:close()
        end
        -- fixed, it builds, from the cache up to the step that failed
        write(recipe, (RECIPE:gsub("exit 3", "exit 0")))
        local _, err2 = build(root, recipe)
        assert.are.same({
          "[1/2] COPY first.txt /first.txt CACHED",
          "[2/2] RUN echo about to fail; exit 0",
        }, progress(err2, "app"))
        assert.are.same({ "app", "base" }, root.image_names())
      end)
    end)

    describe("a build and rmi at once", function()
      it("keeps the build's new layers: rmi prunes them only once the build is done", function()
        local root = store_root()
        local text = BASE .. [[
image "other" {
  from = base,
  run "touch /other",
}
image "slow" {
  from = base,
  copy { "one.txt", "/one.txt" },
  run "until test -e /go; do sleep 0.05; done",
  run "cat /one.txt > /seen",
}
]]
        local _, recipe = recipe_dir(text, { ["one.txt"] = "one\n" })
        assert.are.equal(0, (root.luactr("build " .. q(recipe) .. " base other")))
        -- the build of slow waits in its second step until /go is put in
        -- that step's root (seen from the host in the store's tmp/)
        local st, pid = support.sh(("%s %s build %s slow >/dev/null 2>&1 & echo $!")
          :format(root.env(), support.LUACTR, q(recipe)))
        assert.are.equal(0, st)
        pid = pid:match("%d+")
        local function running() return os.execute("kill -0 " .. pid .. " 2>/dev/null") end
        local tmp = root.path .. "/store/tmp"
        local function release()
          os.execute(("for d in %s/layer-*; do test -d \"$d\" || continue; if test -d \"$d/merged\"; then touch \"$d/merged/go\"; else touch \"$d/go\"; fi; done"):format(q(tmp)))
          for _ = 1, 200 do
            if not running() then return end
            os.execute("sleep 0.05")
          end
        end
        -- busted keeps one finally: end the build, then tear down
        finally(function() release(); root.teardown() end)
        local waiting
        for _ = 1, 200 do
          for _, name in ipairs(everything_in(tmp)) do
            if name:match("^layer%-") and not name:match("%.lock$") then waiting = true end
          end
          if waiting or not running() then break end
          os.execute("sleep 0.05")
        end
        assert.is_true(waiting)
        local out
        st, out = root.luactr("rmi other")
        assert.are.equal(0, st)
        assert.are.equal("Untagged: other:latest\n", out)
        release()
        assert.is_falsy(running())
        st, out = root.luactr("run --rm slow cat /seen")
        assert.are.equal(0, st)
        assert.are.equal("one\n", out)
        -- other's layer went with the next prune, with slow's three
        st, out = root.luactr("rmi slow")
        assert.are.equal(0, st)
        assert.are.equal("Untagged: slow:latest\nDeleted: 4 layers\n", out)
        assert.are.equal(2, #layers(root))
      end)
    end)

    describe("a build and rmi at once, between two steps", function()
      it("keeps the layers the build made so far", function()
        local root = store_root()
        local text = BASE .. [[
image "other" {
  from = base,
  run "touch /other",
}
image "slow" {
  from = base,
  copy { "one.txt", "/one.txt" },
  run "cat /one.txt > /seen",
}
]]
        local _, recipe = recipe_dir(text, { ["one.txt"] = "one\n" })
        assert.are.equal(0, (root.luactr("build " .. q(recipe) .. " base other")))
        -- the build's progress output runs `luactr rmi other` just as the
        -- second step of slow begins: its first layer belongs to no image
        local script = ([[
local luactr = require "luactr"
local out = { flush = function() end }
function out.write(_, ...)
  local s = table.concat({ ... })
  if s:find("[2/2] RUN cat", 1, true) then
    os.execute(%q)
  end
end
luactr.build(%q, { only = { "slow" }, out = out })
]]):format(("%s %s rmi other"):format(root.env(), support.LUACTR), recipe)
        local st, out, err = support.sh(("%s LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s lua5.4 -e %s")
          :format(root.env(), q(support.BUILD .. "/?.so;;"), q(script)))
        assert.are.equal(0, st, err)
        assert.are.equal("Untagged: other:latest\n", out)
        st, out = root.luactr("run --rm slow cat /seen")
        assert.are.equal(0, st)
        assert.are.equal("one\n", out)
      end)
    end)

    describe("run steps", function()
      it("see the image's env, workdir and user so far", function()
        local root = store_root()
        local _, recipe = recipe_dir(BASE .. [[
image "app" {
  from = base,
  run "mkdir -m 777 /out",
  env { GREETING = "hi" },
  workdir "/work",
  user "1000:1001",
  run 'echo "$GREETING $(pwd) $(id -u):$(id -g)" > /out/seen',
}
]])
        build(root, recipe)
        local st, out = root.luactr("run --rm app cat /out/seen")
        assert.are.equal(0, st)
        assert.are.equal("hi /work 1000:1001\n", out)
      end)

      it("have the host's network, or none with network = \"none\"", function()
        local root = store_root()
        local _, recipe = recipe_dir(BASE .. [[
image "app" {
  from = base,
  run { sh = "ls /sys/class/net > /net-none", network = "none" },
  run "ls /sys/class/net > /net-host",
}
]])
        build(root, recipe)
        local st, out = root.luactr("run --rm app cat /net-none")
        assert.are.equal(0, st)
        assert.are.equal("lo\n", out)
        local p = io.popen("ls /sys/class/net")
        local host = p:read("a")
        p:close()
        st, out = root.luactr("run --rm app cat /net-host")
        assert.are.equal(host, out)
      end)
    end)
  end)
end

describe("luactr build #root", function()
  local function store_root()
    local root = support.store_root()
    finally(root.teardown)
    return root
  end

  local RECIPE = BASE .. [[
image "a" {
  from = base,
  copy { "a.txt", "/a.txt" },
}
image "b" {
  from = base,
  copy { "b.txt", "/b.txt" },
}
]]
  local FILES = { ["a.txt"] = "a\n", ["b.txt"] = "b\n" }

  it("prints the plan with --dry-run and makes no store at all", function()
    local root = store_root()
    local _, recipe = recipe_dir(RECIPE, FILES)
    local st, out = root.luactr("build --dry-run " .. q(recipe))
    assert.are.equal(0, st)
    assert.matches("image a  %(line " .. line_of(RECIPE, 'image "a"') .. "%)\n  FROM base %(this recipe%)\n  %[1/1%] COPY a.txt /a.txt\n", out)
    assert.matches("image b  %(line", out)
    assert.are.same({}, everything_in(root.path))
  end)

  it("builds only the images named, and those they are built on", function()
    local root = store_root()
    local _, recipe = recipe_dir(RECIPE, FILES)
    local st, _, err = root.luactr("build " .. q(recipe) .. " a")
    assert.are.equal(0, st, err)
    assert.are.same({ "a", "base" }, root.image_names())
    assert.are.same({}, progress(err, "b"))
    st, _, err = root.luactr("build " .. q(recipe) .. " nope")
    assert.are.equal(125, st)
    assert.matches("no image 'nope' in this recipe", err)
  end)

  it("reports a recipe error with exit 125 and file:line, building nothing", function()
    local root = store_root()
    local text = 'image "x" {\n  form = "scratch",\n}\n'
    local _, recipe = recipe_dir(text)
    local st, out, err = root.luactr("build " .. q(recipe))
    assert.are.equal(125, st)
    assert.are.equal("", out)
    assert.are.equal("luactr: " .. recipe .. ":2: image 'x': unknown field 'form'\n", err)
    text = BASE .. 'image "y" {\n  from = base,\n  copy { "missing.txt", "/m" },\n}\n'
    _, recipe = recipe_dir(text)
    st, _, err = root.luactr(q(recipe))
    assert.are.equal(125, st)
    assert.matches("^luactr: " .. recipe:gsub("%p", "%%%0") .. ":" .. line_of(text, "missing")
      .. ": copy: source 'missing.txt' does not exist", err)
    assert.are.same({}, everything_in(root.path))
  end)

  it("fails on an unknown base image before anything is built", function()
    local root = store_root()
    local text = BASE .. 'image "x" {\n  from = "nope",\n  run "true",\n}\n'
    local _, recipe = recipe_dir(text)
    local st, _, err = root.luactr("build " .. q(recipe))
    assert.are.equal(125, st)
    assert.matches("luactr: " .. recipe:gsub("%p", "%%%0") .. ":" .. line_of(text, '"nope"')
      .. ": unknown base image 'nope'\n$", err)
    assert.are.same({}, entries(root.path .. "/store/layers"))
    assert.are.same({}, entries(root.path .. "/store/images"))
  end)
end)
