-- luactr.build.recipe: a recipe file read into a plan, and every mistake in one
-- reported with the file, the line and the word at fault. Needs no root and
-- nothing built.
local recipe = require "luactr.build.recipe"
local errors = require "luactr.errors"

local function pwd()
  local p = io.popen("pwd")
  local d = p:read("l")
  p:close()
  return d
end

local TOP = pwd()
local FIX = "tests/recipes"            -- the fixtures' folder, relative
local FIXABS = TOP .. "/" .. FIX
local INLINE = FIX .. "/inline.lua"    -- the name of recipes given as text

local function load(text) return recipe.load_string(text, INLINE) end

-- The luactr error that loading raises: its message (and status 125).
local function error_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  assert.is_true(errors.is(e), "not a luactr error: " .. tostring(e))
  assert.are.equal(125, e.status)
  return e.message
end

local function fails(text) return error_of(load, text) end

-- A recipe made of one image with `body` below its `from`.
local function one_image(body)
  return 'image "x" {\n  from = "scratch",\n' .. body .. "\n}\n"
end

local function steps_of(body) return load(one_image(body)).images[1].steps end

-- No function, metatable, userdata or cycle anywhere in `v`.
local function assert_plain(v, seen, path)
  seen, path = seen or {}, path or "plan"
  local t = type(v)
  assert.is_true(t == "table" or t == "string" or t == "number" or t == "boolean",
    path .. " is a " .. t)
  if t ~= "table" then return end
  assert.is_nil(getmetatable(v), path .. " has a metatable")
  assert.is_nil(seen[v], path .. " is seen twice")
  seen[v] = true
  for k, x in pairs(v) do
    assert_plain(k, seen, path .. "[key]")
    assert_plain(x, seen, path .. "." .. tostring(k))
  end
  seen[v] = nil
end

local function sh(cmd)
  local ok = os.execute(cmd)
  assert.is_true(ok, cmd)
end

describe("recipe.load", function()
  describe("recipes/hello.lua", function()
    it("gives the plan of the busybox image and of hello on top of it", function()
      local plan = recipe.load("recipes/hello.lua")
      assert.are.same({
        file = TOP .. "/recipes/hello.lua",
        dir = TOP .. "/recipes",
        images = {
          { name = "busybox", line = 6, from = { kind = "scratch" }, from_line = 7,
            steps = {
              { kind = "copy", line = 8, text = "COPY --host /bin/busybox /bin/busybox",
                sources = { { path = "/bin/busybox", host = true, is_dir = false, contents = false } },
                dest = "/bin/busybox" },
              { kind = "run", line = 9, text = 'RUN ["/bin/busybox","--install","-s","/bin"]',
                argv = { "/bin/busybox", "--install", "-s", "/bin" }, network = "host" },
              { kind = "env", line = 10, text = "ENV PATH=/bin", vars = { { "PATH", "/bin" } } },
            },
            config = {},
          },
          { name = "hello", line = 13, from = { kind = "image", name = "busybox" }, from_line = 14,
            steps = {
              { kind = "env", line = 15, text = "ENV GREETING=hello", vars = { { "GREETING", "hello" } } },
              { kind = "copy", line = 16, text = "COPY files/ /srv/",
                sources = { { path = TOP .. "/recipes/files", rel = "files/", is_dir = true, contents = true } },
                dest = "/srv/" },
              { kind = "workdir", line = 17, text = "WORKDIR /srv", path = "/srv" },
              { kind = "run", line = 18, text = "RUN echo built > /srv/built",
                sh = "echo built > /srv/built", network = "host" },
              { kind = "user", line = 19, text = "USER 1000:1000", user = "1000:1000" },
              { kind = "label", line = 20, text = "LABEL org.opencontainers.image.title=hello",
                labels = { { "org.opencontainers.image.title", "hello" } } },
            },
            config = { cmd = { "sh", "-c", "cat /srv/greeting.txt; echo $GREETING from $(hostname)" } },
          },
        },
        deployments = {},
      }, plan)
    end)

    it("prints as the images in build order with numbered steps", function()
      assert.are.equal(table.concat({
        "recipe " .. TOP .. "/recipes/hello.lua",
        "",
        "image busybox  (line 6)",
        "  FROM scratch",
        "  [1/3] COPY --host /bin/busybox /bin/busybox",
        '  [2/3] RUN ["/bin/busybox","--install","-s","/bin"]',
        "  [3/3] ENV PATH=/bin",
        "",
        "image hello  (line 13)",
        "  FROM busybox (this recipe)",
        "  [1/6] ENV GREETING=hello",
        "  [2/6] COPY files/ /srv/",
        "  [3/6] WORKDIR /srv",
        "  [4/6] RUN echo built > /srv/built",
        "  [5/6] USER 1000:1000",
        "  [6/6] LABEL org.opencontainers.image.title=hello",
        '  CMD ["sh","-c","cat /srv/greeting.txt; echo $GREETING from $(hostname)"]',
        "",
      }, "\n"), recipe.format(recipe.load("recipes/hello.lua")))
    end)

    it("is a plain table: no function, no metatable, no shared or cyclic table", function()
      assert_plain(recipe.load("recipes/hello.lua"))
      assert_plain(recipe.load("recipes/python-app.lua"))
    end)

    it("is the same plan each time it is loaded", function()
      assert.are.same(recipe.load("recipes/hello.lua"), recipe.load("recipes/hello.lua"))
    end)
  end)

  describe("recipes/python-app.lua", function()
    local plan = recipe.load("recipes/python-app.lua")

    it("builds on a Debian bookworm base and installs python3 in a step", function()
      local img = plan.images[1]
      assert.are.equal(1, #plan.images)
      assert.are.equal("python-app", img.name)
      assert.are.same({ kind = "debian", suite = "bookworm", variant = "minbase", include = {} }, img.from)
      assert.are.equal(7, img.from_line)
      assert.are.equal("run", img.steps[1].kind)
      assert.matches("apt%-get install %-y .*python3", img.steps[1].sh)
      assert.are.equal("host", img.steps[1].network)
    end)

    it("copies the app owned by 1000:1000 with mode 0644", function()
      local copy = plan.images[1].steps[2]
      assert.are.equal("COPY app/ /app/ owner=1000:1000 mode=0644", copy.text)
      assert.are.same({ uid = 1000, gid = 1000 }, copy.owner)
      assert.are.equal(420, copy.mode)
      assert.are.same({ { path = TOP .. "/recipes/app", rel = "app/", is_dir = true, contents = true } },
        copy.sources)
      local f = assert(io.open(TOP .. "/recipes/app/server.py"))
      assert.matches('"0%.0%.0%.0", 8000', f:read("a"))
      f:close()
    end)

    it("runs python3 /app/server.py, exposes 8000 and stops with SIGINT", function()
      assert.are.same({
        entrypoint = { "python3" }, cmd = { "/app/server.py" }, expose = { "8000/tcp" },
        labels = { ["org.opencontainers.image.title"] = "python-app" }, stop_signal = "SIGINT",
      }, plan.images[1].config)
    end)

    it("deploys it as the container web, published on port 8080", function()
      assert.are.same({ {
        name = "python-app", line = 24,
        containers = { {
          name = "web", line = 25, image = "python-app", replicas = 1, restart = "on-failure",
          memory = "64M", memory_bytes = 64 * 1024 * 1024, pids_limit = 100, cpus = 0.5,
          ports = { { host = 8080, container = 8000, protocol = "tcp" } },
          env = { { "GREETING", "hello" } },
        } },
      } }, plan.deployments)
    end)
  end)

  describe("from", function()
    it("orders bases before the images built on them, by name even when defined later", function()
      local plan = recipe.load(FIX .. "/two.lua")
      assert.are.same({ "base", "app" }, { plan.images[1].name, plan.images[2].name })
      assert.are.same({ kind = "image", name = "base" }, plan.images[2].from)
      assert.are.equal(3, plan.images[2].from_line)
    end)

    it("names an image of the store when no image of the recipe has that name", function()
      local img = load('image "x" {\n from = "registry.example.com:5000/team/alpine:3.19" }').images[1]
      assert.are.same({ kind = "store", name = "registry.example.com:5000/team/alpine:3.19" }, img.from)
      assert.are.equal(2, img.from_line)
    end)

    it("takes debian with a suite, a variant and packages to include (sorted)", function()
      local img = load([[
image "x" {
  from = debian { suite = "trixie", variant = "buildd", include = { "python3", "curl" } },
}]]).images[1]
      assert.are.same({ kind = "debian", suite = "trixie", variant = "buildd", include = { "curl", "python3" } },
        img.from)
      assert.are.equal(2, img.from_line)
    end)

    it("finds the line of a from written several lines below its image", function()
      local img = load('image "x" {\n  run "true",\n\n  from = "scratch",\n}').images[1]
      assert.are.equal(4, img.from_line)
    end)
  end)

  describe("steps", function()
    it("runs a string with the shell, an array as it is, and { sh = ... } with options", function()
      local steps = steps_of([[
  run "echo a > /a",
  run { "/bin/touch", "/b c" },
  run { sh = "echo 'd'", network = "none" },
  run { "true", network = "none" },]])
      assert.are.same({
        { kind = "run", line = 3, sh = "echo a > /a", network = "host", text = "RUN echo a > /a" },
        { kind = "run", line = 4, argv = { "/bin/touch", "/b c" }, network = "host",
          text = 'RUN ["/bin/touch","/b c"]' },
        { kind = "run", line = 5, sh = "echo 'd'", network = "none", text = "RUN --network=none echo 'd'" },
        { kind = "run", line = 6, argv = { "true" }, network = "none", text = 'RUN --network=none ["true"]' },
      }, steps)
    end)

    it("copies a folder's contents with a trailing '/', the folder itself without", function()
      local plan = recipe.load(FIX .. "/two.lua")
      local app = plan.images[2]
      assert.are.same({
        { path = FIXABS .. "/files", rel = "files/", is_dir = true, contents = true },
        { path = FIXABS .. "/single.txt", rel = "single.txt", is_dir = false, contents = false },
      }, app.steps[1].sources)
      assert.are.equal("COPY files/ single.txt /srv/ owner=1000:1000 mode=0644", app.steps[1].text)
      assert.are.same({ uid = 1000, gid = 1000 }, app.steps[1].owner)
      assert.are.same({ { path = FIXABS .. "/files", rel = "files", is_dir = true, contents = false } },
        app.steps[2].sources)
      assert.are.equal("COPY files /opt/", app.steps[2].text)
      assert.are.same({ { path = FIXABS .. "/single.txt", rel = "single.txt", is_dir = false, contents = false } },
        plan.images[1].steps[1].sources)
    end)

    it("normalises copy paths, and takes to = and the whole folder as '.'", function()
      local steps = steps_of([[
  copy { "./files/../single.txt", to = "/x//y/" },
  copy { ".", "/all/" },
  copy { host = "/etc/", to = "/host-etc" },]])
      assert.are.same({ { path = FIXABS .. "/single.txt", rel = "single.txt", is_dir = false, contents = false } },
        steps[1].sources)
      assert.are.equal("/x/y/", steps[1].dest)
      assert.are.equal("COPY single.txt /x/y/", steps[1].text)
      assert.are.same({ { path = FIXABS, rel = "./", is_dir = true, contents = true } }, steps[2].sources)
      assert.are.same({ { path = "/etc", host = true, is_dir = true, contents = true } }, steps[3].sources)
      assert.are.equal("COPY --host /etc/ /host-etc", steps[3].text)
    end)

    it("sorts env and label by key, and writes numbers as strings", function()
      local steps = steps_of([[
  env { B = 2, A = "one two", C = 0.5 },
  label { z = "1", ["a.b"] = "x=y" },]])
      assert.are.same({ { "A", "one two" }, { "B", "2" }, { "C", "0.5" } }, steps[1].vars)
      assert.are.equal('ENV A="one two" B=2 C=0.5', steps[1].text)
      assert.are.same({ { "a.b", "x=y" }, { "z", "1" } }, steps[2].labels)
      assert.are.equal('LABEL a.b="x=y" z=1', steps[2].text)
    end)

    it("normalises workdir and takes user as a name, name:group or a number", function()
      local steps = steps_of([[
  workdir "/srv//www/./",
  user "www-data:www-data",
  user(0),]])
      assert.are.equal("/srv/www", steps[1].path)
      assert.are.equal("WORKDIR /srv/www", steps[1].text)
      assert.are.equal("USER www-data:www-data", steps[2].text)
      assert.are.equal("0", steps[3].user)
    end)

    it("takes lists of steps a recipe reuses, and skips a step left out by a condition", function()
      local plan = load([[
local common = { env { A = "1" }, workdir "/w" }
local debug = false
image "a" { from = "scratch", common, debug and run "set -x" }
image "b" { from = "a", common, run "true" }]])
      local texts = {}
      for _, s in ipairs(plan.images[2].steps) do texts[#texts + 1] = s.text end
      assert.are.same({ "ENV A=1", "WORKDIR /w", "RUN true" }, texts)
      assert.are.equal(2, #plan.images[1].steps)
      assert_plain(plan)
    end)

    it("writes step texts that do not depend on where the checkout is", function()
      local dir = pwd() -- a copy of the fixtures elsewhere
      local p = io.popen("mktemp -d /tmp/luactr-recipe.XXXXXX")
      local tmp = p:read("l")
      p:close()
      finally(function() os.execute("rm -rf '" .. tmp .. "'") end)
      sh(("cp -r '%s/%s' '%s/'"):format(dir, FIX, tmp))
      local here = recipe.load(FIX .. "/two.lua")
      local there = recipe.load(tmp .. "/recipes/two.lua")
      assert.are.equal(tmp .. "/recipes", there.dir)
      for i, img in ipairs(here.images) do
        for j, step in ipairs(img.steps) do
          assert.are.equal(step.text, there.images[i].steps[j].text)
        end
      end
      assert.are_not.equal(here.images[1].steps[1].sources[1].path,
        there.images[1].steps[1].sources[1].path)
    end)
  end)

  describe("settings", function()
    it("turns a string command into /bin/sh -c, and normalises ports, volumes and signals", function()
      local img = load([[
image "x" {
  from = "scratch",
  entrypoint = "exec server",
  cmd = { "--port", "80" },
  expose = { 80, "53/udp", "443" },
  volumes = { "/data/", "/var//log" },
  labels = { a = "b" },
  stop_signal = 15,
}]]).images[1]
      assert.are.same({
        entrypoint = { "/bin/sh", "-c", "exec server" }, cmd = { "--port", "80" },
        expose = { "80/tcp", "53/udp", "443/tcp" }, volumes = { "/data", "/var/log" },
        labels = { a = "b" }, stop_signal = "SIGTERM",
      }, img.config)
    end)

    it("prints a step of several lines indented under its number", function()
      local text = recipe.format(load('image "x" { from = "scratch", run "set -e\\ntrue" }'))
      assert.matches("\n  %[1/1%] RUN set %-e\n        true\n", text)
    end)

    it("prints the settings and a deploy's containers", function()
      local text = recipe.format(load([[
local x = image "x" { from = "alpine:3", expose = { 80 }, stop_signal = "term" }
deploy "d" { container "c" { image = x, ports = { "127.0.0.1:8080:80/udp" }, memory = "1g" } }]]))
      assert.matches("\n  FROM alpine:3 %(store%)\n", text)
      assert.matches("\n  EXPOSE 80/tcp\n  STOPSIGNAL SIGTERM\n", text)
      assert.matches("\ndeploy d  %(line 2%)\n  container c: image x, replicas 1, restart no, " ..
        "memory 1g, ports 127.0.0.1:8080:80/udp\n$", text)
    end)
  end)

  describe("deploy", function()
    it("takes an image by name, with replicas 1 and restart 'no' unless told", function()
      local plan = load([[
deploy "d" {
  container "a" { image = "busybox" },
  container "b" { image = "busybox", memory = "512k", restart = "on-failure:3", replicas = 0 },
}
deploy "e" { container "a" { image = "busybox", memory = 4096 } }]])
      assert.are.same({ name = "a", line = 2, image = "busybox", replicas = 1, restart = "no" },
        plan.deployments[1].containers[1])
      local b = plan.deployments[1].containers[2]
      assert.are.equal(512 * 1024, b.memory_bytes)
      assert.are.equal("on-failure:3", b.restart)
      assert.are.equal(0, b.replicas)
      assert.are.equal(4096, plan.deployments[2].containers[1].memory_bytes)
      assert.are.same({}, plan.images)
    end)
  end)

  describe("the recipe's environment", function()
    it("has string, table, math, utf8 and os.getenv", function()
      local plan = load([[
local names = {}
for _, v in ipairs({ "b", "a" }) do names[#names + 1] = string.upper(v) end
table.sort(names)
image "x" { from = "scratch",
  env { NAMES = table.concat(names, ","), N = math.max(1, 2), U = utf8.char(233),
        HOME = os.getenv("HOME") or "none", S = ("x"):rep(3) } }]])
      assert.are.same({ { "HOME", os.getenv("HOME") or "none" }, { "N", "2" }, { "NAMES", "A,B" },
        { "S", "xxx" }, { "U", "é" } }, plan.images[1].steps[1].vars)
    end)

    it("keeps its library tables to itself", function()
      load('string.upper = nil\nimage "x" { from = "scratch" }')
      assert.is_function(string.upper)
    end)

    for _, name in ipairs({ "io", "require", "dofile", "load", "print", "setmetatable", "_G" }) do
      it("has no " .. name, function()
        assert.are.equal(INLINE .. ":1: unknown word '" .. name .. "'",
          fails("local x = " .. name .. "\nimage 'x' { from = 'scratch' }"))
      end)
    end

    it("has no os.execute, os.time or os.remove", function()
      local plan = load([[image "x" { from = "scratch",
        label { a = tostring(os.execute), b = tostring(os.time), c = tostring(os.remove) } }]])
      assert.are.same({ { "a", "nil" }, { "b", "nil" }, { "c", "nil" } }, plan.images[1].steps[1].labels)
    end)
  end)
end)

describe("recipe errors", function()
  it("are luactr errors with status 125 that name the file and line", function()
    assert.are.equal(FIX .. "/typo.lua:5: image 'hello': unknown field 'form'",
      error_of(recipe.load, FIX .. "/typo.lua"))
  end)

  it("name a recipe that cannot be read", function()
    assert.are.equal(FIX .. "/nosuch.lua: No such file or directory",
      error_of(recipe.load, FIX .. "/nosuch.lua"))
  end)

  it("give Lua's message for a syntax error", function()
    assert.are.equal(INLINE .. [[:2: '}' expected (to close '{' at line 1) near <eof>]],
      fails('image "x" {\n  from = "scratch"'))
  end)

  it("give the line of a runtime error in the recipe", function()
    assert.are.equal(INLINE .. ":2: boom", fails('local x = 1\nerror("boom")'))
    assert.are.equal(INLINE .. ":3: no base given", fails('local function f()\n\n  error("no base given", 0)\nend\nf()'))
    assert.matches("^" .. INLINE:gsub("%p", "%%%0") .. ":1: attempt to perform arithmetic",
      fails('local x = {} + 1'))
  end)

  it("skip a first line starting with #!, keeping the lines", function()
    assert.are.equal(INLINE .. ":2: unknown word 'oops'", fails("#!/usr/bin/env luactr\noops()"))
  end)

  it("keep the whole path of a recipe with a long name", function()
    local long = FIX .. "/" .. ("d"):rep(80) .. "/../inline.lua"
    local msg = error_of(recipe.load_string, "error('x')", long)
    assert.are.equal(long .. ":1: x", msg)
  end)

  describe("in the recipe's words", function()
    it("name an unknown word", function()
      assert.are.equal(INLINE .. ":2: unknown word 'imgae'", fails('\nimgae "x" { from = "scratch" }'))
    end)

    it("forbid assigning a global", function()
      assert.are.equal(INLINE .. ":3: assignment to global 'x' (use local)",
        fails('image "a" { from = "scratch" }\n\nx = 1'))
    end)

    it("find a step outside of any image", function()
      assert.are.equal(INLINE .. ":2: run step outside of any image",
        fails('image "a" { from = "scratch" }\nrun "true"'))
    end)

    it("find an image without its table", function()
      assert.are.equal([[tests/recipes/inline.lua:1: image 'a' has no table: write image 'a' { ... }]],
        fails('image "a"'))
    end)

    it("find a step word that is not called", function()
      assert.are.equal(INLINE .. ":1: image 'a': item 1 is the word 'run' (not called), not a step " ..
        "(run, copy, env, workdir, user, label)", fails('image "a" { from = "scratch", run }'))
    end)

    it("find a bad image name", function()
      assert.are.equal(INLINE .. [[:1: image: expected a name (lowercase letters, digits, '.', '_', '-', '/' and an optional ':tag'), got 'Hello World']],
        fails('image "Hello World" { from = "scratch" }'))
    end)

    it("refuse to change an image object", function()
      assert.are.equal(INLINE .. ":2: image 'a' cannot be changed (field 'from')",
        fails('local a = image "a" { from = "scratch" }\na.from = "b"'))
    end)

    it("say that a recipe defining nothing has nothing to do", function()
      assert.are.equal(INLINE .. ":1: the recipe defines no image and no deploy", fails("-- empty\n"))
      assert.are.equal(INLINE .. ":1: the recipe defines no image and no deploy", fails(""))
    end)
  end)

  describe("in an image's fields", function()
    it("name a misspelt field at its line", function()
      assert.are.equal(INLINE .. ":4: image 'x': unknown field 'comd'",
        fails(one_image('  run "true",\n  comd = { "sh" },')))
    end)

    it("tell a step from a field", function()
      assert.are.equal(INLINE .. ":3: image 'x': unknown field 'env' (env is a step: write env { ... } in the list)",
        fails(one_image('  env = { A = "1" },')))
    end)

    it("name a field of the wrong type", function()
      assert.are.equal(INLINE .. ":3: image 'x': cmd: expected a string or a non-empty array of strings, got integer",
        fails(one_image("  cmd = 5,")))
      assert.are.equal(INLINE .. ":3: image 'x': cmd[2]: expected string, got integer",
        fails(one_image('  cmd = { "sleep", 5 },')))
      assert.are.equal(INLINE .. ":3: image 'x': expose[1]: expected a port (8000 or '8000/udp'), got 'http'",
        fails(one_image('  expose = { "http" },')))
      assert.are.equal(INLINE .. ":3: image 'x': volumes[1]: expected an absolute path, got 'data'",
        fails(one_image('  volumes = { "data" },')))
      assert.are.equal(INLINE .. ":3: image 'x': stop_signal: expected a signal ('SIGTERM' or 15), got 'SIGNOPE'",
        fails(one_image('  stop_signal = "SIGNOPE",')))
      assert.are.equal(INLINE .. ":3: image 'x': labels.a: expected string, got boolean",
        fails(one_image('  labels = { a = true },')))
    end)

    it("find a missing from", function()
      assert.are.equal(INLINE .. [[:2: image 'x': field 'from' is missing (an image, "scratch" or debian "bookworm")]],
        fails('\nimage "x" {\n  run "true",\n}'))
    end)

    it("find a from that is no image", function()
      assert.are.equal(INLINE .. [[:1: image 'x': from: expected "scratch", an image, an image name or debian "suite", got integer]],
        fails('image "x" { from = 3 }'))
      assert.are.equal(INLINE .. [[:1: image 'x': from: 'Not An Image' is not an image name]],
        fails('image "x" { from = "Not An Image" }'))
    end)

    it("find an image defined twice", function()
      assert.are.equal(INLINE .. ":3: image 'a' is already defined at line 1",
        fails('image "a" { from = "scratch" }\n\nimage "a" { from = "scratch" }'))
    end)

    it("find a cycle of images built on each other by name", function()
      assert.are.equal(INLINE .. ":2: image 'a': from makes a cycle: a -> b -> a",
        fails('image "a" {\n  from = "b",\n}\nimage "b" {\n  from = "a",\n}'))
      assert.are.equal(INLINE .. ":1: image 'a': from makes a cycle: a -> a",
        fails('image "a" { from = "a" }'))
    end)

    it("find an unknown debian suite name", function()
      assert.are.equal(INLINE .. ":3: debian: 'Bookworm 12' is not a suite name (a codename like 'bookworm', or 'stable')",
        fails(('image "x" {\n  run "true",\n  from = debian "Bookworm 12",\n}')))
      assert.are.equal(INLINE .. ":1: debian.variant: expected one of minbase, buildd, fakechroot, got 'tiny'",
        fails('image "x" { from = debian { suite = "sid", variant = "tiny" } }'))
      assert.are.equal(INLINE .. ":1: debian: unknown field 'suit'",
        fails('image "x" { from = debian { suit = "sid" } }'))
    end)
  end)

  describe("in a step", function()
    it("name a bad argument", function()
      assert.are.equal(INLINE .. ":3: workdir: expected an absolute path, got integer", fails(one_image("  workdir(5),")))
      assert.are.equal(INLINE .. ":3: workdir: expected an absolute path, got 'srv'", fails(one_image('  workdir "srv",')))
      assert.are.equal(INLINE .. ":3: user: expected 'user[:group]' or a uid, got 'a b'", fails(one_image('  user "a b",')))
      assert.are.equal(INLINE .. ":3: run: no command", fails(one_image("  run {},")))
      assert.are.equal(INLINE .. ":3: run[2]: expected string, got integer", fails(one_image('  run { "sleep", 1 },')))
      assert.are.equal(INLINE .. ":3: env.A: expected a string or a number, got boolean", fails(one_image("  env { A = true },")))
      assert.are.equal(INLINE .. ":3: env: '1A' is not a variable name (letters, digits and '_', not first a digit)",
        fails(one_image('  env { ["1A"] = "x" },')))
      assert.are.equal(INLINE .. ":3: label.k: expected string, got integer", fails(one_image("  label { k = 1 },")))
    end)

    it("name an unknown option", function()
      assert.are.equal(INLINE .. ":3: run: unknown option 'netwrk'", fails(one_image('  run { "x", netwrk = "none" },')))
      assert.are.equal(INLINE .. ":3: run: network: expected one of host, none, got 'bridge'",
        fails(one_image('  run { "x", network = "bridge" },')))
      assert.are.equal(INLINE .. ":3: copy: unknown option 'ownr'",
        fails(one_image('  copy { "single.txt", "/x", ownr = "1:1" },')))
      assert.are.equal(INLINE .. ":3: run: give a command array or sh = '...', not both",
        fails(one_image('  run { "x", sh = "y" },')))
    end)

    it("find a copy source that does not exist", function()
      assert.are.equal(INLINE .. ":3: copy: source 'nosuch/' does not exist in " .. FIXABS,
        fails(one_image('  copy { "nosuch/", "/srv/" },')))
      assert.are.equal(INLINE .. ":3: copy: source '/nonexistent/x' does not exist",
        fails(one_image('  copy { host = "/nonexistent/x", to = "/x" },')))
    end)

    it("keep copy sources inside the recipe's folder", function()
      assert.are.equal(INLINE .. ":3: copy: source '../recipes/x' is outside the recipe's folder",
        fails(one_image('  copy { "../recipes/x", "/x" },')))
      assert.are.equal(INLINE .. ":3: copy: source '/etc/passwd' is absolute: use host = '/etc/passwd' to copy from the host",
        fails(one_image('  copy { "/etc/passwd", "/x" },')))
    end)

    it("check a copy's destination, owner and mode", function()
      assert.are.equal(INLINE .. ":3: copy: destination: expected an absolute path, got 'srv'",
        fails(one_image('  copy { "single.txt", "srv" },')))
      assert.are.equal(INLINE .. ":3: copy: the destination of several sources must end with '/', got '/srv'",
        fails(one_image('  copy { "single.txt", "files", "/srv" },')))
      assert.are.equal(INLINE .. ":3: copy: source 'single.txt/' is not a folder",
        fails(one_image('  copy { "single.txt/", "/srv/" },')))
      assert.are.equal(INLINE .. ":3: copy: owner: expected numeric 'uid[:gid]' or a uid, got 'www-data'",
        fails(one_image('  copy { "single.txt", "/x", owner = "www-data" },')))
      assert.are.equal(INLINE .. ":3: copy: mode: expected an octal string ('0644') or an integer, got '0999'",
        fails(one_image('  copy { "single.txt", "/x", mode = "0999" },')))
      assert.are.equal(INLINE .. ":3: copy: expected one or more sources and a destination",
        fails(one_image('  copy { "/x" },')))
    end)
  end)

  describe("in a deploy", function()
    local function deploy(fields)
      return fails('deploy "d" {\n  container "web" {\n    image = "busybox",\n' .. fields .. "\n  },\n}")
    end

    it("name an unknown or mistyped container field at its line", function()
      assert.are.equal(INLINE .. ":4: container 'web': unknown field 'replica'", deploy("    replica = 2,"))
      assert.are.equal(INLINE .. ":4: container 'web': replicas: expected integer, got number", deploy("    replicas = 1.5,"))
      assert.are.equal(INLINE .. ":4: container 'web': memory: expected a size ('64M', '512k', '1g' or bytes), got '64 XB'",
        deploy('    memory = "64 XB",'))
      assert.are.equal(INLINE .. ":4: container 'web': ports[1]: expected 'HOST:CONTAINER[/proto]', got '8080'",
        deploy('    ports = { "8080" },'))
      assert.are.equal(INLINE .. ":4: container 'web': restart: expected 'no', 'on-failure[:N]', 'always' or 'unless-stopped', got 'sometimes'",
        deploy('    restart = "sometimes",'))
      assert.are.equal(INLINE .. ":4: container 'web': cpus: expected a positive number, got integer",
        deploy("    cpus = 0,"))
    end)

    it("find a container without an image, outside a deploy, or twice in one", function()
      assert.are.equal(INLINE .. ":1: container 'web': field 'image' is missing",
        fails('deploy "d" { container "web" { replicas = 1 } }'))
      assert.are.equal(INLINE .. ":1: container 'web' outside of any deploy",
        fails('container "web" { image = "busybox" }\nimage "x" { from = "scratch" }'))
      assert.are.equal(INLINE .. ":3: deploy 'd': container 'web' is already defined at line 2",
        fails('deploy "d" {\n  container "web" { image = "a" },\n  container "web" { image = "b" },\n}'))
      assert.are.equal(INLINE .. ":1: deploy 'd': item 1 is run step, not a container",
        fails('deploy "d" { run "x" }'))
      assert.are.equal(INLINE .. ":1: deploy 'd': no container", fails('deploy "d" {}'))
    end)
  end)
end)
