/*
** mount.c -- mounts: options, mounting beneath a root without leaving it,
** masked and read-only paths, idmapped trees.
**
** Paths inside a container's root filesystem are never trusted as strings
** before pivot_root: a symlink in the image could point anywhere on the
** host. They are resolved with openat2(RESOLVE_IN_ROOT) to an O_PATH fd and
** the mount goes onto /proc/self/fd/N (as crun and runc do).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "luactr.h"

/* {====== options ====== */

enum { OPT_FLAG, OPT_CLEAR, OPT_PROP, OPT_BIND, OPT_NONE };

static const struct {
  const char *name;
  int kind;
  unsigned long flag;
} mount_opts[] = {
  {"defaults", OPT_NONE, 0},
  {"ro", OPT_FLAG, MS_RDONLY},         {"rw", OPT_CLEAR, MS_RDONLY},
  {"nosuid", OPT_FLAG, MS_NOSUID},     {"suid", OPT_CLEAR, MS_NOSUID},
  {"nodev", OPT_FLAG, MS_NODEV},       {"dev", OPT_CLEAR, MS_NODEV},
  {"noexec", OPT_FLAG, MS_NOEXEC},     {"exec", OPT_CLEAR, MS_NOEXEC},
  {"sync", OPT_FLAG, MS_SYNCHRONOUS},  {"async", OPT_CLEAR, MS_SYNCHRONOUS},
  {"dirsync", OPT_FLAG, MS_DIRSYNC},   {"remount", OPT_FLAG, MS_REMOUNT},
  {"mand", OPT_FLAG, MS_MANDLOCK},     {"nomand", OPT_CLEAR, MS_MANDLOCK},
  {"atime", OPT_CLEAR, MS_NOATIME},    {"noatime", OPT_FLAG, MS_NOATIME},
  {"diratime", OPT_CLEAR, MS_NODIRATIME},
  {"nodiratime", OPT_FLAG, MS_NODIRATIME},
  {"relatime", OPT_FLAG, MS_RELATIME}, {"norelatime", OPT_CLEAR, MS_RELATIME},
  {"strictatime", OPT_FLAG, MS_STRICTATIME},
  {"nostrictatime", OPT_CLEAR, MS_STRICTATIME},
  {"lazytime", OPT_FLAG, MS_LAZYTIME}, {"nolazytime", OPT_CLEAR, MS_LAZYTIME},
  {"silent", OPT_FLAG, MS_SILENT},     {"loud", OPT_CLEAR, MS_SILENT},
  {"bind", OPT_BIND, 0},               {"rbind", OPT_BIND, MS_REC},
  {"private", OPT_PROP, MS_PRIVATE},   {"rprivate", OPT_PROP, MS_PRIVATE | MS_REC},
  {"shared", OPT_PROP, MS_SHARED},     {"rshared", OPT_PROP, MS_SHARED | MS_REC},
  {"slave", OPT_PROP, MS_SLAVE},       {"rslave", OPT_PROP, MS_SLAVE | MS_REC},
  {"unbindable", OPT_PROP, MS_UNBINDABLE},
  {"runbindable", OPT_PROP, MS_UNBINDABLE | MS_REC},
  {NULL, 0, 0},
};


void lx_mount_parseopts(lua_State *L, int idx, lx_mount *m) {
  m->flags = m->pflags = 0;
  m->bind = m->remount = false;
  m->data = NULL;
  int base = lua_gettop(L), ndata = 0;
  if (!lua_isnoneornil(L, idx)) {
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
      luaL_checkstack(L, 2, "too many mount options");
      lua_geti(L, idx, i);
      const char *o = lua_tostring(L, -1);
      if (!o)
        luaL_error(L, "mount option %d is not a string", (int)i);
      int k = 0;
      while (mount_opts[k].name && strcmp(mount_opts[k].name, o) != 0)
        k++;
      if (!mount_opts[k].name) {
        /* fs data: keep it on the stack, comma-separated, joined below */
        if (ndata++) {
          lua_pushliteral(L, ",");
          lua_insert(L, -2);
        }
        continue;
      }
      switch (mount_opts[k].kind) {
        case OPT_FLAG: m->flags |= mount_opts[k].flag; break;
        case OPT_CLEAR: m->flags &= ~mount_opts[k].flag; break;
        case OPT_PROP: m->pflags |= mount_opts[k].flag; break;
        case OPT_BIND: m->bind = true; m->flags |= MS_BIND | mount_opts[k].flag; break;
        default: break;
      }
      lua_pop(L, 1);
    }
  }
  if (ndata) {
    lua_concat(L, lua_gettop(L) - base);
    /* A bind mount has no use for fs options and the kernel would ignore
    ** them: a misspelt "ro" there must not pass silently. */
    if (m->bind)
      luaL_error(L, "unknown bind mount option in '%s'", lua_tostring(L, -1));
    m->data = lua_tostring(L, -1);  /* the caller keeps it on the stack */
  } else {
    lua_pushnil(L);  /* the same stack shape either way */
  }
  if (m->bind && (m->flags & LX_REMOUNT_FLAGS))
    m->remount = true;
}

/* }====== */

/* {====== resolving beneath a root ====== */

int lx_openat_in_root(int dirfd, const char *path, int flags) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int lx_open_in_root(int rootfd, const char *path, bool create, bool as_file) {
  int fd = lx_openat_in_root(rootfd, path, O_PATH);
  if (fd >= 0 || errno != ENOENT || !create)
    return fd;
  /* Walk down, making what is missing. Each prefix is resolved afresh
  ** beneath the root, so a symlink met on the way stays inside it. */
  char buf[PATH_MAX];
  size_t len = strlen(path);
  if (len >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, len + 1);
  int parent = -1;
  size_t i = 0;
  while (i < len) {
    while (i < len && buf[i] == '/')
      i++;
    if (i == len)
      break;
    size_t start = i;
    while (i < len && buf[i] != '/')
      i++;
    bool last = (i == len);
    char saved = buf[i];
    buf[i] = '\0';
    fd = lx_openat_in_root(rootfd, buf, O_PATH);
    if (fd < 0 && errno == ENOENT) {
      int dir = parent >= 0 ? parent : rootfd;
      int r;
      if (last && as_file) {
        r = openat(dir, buf + start,
                   O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (r >= 0)
          close(r);
      } else {
        r = mkdirat(dir, buf + start, 0755);
      }
      if (r < 0 && errno != EEXIST) {
        int e = errno;
        if (parent >= 0)
          close(parent);
        errno = e;
        return -1;
      }
      fd = lx_openat_in_root(rootfd, buf, O_PATH);
    }
    buf[i] = saved;
    if (parent >= 0)
      close(parent);
    if (fd < 0)
      return -1;
    if (last)
      return fd;
    parent = fd;
  }
  return parent >= 0 ? parent : lx_openat_in_root(rootfd, "/", O_PATH);
}

/* }====== */

/* {====== mounting ====== */

static void fdpath(lx_buf *b, int fd) {
  lx_buf_init(b);
  lx_buf_cat(b, "/proc/self/fd/");
  lx_buf_catint(b, fd);
}

/* Resolves `path` beneath rootfd (or as it is when rootfd < 0) into
** `b`, returning the O_PATH fd to close afterwards (or -1). */
static int target(lx_buf *b, int rootfd, const char *path, bool create,
                  bool as_file, int *fd) {
  *fd = -1;
  if (rootfd < 0) {
    lx_buf_init(b);
    lx_buf_cat(b, path);
    return 0;
  }
  *fd = lx_open_in_root(rootfd, path, create, as_file);
  if (*fd < 0)
    return -1;
  fdpath(b, *fd);
  return 0;
}

int lx_mount_at(const lx_mount *m, int rootfd, const char *path) {
  lx_buf t;
  int fd, r = 0, e = 0;
  bool as_file = false;
  if (m->bind) {
    struct stat st;
    if (stat(m->source, &st) < 0)
      return -1;
    as_file = !S_ISDIR(st.st_mode);
  }
  if (target(&t, rootfd, path, true, as_file, &fd) < 0)
    return -1;
  if (m->type || m->bind || (m->flags & MS_REMOUNT)) {
    r = mount(m->source, t.s, m->type, m->flags, m->data);
    e = errno;
  }
  if (fd >= 0)
    close(fd);
  if (r < 0) {
    errno = e;
    return -1;
  }
  if (!m->remount && !m->pflags)
    return 0;
  /* The fd resolved before the mount names what is now underneath it:
  ** look again to reach the new mount's root. */
  if (target(&t, rootfd, path, false, false, &fd) < 0)
    return -1;
  if (m->remount)
    r = mount(NULL, t.s, NULL,
              MS_BIND | MS_REMOUNT | (m->flags & (LX_REMOUNT_FLAGS | MS_REC)),
              NULL);
  if (r == 0 && m->pflags)
    r = mount(NULL, t.s, NULL, m->pflags, NULL);
  e = errno;
  if (fd >= 0)
    close(fd);
  errno = e;
  return r;
}

int lx_remount_bind(const char *path, unsigned long flags) {
  struct statvfs sv;
  if (statvfs(path, &sv) < 0)
    return -1;
  /* Keep the flags the mount has: remounting without them would fail
  ** when they are locked, and silently relax them when they are not. */
  static const struct { unsigned long st, ms; } keep[] = {
    {ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC},
    {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME},
    {ST_RELATIME, MS_RELATIME}, {ST_RDONLY, MS_RDONLY},
  };
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
    if (sv.f_flag & keep[i].st)
      flags |= keep[i].ms;
  return mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | flags, NULL);
}

int lx_mask_path(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0)
    return errno == ENOENT ? 0 : -1;
  if (S_ISDIR(st.st_mode))
    return mount("tmpfs", path, "tmpfs",
                 MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755");
  return mount("/dev/null", path, NULL, MS_BIND, NULL);
}

int lx_readonly_path(const char *path) {
  if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
    return errno == ENOENT ? 0 : -1;
  return lx_remount_bind(path, MS_RDONLY);
}

int lx_mount_idmapped(const char *path, int usernsfd) {
  /* A detached copy (with what is mounted beneath, as the plain rbind of
  ** the root is): only a mount no namespace has seen may be idmapped. */
  int tree = open_tree(AT_FDCWD, path,
                       OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (tree < 0)
    return -1;
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = (uint64_t)usernsfd;
  if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                    sizeof attr) < 0) {
    int err = errno;
    close(tree);
    errno = err;
    return -1;
  }
  return tree;
}

/* }====== */

/* {====== Lua bindings ====== */

/* mount.mount(source, target, fstype, options) -> true | nil, err, errno
** `options` is an OCI options array: flags ("ro", "nosuid", ...), bind
** ("bind", "rbind"), propagation ("rprivate", ...) and fs data. With no
** fstype and no bind, only the propagation changes. */
static int l_mount(lua_State *L) {
  lx_mount m;
  m.source = luaL_optstring(L, 1, NULL);
  const char *path = luaL_checkstring(L, 2);
  m.type = luaL_optstring(L, 3, NULL);
  lx_mount_parseopts(L, 4, &m);
  m.dest = path;
  if (m.bind && !m.source)
    return luaL_argerror(L, 1, "a bind mount needs a source");
  if (lx_mount_at(&m, -1, path) < 0)
    return lx_fail(L, lua_pushfstring(L, "mount %s", path), errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* mount.umount(target, [{"detach", "force", "nofollow"}]) */
static int l_umount(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int flags = 0;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const names[] = {"detach", "force", "expire",
                                        "nofollow", NULL};
    static const int values[] = {MNT_DETACH, MNT_FORCE, MNT_EXPIRE,
                                 UMOUNT_NOFOLLOW};
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, 2, i);
      flags |= values[luaL_checkoption(L, -1, NULL, names)];
      lua_pop(L, 1);
    }
  }
  if (umount2(path, flags) < 0)
    return lx_fail(L, lua_pushfstring(L, "umount %s", path), errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* mount.bind(source, target, [{recursive=, readonly=}]) */
static int l_bind(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  const char *dst = luaL_checkstring(L, 2);
  lx_mount m = {.source = src, .dest = dst, .bind = true, .flags = MS_BIND};
  if (!lua_isnoneornil(L, 3)) {
    static const char *const known[] = {"recursive", "readonly", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    lx_checkkeys(L, 3, "mount.bind", known);
    if (lua_getfield(L, 3, "recursive") != LUA_TNIL && lua_toboolean(L, -1))
      m.flags |= MS_REC;
    if (lua_getfield(L, 3, "readonly") != LUA_TNIL && lua_toboolean(L, -1)) {
      m.flags |= MS_RDONLY;
      m.remount = true;
    }
    lua_pop(L, 2);
  }
  if (lx_mount_at(&m, -1, dst) < 0)
    return lx_fail(L, lua_pushfstring(L, "bind %s", dst), errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* mount.mask(path): hide a file or folder; missing paths are fine. */
static int l_mask(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (lx_mask_path(path) < 0)
    return lx_fail(L, lua_pushfstring(L, "mask %s", path), errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* mount.read_in_root(root, path, [max]) -> contents | nil, err, errno
** Reads a file of a root filesystem as the container would see it:
** symlinks resolve inside `root`, never to the host. */
static int l_read_in_root(lua_State *L) {
  const char *root = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  lua_Integer max = luaL_optinteger(L, 3, 1 << 20);
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    return lx_fail(L, root, errno);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
  int e = errno;
  close(rootfd);
  if (fd < 0)
    return lx_fail(L, path, e);
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    e = S_ISREG(st.st_mode) ? errno : EINVAL;
    close(fd);
    return lx_fail(L, path, e);
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_Integer total = 0;
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = read(fd, p, LUAL_BUFFERSIZE);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      e = errno;
      close(fd);
      return lx_fail(L, path, e);
    }
    if (n == 0 || (total += n) > max)
      break;
    luaL_addsize(&b, (size_t)n);
  }
  close(fd);
  if (total > max)
    return lx_fail(L, path, EFBIG);
  luaL_pushresult(&b);
  return 1;
}

static const luaL_Reg mount_funcs[] = {
  {"mount", l_mount},
  {"umount", l_umount},
  {"bind", l_bind},
  {"mask", l_mask},
  {"read_in_root", l_read_in_root},
  {NULL, NULL},
};

void lx_open_mount(lua_State *L) {
  luaL_newlib(L, mount_funcs);
}

/* }====== */
