/*
** fs.c -- files, for the image store: stat, directories, renames, atomic
** writes, locks, and trees removed or copied natively on fds.
**
** Failures come back as `nil, "<op> <path>: strerror", errno`, so the Lua
** layer can tell EEXIST or EWOULDBLOCK apart from the rest. Nothing here
** follows a symlink it did not have to: trees are walked with openat on
** directory fds and O_NOFOLLOW, never by re-resolving strings.
*/
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "luactr.h"

#define LX_LOCK "luactr.lock"

/* {====== helpers ====== */

static int ok(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

/* The failure triple with the message "<op> <path>: strerror(err)". */
static int fail(lua_State *L, const char *op, const char *path, int err) {
  return lx_fail(L, lua_pushfstring(L, "%s %s", op, path), err);
}

static const char *type_name(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "link";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "unknown";
  }
}

/* Splits `path` into its folder (in `dir`, size PATH_MAX) and last name
** (pointing into `path`), ignoring trailing slashes. Returns NULL with
** errno set when there is no last name ("/", "", ".", "..") or the path
** is too long. */
static const char *split_path(const char *path, char *dir) {
  size_t n = strlen(path);
  if (n >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return NULL;
  }
  memcpy(dir, path, n + 1);
  while (n > 1 && dir[n - 1] == '/')
    dir[--n] = '\0';
  char *slash = strrchr(dir, '/');
  const char *name;
  if (!slash) {
    name = path;
    strcpy(dir, ".");
    dir[1] = '\0';
  } else {
    name = path + (slash - dir) + 1;
    if (slash == dir)
      slash[1] = '\0';  /* "/name": the folder is "/" */
    else
      slash[0] = '\0';
  }
  size_t len = strcspn(name, "/");
  if (len == 0 || (len == 1 && name[0] == '.') ||
      (len == 2 && name[0] == '.' && name[1] == '.')) {
    errno = EINVAL;
    return NULL;
  }
  return name;
}

/* Copies the last name of `path` (trailing slashes dropped) into `out`. */
static void last_name(const char *name, char *out) {
  size_t len = strcspn(name, "/");
  memcpy(out, name, len);
  out[len] = '\0';
}

/* Writes all of `n` bytes, retrying on EINTR and short writes. */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* }====== */

/* {====== beneath a root ====== */

/*
** A path that comes from an image (or from a recipe's folder) is never
** trusted as a string: a symlink in it could name anything on the host.
** It is resolved with openat2(RESOLVE_IN_ROOT), as if the process were
** chrooted into `root`: "..", absolute links and links that climb all
** stay inside it.
*/

#define MAX_HOPS 40  /* symlinks followed by mkdirs_in, as the kernel's */

/* Opens folder `path` beneath `rootfd`, making what is missing of it as
** mkdir -p run chrooted into the root would: each prefix is resolved
** beneath the root, so a link on the way leads only inside it, and a
** dangling one gets the folders its target names (an image's /srv ->
** /data/srv without /data: /data and /data/srv are made). `*hops`
** counts the links followed. Returns an O_RDONLY|O_DIRECTORY fd, or -1
** with errno: ENOTDIR for a non-folder on the way, ELOOP past MAX_HOPS
** links. */
static int mkdirs_in(int rootfd, const char *path, mode_t mode, int *hops) {
  int fd = lx_openat_in_root(rootfd, path, O_RDONLY | O_DIRECTORY);
  if (fd >= 0 || errno != ENOENT)
    return fd;
  size_t len = strlen(path);
  char *buf = malloc(len + 1), *link = NULL;
  if (!buf)
    return -1;
  memcpy(buf, path, len + 1);
  int parent = -1, err = 0;
  for (size_t i = 0;;) {
    while (buf[i] == '/')
      i++;
    if (!buf[i])
      break;
    size_t start = i;
    while (buf[i] && buf[i] != '/')
      i++;
    char saved = buf[i];
    buf[i] = '\0';
    int at = parent >= 0 ? parent : rootfd;
    int next = lx_openat_in_root(rootfd, buf, O_RDONLY | O_DIRECTORY);
    if (next < 0 && errno == ENOENT &&
        (mkdirat(at, buf + start, mode) == 0 || errno == EEXIST))
      next = lx_openat_in_root(rootfd, buf, O_RDONLY | O_DIRECTORY);
    if (next < 0 && errno == ENOENT) {
      /* there, yet not found: a dangling link, made through */
      free(link);
      link = malloc(PATH_MAX + start + 1);
      ssize_t n = -1;
      if (!link)
        errno = ENOMEM;
      else if (++*hops > MAX_HOPS)
        errno = ELOOP;
      else if ((n = readlinkat(at, buf + start, link + start, PATH_MAX)) >= 0 &&
               n == PATH_MAX)
        errno = ENAMETOOLONG, n = -1;
      if (n >= 0) {
        /* a relative target goes on from the link's folder */
        link[start + (size_t)n] = '\0';
        const char *target = link + start;
        if (*target != '/') {
          memcpy(link, buf, start);
          target = link;
        }
        next = mkdirs_in(rootfd, target, mode, hops);
        if (next >= 0) {
          close(next);
          next = lx_openat_in_root(rootfd, buf, O_RDONLY | O_DIRECTORY);
        }
      }
    }
    buf[i] = saved;
    if (next < 0) {
      err = errno;
      break;
    }
    if (parent >= 0)
      close(parent);
    parent = next;
  }
  free(buf);
  free(link);
  if (err) {
    if (parent >= 0)
      close(parent);
    errno = err;
    return -1;
  }
  return parent >= 0 ? parent : lx_openat_in_root(rootfd, "/", O_RDONLY | O_DIRECTORY);
}

/* }====== */

/* {====== stat and directories ====== */

static void push_stat(lua_State *L, const struct stat *st) {
  lua_createtable(L, 0, 11);
  lua_pushstring(L, type_name(st->st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, st->st_mode & 07777);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, st->st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, st->st_gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, st->st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st->st_nlink);
  lua_setfield(L, -2, "nlink");
  lua_pushinteger(L, (lua_Integer)st->st_ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)st->st_dev);
  lua_setfield(L, -2, "dev");
  lua_pushinteger(L, (lua_Integer)st->st_rdev);
  lua_setfield(L, -2, "rdev");
  lua_pushinteger(L, st->st_mtim.tv_sec);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, st->st_mtim.tv_nsec);
  lua_setfield(L, -2, "mtime_ns");
}

/* fs.stat(path) -> {type, mode, uid, gid, size, nlink, ino, dev, rdev,
** mtime, mtime_ns} | nil, err, errno. Follows symlinks. `mode` holds the
** permission bits only (with setuid, setgid, sticky); `type` says the rest. */
static int l_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) < 0)
    return fail(L, "stat", path, errno);
  push_stat(L, &st);
  return 1;
}

/* fs.lstat(path) -> as fs.stat, of a symlink itself. */
static int l_lstat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) < 0)
    return fail(L, "lstat", path, errno);
  push_stat(L, &st);
  return 1;
}

/* fs.readdir(path) -> {names...} without "." and "..", in the order the
** filesystem gives | nil, err, errno. */
static int l_readdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d)
    return fail(L, "readdir", path, errno);
  lua_newtable(L);
  lua_Integer i = 0;
  struct dirent *e;
  for (;;) {
    errno = 0;
    if (!(e = readdir(d)))
      break;
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' ||
        (e->d_name[1] == '.' && e->d_name[2] == '\0')))
      continue;
    lua_pushstring(L, e->d_name);  /* cannot raise but on memory: d leaks */
    lua_rawseti(L, -2, ++i);
  }
  int err = errno;
  closedir(d);
  if (err)
    return fail(L, "readdir", path, err);
  return 1;
}

/* fs.mkdir(path, [mode=0755]) -> true | nil, err, errno (EEXIST when it
** is there already). The umask applies, as for mkdir(2). */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mode_t mode = (mode_t)luaL_optinteger(L, 2, 0755);
  if (mkdir(path, mode) < 0)
    return fail(L, "mkdir", path, errno);
  return ok(L);
}

/* Makes `path` (length < PATH_MAX, writable) and its missing parents. */
static int mkdirs(char *path, mode_t mode) {
  if (mkdir(path, mode) == 0)
    return 0;
  if (errno == EEXIST) {
    struct stat st;
    if (stat(path, &st) < 0)
      return -1;
    if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      return -1;
    }
    return 0;
  }
  if (errno != ENOENT)
    return -1;
  char *slash = strrchr(path, '/');
  while (slash && slash > path && slash[-1] == '/')
    slash--;
  if (!slash || slash == path) {
    errno = ENOENT;
    return -1;
  }
  *slash = '\0';
  int r = mkdirs(path, mode);
  *slash = '/';
  if (r < 0)
    return -1;
  if (mkdir(path, mode) == 0 || errno == EEXIST)
    return 0;  /* EEXIST: another process made it meanwhile */
  return -1;
}

/* fs.mkdirs(path, [mode=0755], [{root = dir}]) -> true | nil, err, errno:
** mkdir -p. Folders that exist are fine; a non-folder in the way is
** ENOTDIR. With `root`, `path` is a path in that root filesystem, made
** as if chrooted into it (see mkdirs_in): no link leads out of it. */
static int l_mkdirs(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  mode_t mode = (mode_t)luaL_optinteger(L, 2, 0755);
  const char *root = NULL;
  if (!lua_isnoneornil(L, 3)) {
    static const char *const known[] = {"root", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    lx_checkkeys(L, 3, "fs.mkdirs", known);
    lua_getfield(L, 3, "root");
    root = luaL_optstring(L, -1, NULL);
  }
  if (root) {
    int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
      return fail(L, "mkdirs", root, errno);
    int hops = 0;
    int fd = mkdirs_in(rootfd, path, mode, &hops);
    int err = errno;
    close(rootfd);
    if (fd < 0)
      return fail(L, "mkdirs", path, err);
    close(fd);
    return ok(L);
  }
  char buf[PATH_MAX];
  if (n >= sizeof buf)
    return fail(L, "mkdirs", path, ENAMETOOLONG);
  memcpy(buf, path, n + 1);
  while (n > 1 && buf[n - 1] == '/')
    buf[--n] = '\0';
  if (mkdirs(buf, mode) < 0)
    return fail(L, "mkdirs", path, errno);
  return ok(L);
}

/* }====== */

/* {====== names ====== */

/* fs.rename(old, new, [{noreplace=, exchange=}]) -> true | nil, err, errno
** renameat2(2): `noreplace` fails with EEXIST instead of replacing new,
** `exchange` swaps the two atomically. */
static int l_rename(lua_State *L) {
  const char *from = luaL_checkstring(L, 1);
  const char *to = luaL_checkstring(L, 2);
  unsigned flags = 0;
  if (!lua_isnoneornil(L, 3)) {
    static const char *const known[] = {"noreplace", "exchange", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    lx_checkkeys(L, 3, "fs.rename", known);
    if (lua_getfield(L, 3, "noreplace") != LUA_TNIL && lua_toboolean(L, -1))
      flags |= RENAME_NOREPLACE;
    if (lua_getfield(L, 3, "exchange") != LUA_TNIL && lua_toboolean(L, -1))
      flags |= RENAME_EXCHANGE;
    lua_pop(L, 2);
    if (flags == (RENAME_NOREPLACE | RENAME_EXCHANGE))
      return luaL_argerror(L, 3, "noreplace and exchange exclude each other");
  }
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) < 0)
    return fail(L, "rename", from, errno);
  return ok(L);
}

/* fs.unlink(path) -> true | nil, err, errno */
static int l_unlink(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (unlink(path) < 0)
    return fail(L, "unlink", path, errno);
  return ok(L);
}

/* fs.rmdir(path) -> true | nil, err, errno (ENOTEMPTY when not empty) */
static int l_rmdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (rmdir(path) < 0)
    return fail(L, "rmdir", path, errno);
  return ok(L);
}

/* fs.symlink(target, path) -> true | nil, err, errno */
static int l_symlink(lua_State *L) {
  const char *target = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (symlink(target, path) < 0)
    return fail(L, "symlink", path, errno);
  return ok(L);
}

/* fs.readlink(path) -> target | nil, err, errno */
static int l_readlink(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  ssize_t n = readlink(path, buf, sizeof buf);
  if (n < 0)
    return fail(L, "readlink", path, errno);
  if ((size_t)n == sizeof buf)
    return fail(L, "readlink", path, ENAMETOOLONG);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* fs.chmod(path, mode) -> true | nil, err, errno (follows symlinks) */
static int l_chmod(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mode_t mode = (mode_t)luaL_checkinteger(L, 2);
  if (chmod(path, mode) < 0)
    return fail(L, "chmod", path, errno);
  return ok(L);
}

/* fs.lchown(path, uid, gid) -> true | nil, err, errno; -1 leaves one as
** it is. A symlink itself is changed, not what it names. */
static int l_lchown(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uid_t uid = (uid_t)luaL_checkinteger(L, 2);
  gid_t gid = (gid_t)luaL_checkinteger(L, 3);
  if (lchown(path, uid, gid) < 0)
    return fail(L, "lchown", path, errno);
  return ok(L);
}

/* fs.realpath(path) -> absolute path without symlinks | nil, err, errno */
static int l_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  if (!realpath(path, buf))
    return fail(L, "realpath", path, errno);
  lua_pushstring(L, buf);
  return 1;
}

/* }====== */

/* {====== contents ====== */

/* fs.write_atomic(path, data, [mode=0644]) -> true | nil, err, errno
** Writes `data` to ".<name>.tmp-<pid>-<n>" in the same folder, with
** exactly `mode` (no umask), fsyncs it, renames it over `path` and
** fsyncs the folder: after a crash `path` is the old file or the new one,
** never half of either. The temp file is removed when a step fails.
** With opts {sync = false} both fsyncs are skipped: still atomic against
** a killed process (the rename is), no longer durable against a power
** cut -- for state that a restart recomputes anyway. Every write, the
** fsync and the close are checked (a full disk fails here, never leaves
** a short file); only a failed fsync of the folder comes after the
** rename: `path` is then the new file, said to be failed as it may not
** survive a power cut. */
static int l_write_atomic(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  mode_t mode = (mode_t)luaL_optinteger(L, 3, 0644);
  bool sync = true;
  if (!lua_isnoneornil(L, 4)) {
    static const char *const known[] = {"sync", NULL};
    luaL_checktype(L, 4, LUA_TTABLE);
    lx_checkkeys(L, 4, "fs.write_atomic", known);
    lua_getfield(L, 4, "sync");
    sync = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  static unsigned counter;
  char dir[PATH_MAX], name[NAME_MAX + 1], tmp[PATH_MAX];
  const char *base = split_path(path, dir);
  if (!base || strcspn(base, "/") > NAME_MAX)
    return fail(L, "write", path, base ? ENAMETOOLONG : errno);
  last_name(base, name);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return fail(L, "write", path, errno);
  int fd = -1, err = 0;
  for (int tries = 0; fd < 0 && tries < 100; tries++) {
    int n = snprintf(tmp, sizeof tmp, ".%.200s.tmp-%ld-%u", name,
                     (long)getpid(), counter++);
    if (n < 0 || (size_t)n >= sizeof tmp) {
      err = ENAMETOOLONG;
      break;
    }
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                0600);
    err = fd < 0 ? errno : 0;
    if (fd < 0 && err != EEXIST)
      break;
  }
  if (fd < 0) {
    close(dfd);
    return fail(L, "write", path, err);
  }
  const char *step = "write";
  if (fchmod(fd, mode) < 0)
    step = "chmod";
  else if (write_all(fd, data, len) < 0)
    step = "write";
  else if (sync && fsync(fd) < 0)
    step = "fsync";
  else
    step = NULL;
  err = errno;
  if (close(fd) < 0 && !step) {
    step = "write";
    err = errno;
  }
  if (!step && renameat(dfd, tmp, dfd, name) < 0) {
    step = "rename";
    err = errno;
  }
  if (step) {
    unlinkat(dfd, tmp, 0);
    close(dfd);
    return fail(L, step, path, err);
  }
  /* the rename itself must reach the disk too */
  if (sync && fsync(dfd) < 0 && errno != EINVAL) {
    err = errno;
    close(dfd);
    return fail(L, "fsync", dir, err);
  }
  close(dfd);
  return ok(L);
}

/* fs.read(path) -> contents | nil, err, errno */
static int l_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return fail(L, "read", path, errno);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = read(fd, p, LUAL_BUFFERSIZE);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return fail(L, "read", path, err);
    }
    if (n == 0)
      break;
    luaL_addsize(&b, (size_t)n);
  }
  close(fd);
  luaL_pushresult(&b);
  return 1;
}

#ifndef OVERLAYFS_SUPER_MAGIC
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#endif

static const struct { unsigned long magic; const char *name; } fs_types[] = {
  {BTRFS_SUPER_MAGIC, "btrfs"},   {OVERLAYFS_SUPER_MAGIC, "overlay"},
  {TMPFS_MAGIC, "tmpfs"},         {EXT4_SUPER_MAGIC, "ext4"},  /* ext2/3 too */
  {XFS_SUPER_MAGIC, "xfs"},       {PROC_SUPER_MAGIC, "proc"},
  {SYSFS_MAGIC, "sysfs"},         {CGROUP2_SUPER_MAGIC, "cgroup2"},
  {CGROUP_SUPER_MAGIC, "cgroup"}, {RAMFS_MAGIC, "ramfs"},
  {DEVPTS_SUPER_MAGIC, "devpts"}, {NFS_SUPER_MAGIC, "nfs"},
  {SQUASHFS_MAGIC, "squashfs"},   {F2FS_SUPER_MAGIC, "f2fs"},
  {0x65735546, "fuse"},           {0x2fc12fc1, "zfs"},
  {MSDOS_SUPER_MAGIC, "vfat"},    {0x01021997, "9p"},
  {0, NULL},
};

/* fs.statfs(path) -> {type, magic, bsize, blocks, bfree, bavail, files,
** ffree} | nil, err, errno. `type` is the filesystem's name when known,
** else its magic number in hex ("0x1234abcd"). */
static int l_statfs(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct statfs sf;
  if (statfs(path, &sf) < 0)
    return fail(L, "statfs", path, errno);
  unsigned long magic = (unsigned long)sf.f_type & 0xffffffffUL;
  lua_createtable(L, 0, 8);
  int i = 0;
  while (fs_types[i].name && fs_types[i].magic != magic)
    i++;
  if (fs_types[i].name) {
    lua_pushstring(L, fs_types[i].name);
  } else {
    char hex[16];
    snprintf(hex, sizeof hex, "0x%lx", magic);
    lua_pushstring(L, hex);
  }
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)magic);
  lua_setfield(L, -2, "magic");
  lua_pushinteger(L, (lua_Integer)sf.f_bsize);
  lua_setfield(L, -2, "bsize");
  lua_pushinteger(L, (lua_Integer)sf.f_blocks);
  lua_setfield(L, -2, "blocks");
  lua_pushinteger(L, (lua_Integer)sf.f_bfree);
  lua_setfield(L, -2, "bfree");
  lua_pushinteger(L, (lua_Integer)sf.f_bavail);
  lua_setfield(L, -2, "bavail");
  lua_pushinteger(L, (lua_Integer)sf.f_files);
  lua_setfield(L, -2, "files");
  lua_pushinteger(L, (lua_Integer)sf.f_ffree);
  lua_setfield(L, -2, "ffree");
  return 1;
}

/* }====== */

/* {====== locks ====== */

typedef struct lock {
  int fd;  /* -1 once unlocked */
} lock;

/* fs.lock(path, [{shared=false, wait=true}]) -> lock | nil, err, errno
** Opens (creating, 0600) `path` and flock()s it, exclusive unless
** `shared`. Without `wait`, a lock held elsewhere fails at once with
** EWOULDBLOCK. The lock goes with the handle: `:unlock()`, `__close`
** and `__gc` all release it, any number of times. */
static int l_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int op = LOCK_EX;
  bool wait = true;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const known[] = {"shared", "wait", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "fs.lock", known);
    if (lua_getfield(L, 2, "shared") != LUA_TNIL && lua_toboolean(L, -1))
      op = LOCK_SH;
    if (lua_getfield(L, 2, "wait") != LUA_TNIL)
      wait = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  /* the handle first, so that no Lua error can leak the fd afterwards */
  lock *lk = lua_newuserdatauv(L, sizeof *lk, 0);
  lk->fd = -1;
  luaL_setmetatable(L, LX_LOCK);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0)
    return fail(L, "lock", path, errno);
  int r;
  do
    r = flock(fd, op | (wait ? 0 : LOCK_NB));
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int err = errno;
    close(fd);
    return fail(L, "lock", path, err);
  }
  lk->fd = fd;
  return 1;
}

/* lock:unlock() -> true; unlocking twice is fine. */
static int l_unlock(lua_State *L) {
  lock *lk = luaL_checkudata(L, 1, LX_LOCK);
  if (lk->fd >= 0) {
    close(lk->fd);  /* closing the only fd releases the flock */
    lk->fd = -1;
  }
  return ok(L);
}

static int l_lock_tostring(lua_State *L) {
  lock *lk = luaL_checkudata(L, 1, LX_LOCK);
  lua_pushstring(L, lk->fd >= 0 ? "luactr.lock (held)" : "luactr.lock (released)");
  return 1;
}

static const luaL_Reg lock_meta[] = {
  {"__gc", l_unlock},
  {"__close", l_unlock},
  {"__tostring", l_lock_tostring},
  {"__index", NULL},
  {NULL, NULL},
};

static const luaL_Reg lock_methods[] = {
  {"unlock", l_unlock},
  {NULL, NULL},
};

/* }====== */

/* {====== remove_tree ====== */

/*
** The walk holds one directory fd per level and a path string only for
** messages. Each entry is statx'ed without following symlinks; its mount
** id says whether it is a mount point (another filesystem, or a bind
** mount of this one), which is refused with EBUSY: remove_tree deletes
** files of the filesystem it starts on, never of one mounted inside.
** A folder on another device of the same mount is refused with EXDEV,
** except a btrfs subvolume (a folder with inode 256 on btrfs), which is
** deleted whole with libbtrfsutil, nested subvolumes and all: it is O(1)
** where unlinking a layer's files one by one is O(files), and a read-only
** layer could not be emptied anyway. The kernel would detach mounts
** beneath a deleted subvolume without a word, so /proc/self/mountinfo is
** checked first (this mount namespace only: a container's namespace
** cannot be seen from here; stop the container first). One fd is held
** per level of depth.
*/

typedef struct walk {
  char *path;   /* for messages: where the walk is */
  size_t len, cap;
  const char *op;  /* the failed step */
  int err;
} walk;

static bool walk_push(walk *w, const char *name) {
  size_t n = strlen(name);
  if (w->len + n + 2 > w->cap) {
    size_t cap = (w->len + n + 2) * 2;
    char *p = realloc(w->path, cap);
    if (!p)
      return false;
    w->path = p;
    w->cap = cap;
  }
  if (w->len > 0 && w->path[w->len - 1] != '/')
    w->path[w->len++] = '/';
  memcpy(w->path + w->len, name, n + 1);
  w->len += n;
  return true;
}

static int walk_fail(walk *w, const char *op, int err) {
  w->op = op;
  w->err = err;
  return -1;
}

/* What a statx of `name` beneath `dfd` says (AT_EMPTY_PATH when name
** is ""): 0 or -1/errno. */
static int xstat(int dfd, const char *name, struct statx *sx) {
  int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT;
  if (!*name)
    flags |= AT_EMPTY_PATH;
  return statx(dfd, name, flags,
               STATX_TYPE | STATX_MODE | STATX_INO | STATX_MNT_ID, sx);
}

/* True when `sx` (beneath a parent on mount `pmnt`) is a mount point. */
static bool is_mountpoint(const struct statx *sx, unsigned long long pmnt) {
  if ((sx->stx_mask & STATX_MNT_ID) && sx->stx_mnt_id != pmnt)
    return true;
  return (sx->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
         (sx->stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static dev_t sx_dev(const struct statx *sx) {
  return makedev(sx->stx_dev_major, sx->stx_dev_minor);
}

/* Reads an octal-escaped mountinfo field ("\040" for a space) in place. */
static void unescape(char *s) {
  char *o = s;
  while (*s) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' &&
        s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
      *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 4;
    } else {
      *o++ = *s++;
    }
  }
  *o = '\0';
}

/* Fails with EBUSY (naming the mount point in w->path) when anything is
** mounted at or beneath the folder open at `fd`, in this mount namespace. */
static int check_no_mounts(int fd, walk *w) {
  char link[64], dir[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, dir, sizeof dir - 1);
  if (n < 0)
    return walk_fail(w, "readlink", errno);
  dir[n] = '\0';
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f)
    return walk_fail(w, "mountinfo", errno);
  char *line = NULL;
  size_t cap = 0;
  int r = 0;
  while (getline(&line, &cap, f) > 0) {
    /* id parent major:minor root MOUNTPOINT ... */
    char *save = NULL, *tok = strtok_r(line, " ", &save);
    for (int i = 0; tok && i < 4; i++)
      tok = strtok_r(NULL, " ", &save);
    if (!tok)
      continue;
    unescape(tok);
    size_t len = (size_t)n;
    if (strncmp(tok, dir, len) == 0 &&
        (tok[len] == '\0' || tok[len] == '/' || len == 1)) {
      w->len = 0;
      walk_push(w, tok);
      r = walk_fail(w, "remove", EBUSY);
      break;
    }
  }
  free(line);
  fclose(f);
  return r;
}

static int rm_entry(int pfd, const char *name, unsigned long long pmnt,
                    dev_t pdev, walk *w);

/* Empties the folder open at `fd` (which the walk owns and closes). */
static int rm_contents(int fd, unsigned long long mnt, dev_t dev, walk *w) {
  DIR *d = fdopendir(fd);
  if (!d) {
    int err = errno;
    close(fd);
    return walk_fail(w, "opendir", err);
  }
  size_t len = w->len;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e) {
      if (errno) {
        int err = errno;
        closedir(d);
        return walk_fail(w, "readdir", err);
      }
      break;
    }
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' ||
        (e->d_name[1] == '.' && e->d_name[2] == '\0')))
      continue;
    if (!walk_push(w, e->d_name)) {
      closedir(d);
      return walk_fail(w, "remove", ENOMEM);
    }
    if (rm_entry(dirfd(d), e->d_name, mnt, dev, w) < 0) {
      closedir(d);
      return -1;
    }
    w->len = len;
    w->path[len] = '\0';
  }
  closedir(d);
  return 0;
}

/* unlinkat that, when refused for want of write permission on the
** folder (a read-only folder of an image, when not root), makes the
** folder writable for its owner and tries once more. */
static int unlink_in(int pfd, const char *name, int flags) {
  if (unlinkat(pfd, name, flags) == 0)
    return 0;
  struct stat st;
  if (errno != EACCES || fstat(pfd, &st) < 0 || fchmod(pfd, st.st_mode | 0700) < 0) {
    errno = EACCES;
    return -1;
  }
  return unlinkat(pfd, name, flags);
}

/* Removes `name` beneath `pfd` (a folder on mount `pmnt`, device `pdev`),
** whatever it is. A missing entry is success: someone else removed it. */
static int rm_entry(int pfd, const char *name, unsigned long long pmnt,
                    dev_t pdev, walk *w) {
  struct statx sx;
  if (xstat(pfd, name, &sx) < 0)
    return errno == ENOENT ? 0 : walk_fail(w, "stat", errno);
  if (is_mountpoint(&sx, pmnt))
    return walk_fail(w, "remove", EBUSY);
  if (!S_ISDIR(sx.stx_mode)) {
    if (unlink_in(pfd, name, 0) < 0 && errno != ENOENT)
      return walk_fail(w, "unlink", errno);
    return 0;
  }
  int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EACCES &&
      fchmodat(pfd, name, (sx.stx_mode & 07777) | 0700, 0) == 0)
    fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? 0 : walk_fail(w, "open", errno);
  /* look again through the fd: the name may have changed meanwhile */
  if (xstat(fd, "", &sx) < 0) {
    int err = errno;
    close(fd);
    return walk_fail(w, "stat", err);
  }
  if (is_mountpoint(&sx, pmnt)) {
    close(fd);
    return walk_fail(w, "remove", EBUSY);
  }
  dev_t dev = sx_dev(&sx);
  if (dev != pdev) {
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0) {
      int err = errno;
      close(fd);
      return walk_fail(w, "statfs", err);
    }
    bool subvol = sf.f_type == BTRFS_SUPER_MAGIC && sx.stx_ino == 256;
    if (!subvol) {
      close(fd);
      return walk_fail(w, "remove", EXDEV);
    }
    int r = check_no_mounts(fd, w);
    close(fd);
    if (r < 0)
      return -1;
    if (lx_btrfs_delete_at(pfd, name, true) < 0)
      return walk_fail(w, "delete subvolume", errno);
    return 0;
  }
  if (rm_contents(fd, pmnt, pdev, w) < 0)
    return -1;
  if (unlink_in(pfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    return walk_fail(w, "rmdir", errno);
  return 0;
}

/* fs.remove_tree(path) -> true | nil, err, errno
** rm -rf, natively, without following symlinks. A missing path is
** success. Refuses to cross into another mount: a mount point met on the
** way fails with EBUSY, a folder on another device with EXDEV, and the
** message names it; what was removed before that stays removed. A btrfs
** subvolume met on the way (or given) is deleted with libbtrfsutil,
** nested subvolumes and all, read-only or not (needs CAP_SYS_ADMIN, or
** user_subvol_rm_allowed). A folder that refuses its owner (mode 0555, as
** /proc of an image) is made writable for the owner to be emptied. */
static int l_remove_tree(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char dir[PATH_MAX], name[NAME_MAX + 1];
  const char *base = split_path(path, dir);
  if (!base)
    return fail(L, "remove", path, errno);
  if (strcspn(base, "/") > NAME_MAX)
    return fail(L, "remove", path, ENAMETOOLONG);
  last_name(base, name);
  int pfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0)
    return errno == ENOENT ? ok(L) : fail(L, "remove", path, errno);
  struct statx sx;
  if (xstat(pfd, "", &sx) < 0) {
    int err = errno;
    close(pfd);
    return fail(L, "remove", path, err);
  }
  walk w = {NULL, 0, 0, NULL, 0};
  int r = walk_push(&w, path) ? rm_entry(pfd, name, sx.stx_mnt_id, sx_dev(&sx), &w)
                              : walk_fail(&w, "remove", ENOMEM);
  close(pfd);
  if (r < 0) {
    lx_fail(L, lua_pushfstring(L, "%s %s", w.op, w.path ? w.path : path), w.err);
    free(w.path);
    return 3;
  }
  free(w.path);
  return ok(L);
}

/* }====== */

/* {====== shift_owner ====== */

/*
** The one-time chown of a container's own snapshot for a user namespace,
** when its root cannot be an idmapped mount. Every owner below `count`
** (the size of the range) becomes base + owner; other owners are left as
** they are (unmapped, they show as nobody inside). So a walk that was
** interrupted can simply be run again, and a hard link met twice is
** shifted once, as long as base >= count. It stays on the filesystem it
** starts on: nothing mounted inside, no other device, is touched.
** chown clears set-user-ID and set-group-ID bits, so they are put back;
** file capabilities (security.capability) are dropped by the kernel.
*/

typedef struct shift {
  uid_t ubase;
  gid_t gbase;
  unsigned long count;
  dev_t dev;
  walk w;
} shift;

static int shift_one(shift *sh, int dfd, const char *name,
                     const struct stat *st) {
  uid_t u = st->st_uid < sh->count ? sh->ubase + st->st_uid : st->st_uid;
  gid_t g = st->st_gid < sh->count ? sh->gbase + st->st_gid : st->st_gid;
  int flags = AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH);
  if ((u != st->st_uid || g != st->st_gid) &&
      fchownat(dfd, name, u, g, flags) < 0)
    return walk_fail(&sh->w, "chown", errno);
  if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
      fchmodat(dfd, *name ? name : ".", st->st_mode & 07777, 0) < 0)
    return walk_fail(&sh->w, "chmod", errno);
  return 0;
}

/* Shifts what is inside the folder open at `fd` (closed here). */
static int shift_dir(shift *sh, int fd) {
  DIR *d = fdopendir(fd);
  if (!d) {
    int e = errno;
    close(fd);
    return walk_fail(&sh->w, "opendir", e);
  }
  int r = 0;
  struct dirent *de;
  size_t len = sh->w.len;
  while (r == 0 && (errno = 0, de = readdir(d))) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (!walk_push(&sh->w, de->d_name)) {
      r = walk_fail(&sh->w, "walk", ENOMEM);
      break;
    }
    struct stat st;
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      r = walk_fail(&sh->w, "stat", errno);
    } else if (st.st_dev != sh->dev) {
      /* another filesystem mounted inside: not ours to change */
    } else if ((r = shift_one(sh, dirfd(d), de->d_name, &st)) == 0 &&
               S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd(d), de->d_name,
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      r = sub < 0 ? walk_fail(&sh->w, "open", errno) : shift_dir(sh, sub);
    }
    if (r == 0)
      sh->w.path[sh->w.len = len] = '\0';
  }
  if (r == 0 && errno != 0)
    r = walk_fail(&sh->w, "readdir", errno);
  closedir(d);
  return r;
}

/* fs.shift_owner(path, uid_base, gid_base, count) -> true | nil, err, errno
** Adds uid_base (gid_base) to every owner (group) below `count` of the
** tree at `path`, on its own filesystem only, keeping set-id bits. */
static int l_shift_owner(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  shift sh;
  memset(&sh, 0, sizeof sh);
  sh.ubase = (uid_t)luaL_checkinteger(L, 2);
  sh.gbase = (gid_t)luaL_checkinteger(L, 3);
  sh.count = (unsigned long)luaL_checkinteger(L, 4);
  if (sh.ubase < sh.count || sh.gbase < sh.count)
    return luaL_argerror(L, 2, "the bases must not be below count");
  int r = -1;
  if (!walk_push(&sh.w, path)) {
    walk_fail(&sh.w, "walk", ENOMEM);
  } else {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
      walk_fail(&sh.w, "open", errno);
      if (fd >= 0)
        close(fd);
    } else {
      sh.dev = st.st_dev;
      r = shift_one(&sh, fd, "", &st);
      if (r == 0)
        r = shift_dir(&sh, fd);
      else
        close(fd);
    }
  }
  if (r < 0) {
    lua_pushfstring(L, "%s %s", sh.w.op, sh.w.path ? sh.w.path : path);
    free(sh.w.path);
    return lx_fail(L, lua_tostring(L, -1), sh.w.err);
  }
  free(sh.w.path);
  lua_pushboolean(L, 1);
  return 1;
}

/* }====== */

/* {====== copy ====== */

/*
** A tree is copied entry by entry on fds, as `cp -a` would: mode, owner,
** times, extended attributes (of files and folders) and symlinks kept,
** hard links within the copy kept as hard links, device nodes and fifos
** made anew. File data is shared by reflink (FICLONE) when both sides
** are on one filesystem that can, else copied in the kernel
** (copy_file_range, then sendfile), else read and written. Every write
** is checked: a full disk fails the copy, never leaves a short file.
**
** With `from` and `to`, each side is resolved beneath its folder as in a
** chroot (RESOLVE_IN_ROOT), so that no link in a recipe's folder or in
** an image leads the copy out of it; below the top nothing is followed.
*/

typedef struct copyopts {
  bool owner;     /* force uid/gid */
  uid_t uid;
  gid_t gid;
  bool mode;      /* force the permission bits of files (and folders) */
  mode_t perm;
  bool dir_mode;  /* force those of folders */
  mode_t dir_perm;
  bool replace;   /* a non-folder in the way of a folder is replaced */
  bool special;   /* devices, fifos and sockets are copied, not refused */
} copyopts;

/* The hard links met: a source file with more than one link, by (dev,
** ino), and the path of its copy, relative to the copy's top folder. An
** open-addressing table, kept at most half full. */
typedef struct hardlink {
  dev_t dev;
  ino_t ino;
  char *path;  /* NULL: a free slot */
} hardlink;

typedef struct linkmap {
  hardlink *v;
  size_t cap, n;  /* cap: a power of two, or 0 */
} linkmap;

static size_t link_slot(const linkmap *m, dev_t dev, ino_t ino) {
  uint64_t h = ((uint64_t)ino ^ ((uint64_t)dev << 32)) * 0x9E3779B97F4A7C15ull;
  size_t i = (size_t)(h >> 32) & (m->cap - 1);
  while (m->v[i].path && (m->v[i].dev != dev || m->v[i].ino != ino))
    i = (i + 1) & (m->cap - 1);
  return i;
}

/* The copy of (dev, ino) made so far, or NULL. */
static const char *link_find(const linkmap *m, dev_t dev, ino_t ino) {
  return m->cap ? m->v[link_slot(m, dev, ino)].path : NULL;
}

/* Records `path` as the copy of (dev, ino); false when out of memory. */
static bool link_add(linkmap *m, dev_t dev, ino_t ino, const char *path) {
  if ((m->n + 1) * 2 > m->cap) {
    linkmap bigger = {NULL, m->cap ? m->cap * 2 : 64, m->n};
    if (!(bigger.v = calloc(bigger.cap, sizeof *bigger.v)))
      return false;
    for (size_t i = 0; i < m->cap; i++)
      if (m->v[i].path)
        bigger.v[link_slot(&bigger, m->v[i].dev, m->v[i].ino)] = m->v[i];
    free(m->v);
    *m = bigger;
  }
  char *copy = strdup(path);
  if (!copy)
    return false;
  size_t i = link_slot(m, dev, ino);
  m->v[i].dev = dev;
  m->v[i].ino = ino;
  m->v[i].path = copy;
  m->n++;
  return true;
}

static void link_free(linkmap *m) {
  for (size_t i = 0; i < m->cap; i++)
    free(m->v[i].path);
  free(m->v);
}

/* The walk of a copy: both paths, for the message; the failure names the
** side it happened on ("copy /src: create /dst/x: Permission denied"). */
typedef struct copyctx {
  copyopts o;
  walk src, dst;
  walk *failed;
  int top;           /* the folder the copy is made in, and where */
  size_t top_len;    /* dst.path goes on from it (for hard links) */
  linkmap links;
  bool top_made;     /* the folder the copy goes into, once made: */
  dev_t top_dev;     /* met again in the source, it is a copy into */
  ino_t top_ino;     /* itself, which would never end */
  bool no_kernel;    /* FICLONE and copy_file_range are refused */
  dev_t no_kernel_dev;  /* from this source filesystem */
} copyctx;

static int fail_src(copyctx *c, const char *op, int err) {
  c->failed = &c->src;
  return walk_fail(&c->src, op, err);
}

static int fail_dst(copyctx *c, const char *op, int err) {
  c->failed = &c->dst;
  return walk_fail(&c->dst, op, err);
}

/* Copies the data of file `in` (on device `dev`) into the empty file
** `out`. 0, or -1 with errno. */
static int copy_data(int in, int out, dev_t dev, copyctx *c) {
  /* 0: copy_file_range, 1: sendfile, 2: read and write */
  int how = c->no_kernel && c->no_kernel_dev == dev ? 1 : 0;
  if (how == 0 && ioctl(out, FICLONE, in) == 0)
    return 0;
  for (;;) {
    ssize_t n;
    if (how == 0) {
      n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                    errno == EOPNOTSUPP || errno == EPERM)) {
        /* nothing was copied yet by a failed call; and the next file
        ** from there will be refused alike: not asked again */
        how = 1;
        c->no_kernel = true;
        c->no_kernel_dev = dev;
        continue;
      }
    } else if (how == 1) {
      n = sendfile(out, in, NULL, 1 << 30);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
        how = 2;
        continue;
      }
    } else {
      char buf[65536];
      n = read(in, buf, sizeof buf);
      if (n > 0 && write_all(out, buf, (size_t)n) < 0)
        return -1;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return (int)n;
  }
}

/* Copies the extended attributes of `in` to `out` (a file or a folder
** each). A source filesystem without them has none to copy. */
static int copy_xattrs(int in, int out, copyctx *c) {
  char *names = NULL, *value = NULL;
  size_t cap = 0;
  int r = 0;
  ssize_t len;
  for (;;) {
    if ((len = flistxattr(in, NULL, 0)) <= 0)
      break;
    char *p = realloc(names, (size_t)len);
    if (!p) {
      r = fail_src(c, "listxattr", ENOMEM);
      goto done;
    }
    names = p;
    if ((len = flistxattr(in, names, (size_t)len)) >= 0 || errno != ERANGE)
      break;  /* ERANGE: one was added meanwhile */
  }
  if (len < 0) {
    if (errno != ENOTSUP)
      r = fail_src(c, "listxattr", errno);
    goto done;
  }
  for (const char *name = names; name < names + len; name += strlen(name) + 1) {
    ssize_t n;
    for (;;) {
      if ((n = fgetxattr(in, name, NULL, 0)) < 0)
        break;
      if ((size_t)n > cap) {
        char *p = realloc(value, (size_t)n);
        if (!p) {
          r = fail_src(c, "getxattr", ENOMEM);
          goto done;
        }
        value = p;
        cap = (size_t)n;
      }
      if ((n = fgetxattr(in, name, value, cap)) >= 0 || errno != ERANGE)
        break;
    }
    if (n < 0 && errno == ENODATA)
      continue;  /* removed meanwhile */
    if (n < 0) {
      r = fail_src(c, "getxattr", errno);
      goto done;
    }
    if (fsetxattr(out, name, value, (size_t)n, 0) < 0) {
      r = fail_dst(c, "setxattr", errno);
      goto done;
    }
  }
done:
  free(names);
  free(value);
  return r;
}

/* Sets owner, extended attributes (from `in`, when >= 0), mode (not of
** symlinks) and times of `name` beneath `dfd` (or of `fd` when >= 0),
** as the source `st` had them or the options say. The owner goes first
** (chown clears setuid bits and file capabilities), the times last. */
static int copy_meta(int dfd, const char *name, int fd, int in,
                     const struct stat *st, copyctx *c) {
  const copyopts *o = &c->o;
  uid_t uid = o->owner ? o->uid : st->st_uid;
  gid_t gid = o->owner ? o->gid : st->st_gid;
  mode_t perm = st->st_mode & 07777;
  if (S_ISDIR(st->st_mode) && o->dir_mode)
    perm = o->dir_perm;
  else if (o->mode)
    perm = o->perm;
  struct stat now;
  int r = fd >= 0 ? fstat(fd, &now) : fstatat(dfd, name, &now, AT_SYMLINK_NOFOLLOW);
  if (r < 0)
    return fail_dst(c, "stat", errno);
  if (now.st_uid != uid || now.st_gid != gid) {
    r = fd >= 0 ? fchown(fd, uid, gid)
                : fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW);
    if (r < 0)
      return fail_dst(c, "chown", errno);
  }
  if (in >= 0 && fd >= 0 && copy_xattrs(in, fd, c) < 0)
    return -1;
  if (!S_ISLNK(st->st_mode)) {
    r = fd >= 0 ? fchmod(fd, perm) : fchmodat(dfd, name, perm, 0);
    if (r < 0)
      return fail_dst(c, "chmod", errno);
  }
  struct timespec t[2] = {st->st_atim, st->st_mtim};
  r = fd >= 0 ? futimens(fd, t) : utimensat(dfd, name, t, AT_SYMLINK_NOFOLLOW);
  if (r < 0)
    return fail_dst(c, "utimens", errno);
  return 0;
}

/* Clears the way for a new non-folder `name` beneath `dfd`: a file,
** link or node there is replaced, a folder is EISDIR. */
static int make_room(int dfd, const char *name, copyctx *c) {
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : fail_dst(c, "stat", errno);
  if (S_ISDIR(st.st_mode))
    return fail_dst(c, "replace", EISDIR);
  if (unlinkat(dfd, name, 0) < 0)
    return fail_dst(c, "unlink", errno);
  return 0;
}

static int copy_entry(int sfd, const char *sname, int dfd, const char *dname,
                      copyctx *c);

/* Copies what is in the source folder `d` into the folder `out`. */
static int copy_entries(DIR *d, int out, copyctx *c) {
  size_t slen = c->src.len, dlen = c->dst.len;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e)
      return errno ? fail_src(c, "readdir", errno) : 0;
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' ||
        (e->d_name[1] == '.' && e->d_name[2] == '\0')))
      continue;
    if (!walk_push(&c->src, e->d_name) || !walk_push(&c->dst, e->d_name))
      return fail_src(c, "copy", ENOMEM);
    if (copy_entry(dirfd(d), e->d_name, out, e->d_name, c) < 0)
      return -1;
    c->src.path[c->src.len = slen] = '\0';
    c->dst.path[c->dst.len = dlen] = '\0';
  }
}

/* Notes the folder `fd` that the copy goes into (the first one made),
** and keeps it writable for us until its contents are in. */
static void entering(int fd, copyctx *c) {
  struct stat now;
  if (fstat(fd, &now) == 0) {
    if (!c->top_made) {
      c->top_made = true;
      c->top_dev = now.st_dev;
      c->top_ino = now.st_ino;
    }
    if ((now.st_mode & 0700) != 0700)
      fchmod(fd, now.st_mode | 0700);
  }
}

static int copy_dir(int sfd, const char *sname, int dfd, const char *dname,
                    const struct stat *st, copyctx *c) {
  int in = openat(sfd, sname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0)
    return fail_src(c, "open", errno);
  int err = mkdirat(dfd, dname, 0700) < 0 ? errno : 0;
  if (err == EEXIST) {
    struct stat there;
    err = fstatat(dfd, dname, &there, AT_SYMLINK_NOFOLLOW) < 0 ? errno
          : S_ISDIR(there.st_mode) ? 0 : ENOTDIR;
    if (err == ENOTDIR && c->o.replace)
      err = unlinkat(dfd, dname, 0) < 0 || mkdirat(dfd, dname, 0700) < 0 ? errno : 0;
  }
  if (err) {
    close(in);
    return fail_dst(c, "mkdir", err);
  }
  int out = openat(dfd, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (out < 0) {
    err = errno;
    close(in);
    return fail_dst(c, "open", err);
  }
  entering(out, c);
  DIR *d = fdopendir(in);
  if (!d) {
    err = errno;
    close(in);
    close(out);
    return fail_src(c, "opendir", err);
  }
  int r = copy_entries(d, out, c);
  if (r == 0)  /* last: the entries change its mtime */
    r = copy_meta(-1, NULL, out, dirfd(d), st, c);
  closedir(d);
  close(out);
  return r;
}

/* Links `dname` beneath `dfd` to the copy at `rel` (beneath the top). */
static int link_copy(const char *rel, int dfd, const char *dname, copyctx *c) {
  const char *slash = strrchr(rel, '/');
  if (!slash)
    return linkat(c->top, rel, dfd, dname, 0);
  char *parent = strndup(rel, (size_t)(slash - rel));
  if (!parent)
    return -1;
  /* folders this copy made or went through: no link may be on the way */
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
  int pfd = (int)syscall(SYS_openat2, c->top, parent, &how, sizeof how);
  free(parent);
  if (pfd < 0)
    return -1;
  int r = linkat(pfd, slash + 1, dfd, dname, 0);
  int err = errno;
  close(pfd);
  errno = err;
  return r;
}

static int copy_file(int sfd, const char *sname, int dfd, const char *dname,
                     const struct stat *st, copyctx *c) {
  bool linked = st->st_nlink > 1;
  const char *first = linked ? link_find(&c->links, st->st_dev, st->st_ino) : NULL;
  if (make_room(dfd, dname, c) < 0)
    return -1;
  /* a hard link met again: linked to its copy (else copied again) */
  if (first && link_copy(first, dfd, dname, c) == 0)
    return 0;
  int in = openat(sfd, sname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (in < 0)
    return fail_src(c, "open", errno);
  int out = openat(dfd, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                   0600);
  if (out < 0) {
    int err = errno;
    close(in);
    return fail_dst(c, "create", err);
  }
  int r = copy_data(in, out, st->st_dev, c) < 0 ? fail_dst(c, "write", errno) : 0;
  if (r == 0)
    r = copy_meta(-1, NULL, out, in, st, c);
  close(in);
  if (close(out) < 0 && r == 0)
    r = fail_dst(c, "write", errno);
  if (r == 0 && linked && !first &&
      !link_add(&c->links, st->st_dev, st->st_ino, c->dst.path + c->top_len))
    r = fail_dst(c, "copy", ENOMEM);
  return r;
}

static int copy_entry(int sfd, const char *sname, int dfd, const char *dname,
                      copyctx *c) {
  struct stat st;
  if (fstatat(sfd, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return fail_src(c, "stat", errno);
  switch (st.st_mode & S_IFMT) {
    case S_IFDIR:
      if (c->top_made && st.st_dev == c->top_dev && st.st_ino == c->top_ino)
        return fail_src(c, "copy into itself", EINVAL);
      return copy_dir(sfd, sname, dfd, dname, &st, c);
    case S_IFREG:
      return copy_file(sfd, sname, dfd, dname, &st, c);
    case S_IFLNK: {
      char target[PATH_MAX];
      ssize_t n = readlinkat(sfd, sname, target, sizeof target);
      if (n < 0)
        return fail_src(c, "readlink", errno);
      if ((size_t)n == sizeof target)
        return fail_src(c, "readlink", ENAMETOOLONG);
      target[n] = '\0';
      if (make_room(dfd, dname, c) < 0)
        return -1;
      if (symlinkat(target, dfd, dname) < 0)
        return fail_dst(c, "symlink", errno);
      return copy_meta(dfd, dname, -1, -1, &st, c);
    }
    default:  /* devices, fifos, sockets: a node of the same kind */
      if (!c->o.special)
        return fail_src(c, "copy special file", EPERM);
      if (make_room(dfd, dname, c) < 0)
        return -1;
      if (mknodat(dfd, dname, (st.st_mode & S_IFMT) | 0600, st.st_rdev) < 0)
        return fail_dst(c, "mknod", errno);
      return copy_meta(dfd, dname, -1, -1, &st, c);
  }
}

/* Opens (O_PATH) the folder of `path`, beneath `rootfd` when >= 0, and
** gives its last name in `name` (size NAME_MAX + 1); a path without one
** ("/", ".", "a/..") is that folder itself, whose name is then ".".
** *at is where that name starts in `path` (for hard links' paths).
** The fd, or -1 with errno. */
static int open_parent(int rootfd, const char *path, char *name, size_t *at) {
  char dir[PATH_MAX];
  const char *base = split_path(path, dir);
  const char *folder = dir;
  if (!base && errno == EINVAL && *path) {
    folder = path;
    strcpy(name, ".");
    *at = strlen(path);
  } else if (!base || strcspn(base, "/") > NAME_MAX) {
    if (base)
      errno = ENAMETOOLONG;
    return -1;
  } else {
    last_name(base, name);
    *at = (size_t)(base - path);
  }
  int flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  return rootfd >= 0 ? lx_openat_in_root(rootfd, folder, flags) : open(folder, flags);
}

/* Opens folder `path` (O_RDONLY), beneath `rootfd` when >= 0. */
static int open_folder(int rootfd, const char *path) {
  int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  return rootfd >= 0 ? lx_openat_in_root(rootfd, path, flags) : open(path, flags);
}

/* The copy of `src` to `dst` (see l_copy), on the roots' fds (or -1). */
static int copy_top(const char *src, const char *dst, int sroot, int droot,
                    bool contents, copyctx *c) {
  char sname[NAME_MAX + 1], dname[NAME_MAX + 1];
  int sdir = -1, ddir = -1, r = -1;
  size_t at;
  if (!walk_push(&c->src, src) || !walk_push(&c->dst, dst))
    return fail_src(c, "copy", ENOMEM);
  if (contents) {
    /* the entries of folder src go into folder dst, which stays as it is */
    struct stat st;
    DIR *d = NULL;
    if ((sdir = open_folder(sroot, src)) < 0 || !(d = fdopendir(sdir))) {
      r = fail_src(c, "open", errno);
    } else if ((ddir = open_folder(droot, dst)) < 0 || fstat(ddir, &st) < 0) {
      r = fail_dst(c, "open", errno);
    } else {
      c->top = ddir;
      c->top_len = c->dst.len + (c->dst.len && c->dst.path[c->dst.len - 1] != '/');
      c->top_made = true;
      c->top_dev = st.st_dev;
      c->top_ino = st.st_ino;
      struct stat s;
      if (fstat(dirfd(d), &s) == 0 && s.st_dev == st.st_dev && s.st_ino == st.st_ino)
        r = fail_src(c, "copy into itself", EINVAL);
      else
        r = copy_entries(d, ddir, c);
    }
    if (d)
      closedir(d);
    else if (sdir >= 0)
      close(sdir);
  } else if ((sdir = open_parent(sroot, src, sname, &at)) < 0) {
    r = fail_src(c, "open", errno);
  } else if ((ddir = open_parent(droot, dst, dname, &at)) < 0) {
    r = fail_dst(c, "open", errno);
  } else {
    c->top = ddir;
    c->top_len = strcmp(dname, ".") ? at
      : c->dst.len + (c->dst.len && c->dst.path[c->dst.len - 1] != '/');
    r = copy_entry(sdir, sname, ddir, dname, c);
    close(sdir);
  }
  if (ddir >= 0)
    close(ddir);
  return r;
}

/* Reads an optional permission field of the options at index 3. */
static bool perm_opt(lua_State *L, const char *key, mode_t *perm) {
  if (lua_getfield(L, 3, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return false;
  }
  if (!lua_isinteger(L, -1))
    luaL_argerror(L, 3, lua_pushfstring(L, "%s must be an integer", key));
  *perm = (mode_t)lua_tointeger(L, -1) & 07777;
  lua_pop(L, 1);
  return true;
}

/* fs.copy(src, dst, [{owner = {uid, gid}, mode = perm, dir_mode = perm,
** from = dir, to = dir, contents = false, replace = false,
** special = true}]) -> true | nil, err, errno.
** Copies the file, symlink or folder tree `src` to `dst` (which names the
** copy; it is not a folder to copy into; a symlink at src is copied as
** one). A folder that exists at `dst` is merged into; a non-folder there
** is replaced; a folder in the place of a non-folder is EISDIR, a
** non-folder in the place of a folder ENOTDIR unless `replace` (then it
** is replaced too). `owner`, `mode` and `dir_mode` (folders' mode,
** instead of `mode`) override what the source has, for every entry
** (modes not for symlinks). With `contents`, `src` and `dst` are folders
** and what is in `src` is copied into `dst`, whose own owner, mode and
** times are left. `from` and `to` are the folders that `src` and `dst`
** are resolved beneath, as in a chroot (see lx_openat_in_root); without them the
** paths are taken as given. Without `special`, a device, fifo or socket
** fails the copy (EPERM). The message names the side that failed:
** "copy SRC: create DST/x: ...". A folder copied into itself fails with
** EINVAL, as with cp. What was copied before a failure stays. */
static int l_copy(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  const char *dst = luaL_checkstring(L, 2);
  copyctx c;
  memset(&c, 0, sizeof c);
  c.o.special = true;
  c.top = -1;
  const char *from = NULL, *to = NULL;
  bool contents = false;
  if (!lua_isnoneornil(L, 3)) {
    static const char *const known[] = {"owner", "mode", "dir_mode", "from", "to",
                                        "contents", "replace", "special", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    lx_checkkeys(L, 3, "fs.copy", known);
    if (lua_getfield(L, 3, "owner") != LUA_TNIL) {
      luaL_argcheck(L, lua_istable(L, -1), 3, "owner must be {uid, gid}");
      lua_geti(L, -1, 1);
      lua_geti(L, -2, 2);
      if (!lua_isinteger(L, -2) || !lua_isinteger(L, -1))
        return luaL_argerror(L, 3, "owner must be {uid, gid}");
      c.o.owner = true;
      c.o.uid = (uid_t)lua_tointeger(L, -2);
      c.o.gid = (gid_t)lua_tointeger(L, -1);
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
    c.o.mode = perm_opt(L, "mode", &c.o.perm);
    c.o.dir_mode = perm_opt(L, "dir_mode", &c.o.dir_perm);
    lua_getfield(L, 3, "from");
    from = luaL_optstring(L, -1, NULL);  /* stays on the stack */
    lua_getfield(L, 3, "to");
    to = luaL_optstring(L, -1, NULL);
    lua_getfield(L, 3, "contents");
    contents = lua_toboolean(L, -1);
    lua_getfield(L, 3, "replace");
    c.o.replace = lua_toboolean(L, -1);
    if (lua_getfield(L, 3, "special") != LUA_TNIL)
      c.o.special = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  int sroot = -1, droot = -1, r = -1, err;
  if (from && (sroot = open(from, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
    err = errno;
    lx_fail(L, lua_pushfstring(L, "copy %s: open %s", src, from), err);
  } else if (to && (droot = open(to, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
    err = errno;
    lx_fail(L, lua_pushfstring(L, "copy %s: open %s", src, to), err);
  } else if ((r = copy_top(src, dst, sroot, droot, contents, &c)) < 0) {
    walk *w = c.failed;
    lx_fail(L, lua_pushfstring(L, "copy %s: %s %s", src, w->op,
                               w->path ? w->path : src), w->err);
  }
  if (sroot >= 0)
    close(sroot);
  if (droot >= 0)
    close(droot);
  free(c.src.path);
  free(c.dst.path);
  link_free(&c.links);
  return r < 0 ? 3 : ok(L);
}

/* }====== */

static const luaL_Reg fs_funcs[] = {
  {"stat", l_stat},
  {"lstat", l_lstat},
  {"readdir", l_readdir},
  {"mkdir", l_mkdir},
  {"mkdirs", l_mkdirs},
  {"rename", l_rename},
  {"unlink", l_unlink},
  {"rmdir", l_rmdir},
  {"symlink", l_symlink},
  {"readlink", l_readlink},
  {"chmod", l_chmod},
  {"lchown", l_lchown},
  {"realpath", l_realpath},
  {"write_atomic", l_write_atomic},
  {"read", l_read},
  {"statfs", l_statfs},
  {"lock", l_lock},
  {"remove_tree", l_remove_tree},
  {"shift_owner", l_shift_owner},
  {"copy", l_copy},
  {NULL, NULL},
};

void lx_open_fs(lua_State *L) {
  luaL_newmetatable(L, LX_LOCK);
  luaL_setfuncs(L, lock_meta, 0);
  luaL_newlib(L, lock_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, fs_funcs);
}
