-- Images in the store (images, tag, rmi, history, inspect, info) and the
-- containers run from them (run IMAGE, ps, rm, inspect), through the
-- command line and the Lua API, on both store drivers.
local support = require "support"
local json = require "luactr.json"

local q = support.q

local sh = support.must

local write = support.write

local listing = support.listing

-- Entries of a folder, dot files left out.
local function entries(dir) return listing("ls " .. q(dir)) end

-- The rows of a table that luactr prints, as lists of cells (columns are
-- three spaces or more apart), header first.
local function rows(out)
  local t = {}
  for _, line in ipairs(support.lines(out)) do
    local cells = {}
    for cell in (line .. "   "):gmatch("(.-)   +") do cells[#cells + 1] = cell end
    t[#t + 1] = cells
  end
  return t
end

-- Mount points under `dir`.
local function mounts_under(dir)
  local list = {}
  for _, line in ipairs(support.mounts()) do
    local point = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if point:sub(1, #dir) == dir then list[#list + 1] = point end
  end
  return list
end

for _, driver in ipairs({ "btrfs", "overlay" }) do
  describe("images and containers on " .. driver .. " #root", function()
    -- A store with recipes/hello.lua built in it.
    local function hello_store()
      local root = support.store_root(driver)
      finally(root.teardown)
      local st, _, err = root.luactr("build recipes/hello.lua")
      assert.are.equal(0, st, err)
      return root
    end

    local function layers(root) return entries(root.path .. "/store/layers") end
    local function containers(root) return entries(root.path .. "/store/containers") end

    describe("luactr images, tag and rmi", function()
      it("lists the images with their ids, and only the ids with -q", function()
        local root = hello_store()
        local st, out = root.luactr("images")
        assert.are.equal(0, st)
        local t = rows(out)
        assert.are.same({ "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "LAYERS" }, t[1])
        assert.are.equal(3, #t)
        assert.are.same({ "busybox", "latest" }, { t[2][1], t[2][2] })
        assert.are.same({ "hello", "latest" }, { t[3][1], t[3][2] })
        assert.matches("^%x+$", t[2][3])
        assert.are.equal(12, #t[2][3])
        assert.are.equal("2", t[2][5])
        assert.are.equal("4", t[3][5])
        st, out = root.luactr("images -q")
        assert.are.equal(0, st)
        assert.are.equal(t[2][3] .. "\n" .. t[3][3] .. "\n", out)
      end)

      it("gives an image another name with tag, the same id under both", function()
        local root = hello_store()
        local st = root.luactr("tag hello hello:v2")
        assert.are.equal(0, st)
        local _, out = root.luactr("images")
        local t = rows(out)
        assert.are.same({ "hello", "v2" }, { t[4][1], t[4][2] })
        assert.are.equal(t[3][3], t[4][3])
        local greeting
        st, greeting = root.luactr("run --rm hello:v2 echo tagged")
        assert.are.equal(0, st)
        assert.are.equal("tagged\n", greeting)
        st, _, out = root.luactr("tag nope other")
        assert.are.equal(125, st)
        assert.are.equal("luactr: tag: no such image: nope\n", out)
      end)

      it("removes an image with rmi, and the layers no image uses", function()
        local root = hello_store()
        assert.are.equal(4, #layers(root))
        assert.are.equal(0, (root.luactr("tag hello hello:v2")))
        -- another name keeps its layers
        local st, out = root.luactr("rmi hello:v2")
        assert.are.equal(0, st)
        assert.are.equal("Untagged: hello:v2\n", out)
        assert.are.equal(4, #layers(root))
        st, out = root.luactr("rmi hello")
        assert.are.equal(0, st)
        assert.are.equal("Untagged: hello:latest\nDeleted: 2 layers\n", out)
        assert.are.equal(2, #layers(root))
        assert.are.same({}, listing("ls -A " .. q(root.path .. "/store/tmp")))
        _, out = root.luactr("images")
        assert.are.equal(2, #rows(out))
        st, out = root.luactr("run --rm busybox echo still here")
        assert.are.equal(0, st)
        assert.are.equal("still here\n", out)
        local err
        st, _, err = root.luactr("rmi hello")
        assert.are.equal(125, st)
        assert.are.equal("luactr: rmi: no such image: hello\n", err)
      end)

      it("refuses to remove an image a container was made from, while no other name keeps it", function()
        local root = hello_store()
        assert.are.equal(0, (root.luactr("run --name keep hello true")))
        local st, out, err = root.luactr("rmi hello")
        assert.are.equal(125, st)
        assert.are.equal("", out)
        assert.matches("^luactr: rmi: image hello:latest is used by container %x+: remove the container first\n$", err)
        assert.are.equal(4, #layers(root))
        -- another name keeps the image: that one can go
        assert.are.equal(0, (root.luactr("tag hello hello:v2")))
        st, out = root.luactr("rmi hello")
        assert.are.equal(0, st)
        assert.are.equal("Untagged: hello:latest\n", out)
        assert.are.equal(125, (root.luactr("rmi hello:v2")))
        assert.are.equal(0, (root.luactr("rm keep")))
        st, out = root.luactr("rmi hello:v2")
        assert.are.equal(0, st)
        assert.are.equal("Untagged: hello:v2\nDeleted: 2 layers\n", out)
      end)
    end)

    describe("luactr history", function()
      it("shows the steps newest first, with the layer of each step that made one", function()
        local root = hello_store()
        local st, out = root.luactr("history hello")
        assert.are.equal(0, st)
        local t = rows(out)
        assert.are.same({ "STEP", "CREATED BY", "LAYER" }, t[1])
        local steps, marks = {}, {}
        for i = 2, #t do
          steps[#steps + 1] = t[i][1] .. " " .. t[i][2]
          marks[#marks + 1] = t[i][3]
        end
        assert.are.same({
          "9 LABEL org.opencontainers.image.title=hello",
          "8 USER 1000:1000",
          "7 RUN echo built > /srv/built",
          "6 WORKDIR /srv",
          "5 COPY files/ /srv/",
          "4 ENV GREETING=hello",
          "3 ENV PATH=/bin",
          '2 RUN ["/bin/busybox","--install","-s","/bin"]',
          "1 COPY --host /bin/busybox /bin/busybox",
        }, steps)
        -- a layer of the store for each RUN and COPY, "-" for the others
        local in_store = {}
        for _, key in ipairs(layers(root)) do in_store[key:sub(1, 12)] = true end
        local seen = {}
        for i, mark in ipairs(marks) do
          if steps[i]:match("^%d+ RUN") or steps[i]:match("^%d+ COPY") then
            assert.is_true(in_store[mark], "no layer " .. mark .. " for " .. steps[i])
            seen[mark] = true
          else
            assert.are.equal("-", mark)
          end
        end
        local n = 0
        for _ in pairs(seen) do n = n + 1 end
        assert.are.equal(4, n)
      end)
    end)

    describe("luactr inspect IMAGE", function()
      it("prints the image as JSON in the shape of an OCI image config", function()
        local root = hello_store()
        local st, out = root.luactr("inspect hello")
        assert.are.equal(0, st)
        if os.execute("command -v python3 >/dev/null") then
          assert.are.equal(0, (support.sh("python3 -c 'import json, sys; json.load(sys.stdin)'", out)))
        end
        local list = json.decode(out)
        assert.are.equal(1, #list)
        local img = list[1]
        assert.are.equal("linux", img.os)
        assert.are.equal("layers", img.rootfs.type)
        assert.are.same({ "PATH=/bin", "GREETING=hello" }, img.config.Env)
        assert.are.same({ "sh", "-c", "cat /srv/greeting.txt; echo $GREETING from $(hostname)" },
          img.config.Cmd)
        assert.are.equal("/srv", img.config.WorkingDir)
        assert.are.equal("1000:1000", img.config.User)
        assert.are.same({ ["org.opencontainers.image.title"] = "hello" }, img.config.Labels)
        assert.are.equal(9, #img.history)
        assert.are.equal("COPY files/ /srv/", img.history[5].created_by)
        assert.is_true(img.history[4].empty_layer)
        st, _, out = root.luactr("inspect nope")
        assert.are.equal(125, st)
        assert.are.equal("luactr: inspect: no such image or container: nope\n", out)
      end)
    end)

    describe("luactr info", function()
      it("prints the driver and the root", function()
        local root = hello_store()
        local st, out = root.luactr("info")
        assert.are.equal(0, st)
        assert.matches("^Driver: " .. driver .. "\nRoot: " .. root.path:gsub("%p", "%%%0") .. "\n", out)
        assert.matches("\nImages: 2\nContainers: 0\n", out)
      end)
    end)

    describe("luactr run IMAGE", function()
      it("runs the image's command with its env, workdir and user", function()
        local root = hello_store()
        local st, out = root.luactr("run --rm hello")
        assert.are.equal(0, st)
        assert.matches("^Hello from a luactr image: .*\nhello from %x+\n$", out)
        st, out = root.luactr([[run --rm hello sh -c 'echo "$GREETING|$(pwd)|$(id -u):$(id -g)|$PATH"']])
        assert.are.equal(0, st)
        assert.are.equal("hello|/srv|1000:1000|/bin\n", out)
      end)

      it("runs the command given instead of the image's, with its exit status", function()
        local root = hello_store()
        local st, out = root.luactr("run --rm hello echo overridden")
        assert.are.equal(0, st)
        assert.are.equal("overridden\n", out)
        st = root.luactr("run --rm hello sh -c 'exit 7'")
        assert.are.equal(7, st)
        local err
        st, _, err = root.luactr("run --rm hello no-such-command")
        assert.are.equal(127, st)
        assert.matches("^luactr: run: ", err)
      end)

      it("adds -e to the image's env, and -u and -w override its user and workdir", function()
        local root = hello_store()
        local st, out = root.luactr("run --rm -e EXTRA=1 -e GREETING=bye hello env")
        assert.are.equal(0, st)
        local env = support.lines(out)
        assert.is_truthy(table.concat(env, "\n"):find("EXTRA=1", 1, true))
        local greetings = {}
        for _, kv in ipairs(env) do
          if kv:match("^GREETING=") then greetings[#greetings + 1] = kv end
        end
        assert.are.same({ "GREETING=bye" }, greetings)
        st, out = root.luactr("run --rm -u 0 -w /bin hello sh -c 'id -u; pwd'")
        assert.are.equal(0, st)
        assert.are.equal("0\n/bin\n", out)
      end)

      it("runs the image's entrypoint with its cmd or the one given, and --entrypoint replaces it", function()
        local root = hello_store()
        local dir = support.tmpdir()
        write(dir .. "/recipe.lua", [[
image "ep" {
  from = "busybox",
  entrypoint = { "echo", "from the entrypoint:" },
  cmd = { "default" },
}
]])
        local st, _, err = root.luactr("build " .. q(dir .. "/recipe.lua"))
        assert.are.equal(0, st, err)
        local out
        st, out = root.luactr("run --rm ep")
        assert.are.equal("from the entrypoint: default\n", out)
        st, out = root.luactr("run --rm ep given")
        assert.are.equal("from the entrypoint: given\n", out)
        -- Docker's rule: --entrypoint drops the image's cmd as well
        st, out = root.luactr("run --rm --entrypoint /bin/echo ep replaced")
        assert.are.equal(0, st)
        assert.are.equal("replaced\n", out)
        st, out = root.luactr("run --rm --entrypoint /bin/echo hello a b")
        assert.are.equal("a b\n", out)
      end)

      it("gives each container a snapshot: what one writes, the next and the image do not see", function()
        local root = hello_store()
        local st = root.luactr("run --rm -u 0 hello sh -c 'echo mine > /srv/greeting.txt; touch /made'")
        assert.are.equal(0, st)
        local out
        st, out = root.luactr("run --rm hello sh -c 'cat /srv/greeting.txt; test -e /made'")
        assert.are.equal(1, st)
        assert.matches("^Hello from a luactr image", out)
        assert.are.same({}, listing(("find %s -name made"):format(q(root.path .. "/store/layers"))))
      end)

      it("removes the container with --rm, whatever its end", function()
        local root = hello_store()
        assert.are.equal(0, (root.luactr("run --rm hello true")))
        assert.are.equal(2, (root.luactr("run --rm hello sh -c 'exit 2'")))
        assert.are.equal(127, (root.luactr("run --rm hello no-such-command")))
        assert.are.same({}, containers(root))
        assert.are.same({}, mounts_under(root.path .. "/store/containers"))
        local _, out = root.luactr("ps -a")
        assert.are.equal(1, #rows(out))
      end)
    end)

    describe("a stopped container", function()
      it("stays without --rm: ps -a lists it, ps does not, inspect shows it, rm removes it", function()
        local root = hello_store()
        local st = root.luactr("run --name keep hello sh -c 'exit 4'")
        assert.are.equal(4, st)
        local out
        st, out = root.luactr("ps -a")
        assert.are.equal(0, st)
        local t = rows(out)
        assert.are.same({ "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES" }, t[1])
        assert.are.equal(2, #t)
        local id = t[2][1]
        assert.matches("^%x+$", id)
        assert.are.equal(12, #id)
        assert.are.equal(id, containers(root)[1]:sub(1, 12))
        assert.are.equal("hello:latest", t[2][2])
        assert.are.equal('"sh -c exit 4"', t[2][3])
        assert.matches("^Exited %(4%)", t[2][5])
        assert.are.equal("keep", t[2][6])
        st, out = root.luactr("ps")
        assert.are.equal(0, st)
        assert.are.equal(1, #rows(out))

        st, out = root.luactr("inspect keep")
        assert.are.equal(0, st)
        local c = json.decode(out)[1]
        assert.are.equal("exited", c.State.Status)
        assert.are.equal(4, c.State.ExitCode)
        assert.are.equal("/keep", c.Name)
        assert.are.equal("hello:latest", c.Config.Image)
        assert.are.same({ "sh", { "-c", "exit 4" } }, { c.Path, c.Args })
        assert.are.same({ "sh", "-c", "exit 4" }, c.Spec.process.args)

        if driver == "btrfs" then
          local subvolumes = listing("btrfs subvolume list -o " .. q(root.path .. "/store"))
          assert.is_truthy(table.concat(subvolumes, "\n"):find("containers/", 1, true))
        end
        assert.are.same({}, mounts_under(root.path .. "/store/containers"))
        st, out = root.luactr("rm keep")
        assert.are.equal(0, st)
        assert.are.equal("keep\n", out)
        assert.are.same({}, containers(root))
        assert.are.same({}, listing("ls -A " .. q(root.path .. "/store/tmp")))
        if driver == "btrfs" then
          local subvolumes = listing("btrfs subvolume list -o " .. q(root.path .. "/store"))
          assert.is_nil(table.concat(subvolumes, "\n"):find("containers/", 1, true))
          assert.are.equal(#layers(root), #subvolumes)
        end
        local err
        st, _, err = root.luactr("rm keep")
        assert.are.equal(125, st)
        assert.are.equal("luactr: no such container: keep\n", err)
      end)

      it("is listed by ps as Up while it runs, then by ps -a as Exited", function()
        local root = hello_store()
        -- it runs until the test puts /go in its root (seen from the host)
        local st, pid = support.sh(("%s %s run --name up hello sh -c 'until test -e /go; do sleep 0.05; done' >/dev/null 2>&1 & echo $!")
          :format(root.env(), support.LUACTR))
        assert.are.equal(0, st)
        pid = pid:match("%d+")
        local function running() return os.execute("kill -0 " .. pid .. " 2>/dev/null") end
        local function release()
          os.execute("for r in " .. q(root.path) .. "/store/containers/*/rootfs; do test -d \"$r\" && touch \"$r/go\"; done")
          for _ = 1, 200 do
            if not running() then break end
            os.execute("sleep 0.05")
          end
        end
        -- busted keeps one finally: end the container, then tear down
        finally(function() release(); root.teardown() end)
        local t
        for _ = 1, 200 do
          local _, out = root.luactr("ps")
          t = rows(out)
          if #t == 2 or not running() then break end
          os.execute("sleep 0.05")
        end
        assert.are.equal(2, #t)
        assert.are.equal('"sh -c until test -e /go; do..."', t[2][3])  -- cut at 30
        assert.matches("^Up ", t[2][5])
        assert.are.equal("up", t[2][6])
        -- a running container is not removed without -f
        local err
        st, _, err = root.luactr("rm up")
        assert.are.equal(125, st)
        assert.matches("is running", err)
        release()
        assert.is_falsy(running())
        local _, out = root.luactr("ps")
        assert.are.equal(1, #rows(out))
        _, out = root.luactr("ps -a")
        assert.matches("^Exited %(0%)", rows(out)[2][5])
        assert.are.equal(0, (root.luactr("rm up")))
      end)

      it("keeps its name: a second container of that name is refused", function()
        local root = hello_store()
        assert.are.equal(0, (root.luactr("run --name keep hello true")))
        local st, out, err = root.luactr("run --name keep hello echo second")
        assert.are.equal(125, st)
        assert.are.equal("", out)
        assert.matches("^luactr: run: the name 'keep' is in use by container %x+\n$", err)
        assert.are.equal(1, #containers(root))
        -- nor can several runs at once take one name
        st, _, err = support.sh(("for i in 1 2 3 4 5 6; do %s %s run --name same hello true & done; wait")
          :format(root.env(), support.LUACTR))
        local refused = select(2, err:gsub("the name 'same' is in use", ""))
        assert.are.equal(5, refused)
        assert.are.equal(2, #containers(root))
      end)

      it("is found by a unique prefix of its id", function()
        local root = hello_store()
        assert.are.equal(0, (root.luactr("run hello true")))
        local id = containers(root)[1]
        local st, out = root.luactr("inspect " .. id:sub(1, 6))
        assert.are.equal(0, st)
        assert.are.equal(id, json.decode(out)[1].Id)
        st = root.luactr("rm " .. id:sub(1, 6))
        assert.are.equal(0, st)
        assert.are.same({}, containers(root))
      end)
    end)

    describe("the Lua API", function()
      it("builds, lists and runs images", function()
        local root = hello_store()
        local script = [[
local luactr = require "luactr"
local built = luactr.build("recipes/hello.lua", { out = io.open("/dev/null", "w") })
print("built", built.hello.id, built.busybox.id)
local plan = require("luactr.build.recipe").load("recipes/hello.lua")
print("again", luactr.build(plan, { out = io.open("/dev/null", "w") }).hello.id)
for _, img in ipairs(luactr.images()) do print("image", img.ref, img.id) end
print("run", luactr.run{ image = "hello", cmd = { "sh", "-c", "exit 5" }, rm = true })
print("run", luactr.run{ image = "hello", cmd = { "echo", "hi" }, rm = true })
print("error", pcall(luactr.run, { image = "nope" }))
]]
        local st, out, err = support.sh(("%s LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s lua5.4 -e %s")
          :format(root.env(), q(support.BUILD .. "/?.so;;"), q(script)))
        assert.are.equal(0, st, err)
        local lines = support.lines(out)
        local hello, busybox = lines[1]:match("^built\t(%x+)\t(%x+)$")
        assert.are.equal(64, #hello)
        -- a plan builds as its recipe does: from the cache, the same image
        assert.are.equal("again\t" .. hello, lines[2])
        assert.are.equal("image\tbusybox:latest\t" .. busybox, lines[3])
        assert.are.equal("image\thello:latest\t" .. hello, lines[4])
        assert.are.equal("run\tnil\texit\t5", lines[5])
        assert.are.equal("hi", lines[6])
        assert.are.equal("run\ttrue\texit\t0", lines[7])
        assert.are.equal("error\tfalse\trun: no such image: nope", lines[8])
        assert.are.same({}, containers(root))
      end)
    end)
  end)
end
