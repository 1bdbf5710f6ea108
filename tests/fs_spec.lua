-- luactr.core.fs and core.digest: the file primitives of the image store,
-- each tried for real on files the tests make. Whatever changes mounts
-- runs in a Lua subprocess with its own mount namespace.
local support = require "support"
local core = require "luactr.core"

local fs, digest, E = core.fs, core.digest, core.sys.errno
local q = support.q

-- Runs Lua `code` in a fresh lua5.4 that can require luactr; returns
-- status, stdout, stderr.
local function lua(code)
  return support.sh(("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH=%s lua5.4 -e %s"):format(
    q(support.BUILD .. "/?.so;;"), q(code)))
end

-- The output of a shell command, without its last newline.
local function shout(cmd)
  local st, out, err = support.sh(cmd)
  assert(st == 0, ("%s: %s"):format(cmd, err))
  return (out:gsub("\n$", ""))
end

local write = support.write

-- Checks the failure triple: nil, a message starting with `prefix`, errno.
local function fails(errno, prefix, ok, msg, got)
  assert.is_nil(ok)
  assert.are.equal(errno, got, msg)
  if prefix then assert.are.equal(prefix, msg:sub(1, #prefix)) end
end

local function sorted(t)
  table.sort(t)
  return t
end

describe("core.fs", function()
  describe("stat", function()
    it("describes a file as stat(1) does", function()
      local dir = support.tmpdir()
      local p = dir .. "/f"
      write(p, "12345")
      assert(os.execute(("chmod 4751 %s && touch -d '2020-01-02 03:04:05.123456789 UTC' %s"):format(p, p)))
      local st = assert(fs.stat(p))
      assert.are.equal("file", st.type)
      assert.are.equal(tonumber("4751", 8), st.mode)
      assert.are.equal(5, st.size)
      assert.are.equal(1, st.nlink)
      assert.are.equal(1577934245, st.mtime)
      assert.are.equal(123456789, st.mtime_ns)
      assert.are.equal(shout("stat -c '%u %g %i %d' " .. p),
        ("%d %d %d %d"):format(st.uid, st.gid, st.ino, st.dev))
    end)

    it("names every file type and gives rdev of devices", function()
      local dir = support.tmpdir()
      assert(os.execute(("mkfifo %s/p && ln -s p %s/l && mkdir %s/d"):format(dir, dir, dir)))
      assert.are.equal("fifo", fs.stat(dir .. "/p").type)
      assert.are.equal("dir", fs.stat(dir .. "/d").type)
      assert.are.equal("fifo", fs.stat(dir .. "/l").type)   -- followed
      assert.are.equal("link", fs.lstat(dir .. "/l").type)  -- not followed
      local null = fs.stat("/dev/null")
      assert.are.equal("char", null.type)
      assert.are.equal(tonumber(shout("printf '%d' 0x$(stat -c %t /dev/null)")) * 256 + 3, null.rdev)
    end)

    it("fails with nil, message, errno", function()
      fails(E.ENOENT, "stat /nonexistent/x: No such file", fs.stat("/nonexistent/x"))
      fails(E.ENOENT, "lstat /nonexistent/x: ", fs.lstat("/nonexistent/x"))
      fails(E.ENOTDIR, nil, fs.stat("/etc/passwd/x"))
    end)
  end)

  describe("folders", function()
    it("lists a folder without . and ..", function()
      local dir = support.tmpdir()
      assert(os.execute(("touch %s/a %s/.hidden && mkdir %s/sub"):format(dir, dir, dir)))
      assert.are.same({ ".hidden", "a", "sub" }, sorted(assert(fs.readdir(dir))))
      assert.are.same({}, fs.readdir(dir .. "/sub"))
      fails(E.ENOENT, "readdir " .. dir .. "/none: ", fs.readdir(dir .. "/none"))
      fails(E.ENOTDIR, nil, fs.readdir(dir .. "/a"))
    end)

    it("makes a folder with a mode and says EEXIST when it is there", function()
      local dir = support.tmpdir()
      assert.is_true(fs.mkdir(dir .. "/d", tonumber("700", 8)))
      assert.are.equal(tonumber("700", 8), fs.stat(dir .. "/d").mode)
      assert.is_true(fs.mkdir(dir .. "/e"))
      assert.are.equal("dir", fs.stat(dir .. "/e").type)
      fails(E.EEXIST, "mkdir " .. dir .. "/d: File exists", fs.mkdir(dir .. "/d"))
      fails(E.ENOENT, nil, fs.mkdir(dir .. "/x/y"))
    end)

    it("makes missing parents with mkdirs and takes existing ones", function()
      local dir = support.tmpdir()
      assert.is_true(fs.mkdirs(dir .. "/a/b/c/", tonumber("750", 8)))
      assert.are.equal(tonumber("750", 8), fs.stat(dir .. "/a/b").mode)
      assert.are.equal("dir", fs.stat(dir .. "/a/b/c").type)
      assert.is_true(fs.mkdirs(dir .. "/a/b"))
      assert.is_true(fs.mkdirs(dir))
      write(dir .. "/file", "")
      fails(E.ENOTDIR, "mkdirs " .. dir .. "/file/x", fs.mkdirs(dir .. "/file/x"))
      fails(E.ENOTDIR, nil, fs.mkdirs(dir .. "/file"))
    end)

    it("removes an empty folder and refuses a full one", function()
      local dir = support.tmpdir()
      assert(os.execute(("mkdir %s/empty %s/full && touch %s/full/f"):format(dir, dir, dir)))
      assert.is_true(fs.rmdir(dir .. "/empty"))
      assert.is_nil(fs.lstat(dir .. "/empty"))
      fails(E.ENOTEMPTY, "rmdir " .. dir .. "/full: ", fs.rmdir(dir .. "/full"))
    end)
  end)

  describe("rename", function()
    it("replaces the target by default", function()
      local dir = support.tmpdir()
      write(dir .. "/a", "A")
      write(dir .. "/b", "B")
      assert.is_true(fs.rename(dir .. "/a", dir .. "/b"))
      assert.are.equal("A", fs.read(dir .. "/b"))
      assert.is_nil(fs.lstat(dir .. "/a"))
    end)

    it("refuses to replace with noreplace, and swaps with exchange", function()
      local dir = support.tmpdir()
      write(dir .. "/a", "A")
      write(dir .. "/b", "B")
      fails(E.EEXIST, "rename " .. dir .. "/a: ", fs.rename(dir .. "/a", dir .. "/b", { noreplace = true }))
      assert.are.equal("A", fs.read(dir .. "/a"))
      assert.are.equal("B", fs.read(dir .. "/b"))
      assert.is_true(fs.rename(dir .. "/a", dir .. "/c", { noreplace = true }))
      assert.is_true(fs.rename(dir .. "/b", dir .. "/c", { exchange = true }))
      assert.are.equal("A", fs.read(dir .. "/b"))
      assert.are.equal("B", fs.read(dir .. "/c"))
      fails(E.ENOENT, nil, fs.rename(dir .. "/none", dir .. "/c", { exchange = true }))
    end)

    it("raises on unknown or conflicting options", function()
      assert.has_error(function() fs.rename("/a", "/b", { no_replace = true }) end,
        "fs.rename: unknown field 'no_replace'")
      assert.has_error(function() fs.rename("/a", "/b", { noreplace = true, exchange = true }) end)
    end)
  end)

  describe("names", function()
    it("unlinks files and fails on what is missing", function()
      local dir = support.tmpdir()
      write(dir .. "/f", "")
      assert.is_true(fs.unlink(dir .. "/f"))
      assert.is_nil(fs.lstat(dir .. "/f"))
      fails(E.ENOENT, "unlink " .. dir .. "/f: ", fs.unlink(dir .. "/f"))
      assert(fs.mkdir(dir .. "/d"))
      assert.is_nil(fs.unlink(dir .. "/d"))
    end)

    it("makes and reads symlinks", function()
      local dir = support.tmpdir()
      assert.is_true(fs.symlink("../some/where", dir .. "/l"))
      assert.are.equal("../some/where", fs.readlink(dir .. "/l"))
      assert.are.equal("../some/where", shout("readlink " .. dir .. "/l"))
      fails(E.EEXIST, "symlink " .. dir .. "/l: ", fs.symlink("x", dir .. "/l"))
      write(dir .. "/f", "")
      fails(E.EINVAL, "readlink " .. dir .. "/f: ", fs.readlink(dir .. "/f"))
    end)

    it("changes modes, with the setuid, setgid and sticky bits", function()
      local dir = support.tmpdir()
      write(dir .. "/f", "")
      assert.is_true(fs.chmod(dir .. "/f", tonumber("6711", 8)))
      assert.are.equal("6711", shout("stat -c %a " .. dir .. "/f"))
      assert.is_true(fs.chmod(dir, tonumber("1777", 8)))
      assert.are.equal(tonumber("1777", 8), fs.stat(dir).mode)
      fails(E.ENOENT, "chmod ", fs.chmod(dir .. "/none", 0))
    end)

    it("changes the owner of a symlink itself #root", function()
      local dir = support.tmpdir()
      write(dir .. "/f", "")
      assert(fs.symlink("f", dir .. "/l"))
      assert.is_true(fs.lchown(dir .. "/l", 1234, 5678))
      local l, f = fs.lstat(dir .. "/l"), fs.stat(dir .. "/f")
      assert.are.same({ 1234, 5678 }, { l.uid, l.gid })
      assert.are.same({ 0, 0 }, { f.uid, f.gid })
      assert.is_true(fs.lchown(dir .. "/f", -1, 42))
      f = fs.stat(dir .. "/f")
      assert.are.same({ 0, 42 }, { f.uid, f.gid })
      fails(E.ENOENT, "lchown ", fs.lchown(dir .. "/none", 1, 1))
    end)

    it("resolves paths with realpath", function()
      local dir = support.tmpdir()
      assert(os.execute(("mkdir -p %s/a/b && ln -s a/b %s/l"):format(dir, dir)))
      local real = shout("realpath " .. dir)
      assert.are.equal(real .. "/a/b", fs.realpath(dir .. "/l"))
      assert.are.equal(real .. "/a", fs.realpath(dir .. "/l/../../a/./"))
      fails(E.ENOENT, "realpath ", fs.realpath(dir .. "/none"))
    end)
  end)

  describe("contents", function()
    it("reads a whole file, binary or empty", function()
      local dir = support.tmpdir()
      local data = ("\0\1\2binary\255"):rep(10000)
      write(dir .. "/bin", data)
      write(dir .. "/empty", "")
      assert.are.equal(data, fs.read(dir .. "/bin"))
      assert.are.equal("", fs.read(dir .. "/empty"))
      fails(E.ENOENT, "read " .. dir .. "/none: ", fs.read(dir .. "/none"))
      fails(E.EISDIR, nil, fs.read(dir))
    end)

    it("writes atomically: a new inode, the exact mode, no temp file left", function()
      local dir = support.tmpdir()
      local p = dir .. "/state.json"
      write(p, "old")
      assert(os.execute(("ln %s %s/hardlink"):format(p, dir)))
      assert.is_true(fs.write_atomic(p, "new\0data"))
      assert.are.equal("new\0data", fs.read(p))
      -- the old inode was replaced, not rewritten in place
      assert.are.equal("old", fs.read(dir .. "/hardlink"))
      assert.are.equal(tonumber("644", 8), fs.stat(p).mode)
      assert.is_true(fs.write_atomic(p, "x", tonumber("600", 8)))
      assert.are.equal(tonumber("600", 8), fs.stat(p).mode)
      assert.is_true(fs.write_atomic(dir .. "/fresh", ""))
      assert.are.equal("", fs.read(dir .. "/fresh"))
      assert.are.same({ "fresh", "hardlink", "state.json" }, sorted(fs.readdir(dir)))
    end)

    it("fails to write atomically without leaving a temp file", function()
      local dir = support.tmpdir()
      assert(fs.mkdirs(dir .. "/taken/inside"))
      fails(E.EISDIR, "rename " .. dir .. "/taken: ", fs.write_atomic(dir .. "/taken", "data"))
      assert.are.same({ "taken" }, fs.readdir(dir))
      fails(E.ENOENT, nil, fs.write_atomic(dir .. "/none/f", "data"))
      fails(E.EINVAL, nil, fs.write_atomic("/", "data"))
    end)

    it("names the filesystem of a path", function()
      local proc = assert(fs.statfs("/proc"))
      assert.are.equal("proc", proc.type)
      assert.are.equal(0x9fa0, proc.magic)
      assert.are.equal("tmpfs", fs.statfs("/dev/shm").type)
      local root = assert(fs.statfs(support.TOP))
      assert.are.equal(tonumber(shout("stat -f -c %t " .. q(support.TOP)), 16), root.magic)
      assert.is_true(root.bsize > 0 and root.blocks > 0 and root.bfree <= root.blocks)
      assert.is_true(root.bavail <= root.bfree and root.ffree <= root.files)
      fails(E.ENOENT, "statfs /nonexistent: ", fs.statfs("/nonexistent"))
    end)
  end)

  describe("lock", function()
    it("excludes another holder until unlocked, idempotently", function()
      local p = support.tmpdir() .. "/lock"
      local a = assert(fs.lock(p))
      assert.are.equal(tonumber("600", 8), fs.stat(p).mode)
      fails(E.EWOULDBLOCK, "lock " .. p .. ": ", fs.lock(p, { wait = false }))
      fails(E.EWOULDBLOCK, nil, fs.lock(p, { wait = false, shared = true }))
      assert.is_true(a:unlock())
      assert.is_true(a:unlock())
      local b = assert(fs.lock(p, { wait = false }))
      b:unlock()
    end)

    it("shares a shared lock and releases with <close> and __gc", function()
      local p = support.tmpdir() .. "/lock"
      do
        local a <close> = assert(fs.lock(p, { shared = true }))
        local b <close> = assert(fs.lock(p, { shared = true, wait = false }))
        fails(E.EWOULDBLOCK, nil, fs.lock(p, { wait = false }))
      end
      assert(fs.lock(p, { wait = false }))  -- unreferenced: held until collected
      fails(E.EWOULDBLOCK, nil, fs.lock(p, { wait = false }))
      collectgarbage()
      collectgarbage()
      local c = assert(fs.lock(p, { wait = false }))
      c:unlock()
      assert.has_error(function() fs.lock(p, { exclusive = true }) end,
        "fs.lock: unknown field 'exclusive'")
      fails(E.ENOENT, "lock /nonexistent/lock: ", fs.lock("/nonexistent/lock"))
    end)

    it("is held by another process until that process exits", function()
      local dir = support.tmpdir()
      local p, ready = dir .. "/lock", dir .. "/ready"
      -- the child locks, says so, and holds the lock until its stdin closes
      local child = io.popen(("LUA_CPATH=%s lua5.4 -e %s"):format(q(support.BUILD .. "/?.so;;"), q(([[
        local fs = require("luactr.core").fs
        local l = assert(fs.lock(%q))
        io.open(%q, "w"):close()
        io.read("a")]]):format(p, ready))), "w")
      finally(function() if child then child:close() end end)
      local t0 = core.sys.monotonic()
      while not fs.lstat(ready) and core.sys.monotonic() - t0 < 10 do os.execute("sleep 0.02") end
      assert.is_truthy(fs.lstat(ready), "the child did not take the lock")
      fails(E.EWOULDBLOCK, "lock " .. p .. ": ", fs.lock(p, { wait = false }))
      fails(E.EWOULDBLOCK, nil, fs.lock(p, { wait = false, shared = true }))
      assert.is_true((child:close()))  -- the child reads EOF and exits
      child = nil
      local l = assert(fs.lock(p, { wait = false }))
      l:unlock()
    end)
  end)

  describe("remove_tree", function()
    it("removes a tree, never following its symlinks", function()
      local dir = support.tmpdir()
      local outside = support.tmpdir()
      write(outside .. "/precious", "keep")
      assert(os.execute(([[cd %s && mkdir -p t/a/b t/c && touch t/a/b/f t/.h && mkfifo t/c/p &&
        ln -s %s t/link && ln -s %s/precious t/a/flink && chmod 0 t/c && chmod 0555 t/a]]):format(dir, outside, outside)))
      assert.is_true(fs.remove_tree(dir .. "/t"))
      assert.is_nil(fs.lstat(dir .. "/t"))
      assert.are.equal("keep", fs.read(outside .. "/precious"))
      assert.are.same({ "precious" }, fs.readdir(outside))
    end)

    it("removes a single file or symlink, and takes a missing path as done", function()
      local dir = support.tmpdir()
      write(dir .. "/f", "")
      assert(fs.symlink(dir, dir .. "/l"))
      assert.is_true(fs.remove_tree(dir .. "/l"))
      assert.is_true(fs.remove_tree(dir .. "/f"))
      assert.are.same({}, fs.readdir(dir))
      assert.is_true(fs.remove_tree(dir .. "/none"))
      assert.is_true(fs.remove_tree(dir .. "/none/deeper"))
    end)

    it("refuses paths that name no entry", function()
      fails(E.EINVAL, "remove /: ", fs.remove_tree("/"))
      fails(E.EINVAL, nil, fs.remove_tree("."))
      fails(E.EINVAL, nil, fs.remove_tree("/tmp/.."))
    end)

    it("empties read-only folders it owns when not root #root", function()
      local dir = support.tmpdir()
      assert(os.execute(("chown 65534 %s"):format(dir)))
      local st, _, err = support.sh(([[setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '
        cd %s && mkdir -p t/ro/sub t/none && touch t/ro/f t/ro/sub/g && chmod 0555 t/ro t/ro/sub && chmod 0 t/none' &&
        LUA_CPATH=%s setpriv --reuid=65534 --regid=65534 --clear-groups lua5.4 -e '
          assert(require("luactr.core").fs.remove_tree(%q))']]):format(
        dir, q(support.BUILD .. "/?.so;;"), dir .. "/t"))
      assert.are.equal(0, st, err)
      assert.are.same({}, fs.readdir(dir))
    end)

    it("refuses to cross into another mount, naming it #root", function()
      local dir = support.tmpdir()
      local st, out, err = lua(([[
        local core = require "luactr.core"
        local fs, m = core.fs, core.mount
        local d = %q
        assert(core.ns.unshare({ "mount" }))
        assert(m.mount(nil, "/", nil, { "rprivate" }))
        assert(fs.mkdirs(d .. "/t/sub/mnt"))
        assert(m.mount("tmpfs", d .. "/t/sub/mnt", "tmpfs", { "size=1m" }))
        assert(fs.write_atomic(d .. "/t/sub/mnt/other-fs", "x"))
        print(fs.remove_tree(d .. "/t"))
        print(fs.read(d .. "/t/sub/mnt/other-fs"))
        print(fs.remove_tree(d .. "/t/sub/mnt"))
        assert(m.umount(d .. "/t/sub/mnt"))
        assert(fs.write_atomic(d .. "/file", "x"))
        assert(fs.write_atomic(d .. "/t/bound", ""))
        assert(m.bind(d .. "/file", d .. "/t/bound"))
        print(fs.remove_tree(d .. "/t"))
        print(fs.read(d .. "/file"))]]):format(dir))
      assert.are.equal(0, st, err)
      local E_BUSY = ("Device or resource busy\t%d"):format(E.EBUSY)
      assert.are.same({
        ("nil\tremove %s/t/sub/mnt: %s"):format(dir, E_BUSY),
        "x",
        ("nil\tremove %s/t/sub/mnt: %s"):format(dir, E_BUSY),
        ("nil\tremove %s/t/bound: %s"):format(dir, E_BUSY),
        "x",
      }, support.lines(out))
      -- the mount namespace went with the process; what is left is plain
      assert.is_true(fs.remove_tree(dir .. "/t"))
      assert.are.same({ "file" }, fs.readdir(dir))
    end)
  end)

  describe("mkdirs", function()
    it("makes a path beneath a root as in a chroot, through links dangling or not", function()
      local dir = support.tmpdir()
      local root = dir .. "/root"
      assert(os.execute(([[mkdir -p %s/etc %s/bait && cd %s && ln -s /data/srv srv &&
        ln -s ../../../../../bait up && ln -s loop loop2 && ln -s loop2 loop && printf x > file]]):format(
        q(root), q(dir), q(root))))
      assert.is_true(fs.mkdirs("/srv/www", 493, { root = root }))
      assert.are.equal("dir", fs.lstat(root .. "/data/srv/www").type)
      assert.is_true(fs.mkdirs("up/made", 493, { root = root }))
      assert.are.equal("dir", fs.lstat(root .. "/bait/made").type)
      assert.are.same({}, fs.readdir(dir .. "/bait"))
      assert.is_true(fs.mkdirs("/etc", 493, { root = root }))
      fails(E.ENOTDIR, "mkdirs /file/x: ", fs.mkdirs("/file/x", 493, { root = root }))
      fails(E.ELOOP, "mkdirs /loop/x: ", fs.mkdirs("/loop/x", 493, { root = root }))
      assert.has_error(function() fs.mkdirs("/x", 493, { chroot = root }) end,
        "fs.mkdirs: unknown field 'chroot'")
    end)
  end)

  describe("copy", function()
    it("copies a tree with modes, times and symlinks", function()
      local dir = support.tmpdir()
      local big = ("0123456789abcdef"):rep(65536 + 3)
      assert(os.execute(([[cd %s && mkdir -p src/d/e src/ro && printf hello > src/d/f && chmod 4750 src/d/f &&
        ln -s ../nowhere src/d/dangling && ln -s /etc src/abs && mkfifo -m 0640 src/d/pipe &&
        touch src/ro/inside && chmod 0555 src/ro &&
        touch -h -d '2001-02-03 04:05:06.5 UTC' src/d/f src/d/dangling src/d/e src/d]]):format(dir)))
      write(dir .. "/src/big", big)
      assert.is_true(fs.copy(dir .. "/src", dir .. "/dst"))
      assert.are.equal(big, fs.read(dir .. "/dst/big"))
      assert.are.equal("hello", fs.read(dir .. "/dst/d/f"))
      for _, rel in ipairs({ "d", "d/f", "d/e", "d/dangling", "d/pipe", "abs", "ro", "ro/inside", "big" }) do
        local a, b = fs.lstat(dir .. "/src/" .. rel), fs.lstat(dir .. "/dst/" .. rel)
        assert.is_truthy(b, rel)
        for _, k in ipairs({ "type", "mode", "uid", "gid", "size", "mtime", "mtime_ns" }) do
          assert.are.equal(a[k], b[k], rel .. " " .. k)
        end
        assert.are_not.equal(a.ino, b.ino)
      end
      assert.are.equal("../nowhere", fs.readlink(dir .. "/dst/d/dangling"))
      assert.are.equal(tonumber("4750", 8), fs.stat(dir .. "/dst/d/f").mode)
      assert.are.equal(981173106, fs.lstat(dir .. "/dst/d/dangling").mtime)
    end)

    it("merges into a folder, replaces files, and overrides mode and owner #root", function()
      local dir = support.tmpdir()
      assert(os.execute(([[cd %s && mkdir -p src/sub dst/sub && printf new > src/sub/f && printf old > dst/sub/f &&
        printf mine > dst/sub/keep && ln -s f src/sub/l && mknod src/null c 1 3]]):format(dir)))
      assert.is_true(fs.copy(dir .. "/src", dir .. "/dst", { owner = { 1000, 2000 }, mode = tonumber("640", 8) }))
      assert.are.equal("new", fs.read(dir .. "/dst/sub/f"))
      assert.are.equal("mine", fs.read(dir .. "/dst/sub/keep"))
      local f, l, sub, null = fs.stat(dir .. "/dst/sub/f"), fs.lstat(dir .. "/dst/sub/l"),
        fs.stat(dir .. "/dst/sub"), fs.stat(dir .. "/dst/null")
      assert.are.same({ 1000, 2000, tonumber("640", 8) }, { f.uid, f.gid, f.mode })
      assert.are.same({ 1000, 2000, "link" }, { l.uid, l.gid, l.type })
      assert.are.same({ 1000, 2000, tonumber("640", 8) }, { sub.uid, sub.gid, sub.mode })
      assert.are.same({ "char", fs.stat("/dev/null").rdev }, { null.type, null.rdev })
    end)

    it("copies one file or symlink, and fails naming what failed", function()
      local dir = support.tmpdir()
      write(dir .. "/f", "data")
      assert(fs.symlink("f", dir .. "/l"))
      assert.is_true(fs.copy(dir .. "/f", dir .. "/g"))
      assert.is_true(fs.copy(dir .. "/l", dir .. "/m"))
      assert.are.equal("data", fs.read(dir .. "/g"))
      assert.are.equal("f", fs.readlink(dir .. "/m"))
      assert(fs.mkdir(dir .. "/d"))
      fails(E.EISDIR, ("copy %s/f: replace %s/d: "):format(dir, dir), fs.copy(dir .. "/f", dir .. "/d"))
      fails(E.ENOENT, ("copy %s/none: stat %s/none: "):format(dir, dir), fs.copy(dir .. "/none", dir .. "/x"))
      fails(E.ENOTDIR, ("copy %s/d: mkdir %s/g: "):format(dir, dir), fs.copy(dir .. "/d", dir .. "/g"))
      assert.has_error(function() fs.copy(dir .. "/f", dir .. "/x", { owner = 0 }) end)
      fails(E.EINVAL, ("copy %s/d: copy into itself %s/d/inner"):format(dir, dir),
        fs.copy(dir .. "/d", dir .. "/d/inner"))
      assert.has_error(function() fs.copy(dir .. "/f", dir .. "/x", { perms = 1 }) end,
        "fs.copy: unknown field 'perms'")
    end)

    it("keeps hard links within the copy, and extended attributes", function()
      local dir = support.tmpdir()
      assert(os.execute(([[cd %s && mkdir -p src/sub && printf one > src/a && ln src/a src/sub/b &&
        ln src/a src/c && printf out > outside && ln outside src/d &&
        setfattr -n user.note -v hello src/a && setfattr -n user.folder -v yes src/sub]]):format(q(dir))))
      assert.is_true(fs.copy(dir .. "/src", dir .. "/dst"))
      local a, b, c, d = fs.lstat(dir .. "/dst/a"), fs.lstat(dir .. "/dst/sub/b"),
        fs.lstat(dir .. "/dst/c"), fs.lstat(dir .. "/dst/d")
      assert.are.same({ a.ino, a.ino, 3 }, { b.ino, c.ino, a.nlink })
      assert.are_not.equal(fs.lstat(dir .. "/src/a").ino, a.ino)
      -- a link to a file outside the copy: a file of its own
      assert.are.same({ 1, "out" }, { d.nlink, fs.read(dir .. "/dst/d") })
      assert.are.equal("hello", shout("getfattr --only-values -n user.note " .. q(dir .. "/dst/sub/b")))
      assert.are.equal("yes", shout("getfattr --only-values -n user.folder " .. q(dir .. "/dst/sub")))
    end)

    it("resolves src beneath `from` and dst beneath `to`: no link leads out of them", function()
      local dir = support.tmpdir()
      assert(os.execute(([[cd %s && mkdir -p from/real to/inside bait && printf mine > from/real/f &&
        ln -s / from/up && ln -s ../../../../.. to/climb && ln -s /inside to/abs &&
        printf host > bait/f]]):format(q(dir))))
      -- from/up/real/f is from/real/f: "/" is `from` itself
      assert.is_true(fs.copy("up/real/f", "climb/f", { from = dir .. "/from", to = dir .. "/to" }))
      assert.are.equal("mine", fs.read(dir .. "/to/f"))
      assert.is_true(fs.copy("/real", "/abs/real", { from = dir .. "/from", to = dir .. "/to" }))
      assert.are.equal("mine", fs.read(dir .. "/to/inside/real/f"))
      assert.are.equal("host", fs.read(dir .. "/bait/f"))
      fails(E.ENOENT, "copy ../bait/f: open ../bait/f: ",
        fs.copy("../bait/f", "g", { from = dir .. "/from", to = dir .. "/to" }))
      -- the last name is not followed: the link itself is replaced
      assert.is_true(fs.copy("real/f", "abs", { from = dir .. "/from", to = dir .. "/to" }))
      assert.are.equal("file", fs.lstat(dir .. "/to/abs").type)
    end)

    it("copies a folder's contents into a folder with contents, leaving that folder as it is", function()
      local dir = support.tmpdir()
      assert(os.execute(([[cd %s && mkdir -p src/sub dst && printf x > src/sub/x && printf y > src/y &&
        chmod 700 src && chmod 711 dst]]):format(q(dir))))
      assert.is_true(fs.copy(dir .. "/src", dir .. "/dst", { contents = true }))
      assert.are.same({ "sub", "y" }, sorted(fs.readdir(dir .. "/dst")))
      assert.are.equal("x", fs.read(dir .. "/dst/sub/x"))
      assert.are.equal(tonumber("711", 8), fs.stat(dir .. "/dst").mode)
      fails(E.EINVAL, ("copy %s/src: copy into itself "):format(dir),
        fs.copy(dir .. "/src", dir .. "/src", { contents = true }))
    end)

    it("replaces a non-folder by a folder with replace, gives folders dir_mode, refuses special files without special", function()
      local dir = support.tmpdir()
      assert(os.execute(([[cd %s && mkdir -p src/d dst && printf f > src/d/f && printf old > dst/d &&
        mkfifo src2]]):format(q(dir))))
      fails(E.ENOTDIR, ("copy %s/src: mkdir %s/dst/d: "):format(dir, dir), fs.copy(dir .. "/src", dir .. "/dst"))
      assert.is_true(fs.copy(dir .. "/src", dir .. "/dst", { replace = true, mode = tonumber("600", 8),
        dir_mode = tonumber("750", 8) }))
      assert.are.equal("f", fs.read(dir .. "/dst/d/f"))
      assert.are.same({ tonumber("750", 8), tonumber("600", 8) },
        { fs.stat(dir .. "/dst/d").mode, fs.stat(dir .. "/dst/d/f").mode })
      fails(E.EPERM, ("copy %s/src2: copy special file %s/src2: "):format(dir, dir),
        fs.copy(dir .. "/src2", dir .. "/fifo", { special = false }))
      assert.is_nil(fs.lstat(dir .. "/fifo"))
    end)
  end)
end)

describe("core.digest", function()
  it("gives the known sha256 vectors", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", digest.sha256(""))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", digest.sha256("abc"))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      digest.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
  end)

  it("hashes incrementally to the same digest, and finalises once", function()
    local data = ("luactr\0"):rep(12345)
    local h = digest.new()
    for i = 1, #data, 1000 do assert.are.equal(h, h:update(data:sub(i, i + 999))) end
    local hex = h:hex()
    assert.are.equal(digest.sha256(data), hex)
    assert.are.equal(hex, h:hex())
    assert.has_error(function() h:update("more") end, "digest: update after hex() or close")
    assert.are.equal(digest.sha256(""), digest.new():hex())
    local c
    do
      local closed <close> = digest.new()
      c = closed
    end
    assert.has_error(function() c:hex() end, "digest: hex() of a closed hasher")
  end)

  it("digests a file as sha256sum does", function()
    local dir = support.tmpdir()
    local data = {}
    for i = 1, 50000 do data[i] = tostring(i * 7919) end
    write(dir .. "/f", table.concat(data, "\n"))
    local want = shout("sha256sum " .. dir .. "/f"):match("^(%x+)")
    assert.are.equal(64, #want)
    assert.are.equal(want, digest.file(dir .. "/f"))
    write(dir .. "/empty", "")
    assert.are.equal(digest.sha256(""), digest.file(dir .. "/empty"))
    fails(E.ENOENT, "digest " .. dir .. "/none: ", digest.file(dir .. "/none"))
    fails(E.EISDIR, nil, digest.file(dir))
  end)
end)

describe("core.loop", function()
  it("raises on what is not a loop device name", function()
    assert.has_error(function() core.loop.backing_file("/dev/sda") end)
    assert.has_error(function() core.loop.detach("loop") end)
    assert.has_error(function() core.loop.attach("/x", { ro = true }) end,
      "loop.attach: unknown field 'ro'")
  end)

  it("fails to attach a missing file", function()
    fails(E.ENOENT, "loop attach /nonexistent/img: ", core.loop.attach("/nonexistent/img"))
  end)
end)
