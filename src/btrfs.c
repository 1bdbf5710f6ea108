/*
** btrfs.c -- subvolumes, through libbtrfsutil: create, snapshot, delete,
** read-only flag, sync, deleted subvolumes not yet cleaned.
**
** A libbtrfsutil call fails with its own error code and errno set; the
** message carries both ("btrfs snapshot /a: Could not create snapshot:
** File exists") and errno comes back third, as everywhere in the core.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <btrfsutil.h>

#include "luactr.h"

/* {====== failures ====== */

/* The errno of a failed libbtrfsutil call: the one it set, or the
** nearest match for the few errors it reports without one. */
static int util_errno(enum btrfs_util_error e, int saved) {
  if (saved)
    return saved;
  switch (e) {
    case BTRFS_UTIL_ERROR_NO_MEMORY: return ENOMEM;
    case BTRFS_UTIL_ERROR_SUBVOLUME_NOT_FOUND: return ENOENT;
    default: return EINVAL;
  }
}

/* Pushes `nil, "btrfs <op> <path>: <btrfs message>: strerror", errno`.
** Callers clear errno before the libbtrfsutil call and pass it here as
** `saved`, so that util_errno can tell whether the library set it. */
static int util_fail(lua_State *L, const char *op, const char *path,
                     enum btrfs_util_error e, int saved) {
  int err = util_errno(e, saved);
  lua_pushfstring(L, "btrfs %s %s: %s: %s", op, path, btrfs_util_strerror(e),
                  strerror(err));
  return lx_failmsg(L, lua_tostring(L, -1), err);
}

static int ok(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

/* }====== */

/* {====== deleting ====== */

/*
** libbtrfsutil deletes a read-only subvolume, but not one that holds other
** subvolumes, even with the recursive flag: their entries live in its
** read-only tree (EROFS). A layer that a build step left a subvolume in
** is such a case. Being deleted anyway, that tree is made writable, and
** the delete tried again -- unless the folder holding the subvolume is
** itself read-only, which no flag of ours changes.
*/

/* Clears the read-only flag of the subvolume open at `fd` and of every
** subvolume beneath it. Returns 0 when something could be made writable,
** -1 (errno EROFS) when a retry would not help. */
static int writable_for_delete(int fd) {
  bool ro = false;
  int parent = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent >= 0) {
    enum btrfs_util_error e = btrfs_util_get_subvolume_read_only_fd(parent, &ro);
    close(parent);
    if (e == BTRFS_UTIL_OK && ro) {
      errno = EROFS;
      return -1;
    }
  }
  if (btrfs_util_set_subvolume_read_only_fd(fd, false) != BTRFS_UTIL_OK)
    return -1;
  struct btrfs_util_subvolume_iterator *it;
  if (btrfs_util_create_subvolume_iterator_fd(fd, 0, 0, &it) != BTRFS_UTIL_OK)
    return -1;
  char *path;
  while (btrfs_util_subvolume_iterator_next(it, &path, NULL) == BTRFS_UTIL_OK) {
    int sub = openat(fd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub >= 0) {
      btrfs_util_set_subvolume_read_only_fd(sub, false);
      close(sub);
    }
    free(path);
  }
  btrfs_util_destroy_subvolume_iterator(it);
  return 0;
}

/* Deletes subvolume `name` beneath `parentfd` (parentfd AT_FDCWD: `name`
** is a path). Returns BTRFS_UTIL_OK or the error, with errno set. */
static enum btrfs_util_error delete_subvolume(int parentfd, const char *name,
                                              bool recursive) {
  int flags = recursive ? BTRFS_UTIL_DELETE_SUBVOLUME_RECURSIVE : 0;
  errno = 0;
  enum btrfs_util_error e = parentfd == AT_FDCWD
      ? btrfs_util_delete_subvolume(name, flags)
      : btrfs_util_delete_subvolume_fd(parentfd, name, flags);
  if (e == BTRFS_UTIL_OK || errno != EROFS || !recursive)
    return e;
  int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    errno = EROFS;
    return e;
  }
  int r = writable_for_delete(fd);
  close(fd);
  errno = EROFS;
  if (r < 0)
    return e;
  errno = 0;
  return parentfd == AT_FDCWD ? btrfs_util_delete_subvolume(name, flags)
                              : btrfs_util_delete_subvolume_fd(parentfd, name, flags);
}

int lx_btrfs_delete_at(int parentfd, const char *name, bool recursive) {
  enum btrfs_util_error e = delete_subvolume(parentfd, name, recursive);
  if (e == BTRFS_UTIL_OK)
    return 0;
  errno = util_errno(e, errno);
  return -1;
}

/* }====== */

/* {====== Lua bindings ====== */

/* btrfs.create(path) -> true | nil, err, errno: a new, empty subvolume. */
static int l_create(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  errno = 0;
  enum btrfs_util_error e = btrfs_util_create_subvolume(path, 0, NULL, NULL);
  if (e != BTRFS_UTIL_OK)
    return util_fail(L, "create", path, e, errno);
  return ok(L);
}

/* btrfs.snapshot(src, dst, [{readonly=false}]) -> true | nil, err, errno
** A snapshot of subvolume `src` at `dst` (which must not exist). Nested
** subvolumes of `src` show in the snapshot as empty folders. A snapshot
** of a read-only subvolume is writable unless `readonly` is asked. */
static int l_snapshot(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  const char *dst = luaL_checkstring(L, 2);
  int flags = 0;
  if (!lua_isnoneornil(L, 3)) {
    static const char *const known[] = {"readonly", NULL};
    luaL_checktype(L, 3, LUA_TTABLE);
    lx_checkkeys(L, 3, "btrfs.snapshot", known);
    if (lua_getfield(L, 3, "readonly") != LUA_TNIL && lua_toboolean(L, -1))
      flags |= BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY;
    lua_pop(L, 1);
  }
  errno = 0;
  enum btrfs_util_error e = btrfs_util_create_snapshot(src, dst, flags, NULL, NULL);
  if (e != BTRFS_UTIL_OK)
    return util_fail(L, "snapshot", dst, e, errno);
  return ok(L);
}

/* btrfs.delete(path, [{recursive=false}]) -> true | nil, err, errno
** Deletes subvolume `path`, read-only or not. Without `recursive` a
** subvolume holding other subvolumes is refused (ENOTEMPTY); with it
** they go first (not atomically; needs CAP_SYS_ADMIN), read-only ones
** included (see above). Beware: the kernel does not refuse a subvolume
** with something mounted beneath it, it detaches those mounts;
** fs.remove_tree checks for them first. */
static int l_delete(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bool recursive = false;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const known[] = {"recursive", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "btrfs.delete", known);
    recursive = lua_getfield(L, 2, "recursive") != LUA_TNIL && lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  enum btrfs_util_error e = delete_subvolume(AT_FDCWD, path, recursive);
  if (e != BTRFS_UTIL_OK)
    return util_fail(L, "delete", path, e, errno);
  return ok(L);
}

/* btrfs.set_readonly(path, bool) -> true | nil, err, errno */
static int l_set_readonly(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  bool ro = lua_toboolean(L, 2);
  errno = 0;
  enum btrfs_util_error e = btrfs_util_set_subvolume_read_only(path, ro);
  if (e != BTRFS_UTIL_OK)
    return util_fail(L, "set_readonly", path, e, errno);
  return ok(L);
}

/* btrfs.is_readonly(path) -> bool | nil, err, errno */
static int l_is_readonly(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bool ro = false;
  errno = 0;
  enum btrfs_util_error e = btrfs_util_get_subvolume_read_only(path, &ro);
  if (e != BTRFS_UTIL_OK)
    return util_fail(L, "is_readonly", path, e, errno);
  lua_pushboolean(L, ro);
  return 1;
}

/* btrfs.is_subvolume(path) -> bool | nil, err, errno
** false (not an error) for an ordinary folder or a path not on btrfs;
** a missing path is an error (ENOENT). */
static int l_is_subvolume(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  errno = 0;
  enum btrfs_util_error e = btrfs_util_is_subvolume(path);
  int saved = errno;
  if (e == BTRFS_UTIL_OK || e == BTRFS_UTIL_ERROR_NOT_SUBVOLUME ||
      e == BTRFS_UTIL_ERROR_NOT_BTRFS) {
    lua_pushboolean(L, e == BTRFS_UTIL_OK);
    return 1;
  }
  return util_fail(L, "is_subvolume", path, e, saved);
}

/* btrfs.sync(path) -> true | nil, err, errno: commits the filesystem
** holding `path` to disk, and wakes btrfs's cleaner, which then drops the
** subvolumes deleted so far (BTRFS_IOC_SYNC). */
static int l_sync(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  errno = 0;
  enum btrfs_util_error e = btrfs_util_sync(path);
  if (e != BTRFS_UTIL_OK)
    return util_fail(L, "sync", path, e, errno);
  return ok(L);
}

/* btrfs.deleted(path) -> n | nil, err, errno: how many subvolumes of the
** filesystem holding `path` are deleted but not yet cleaned: their space
** comes back only once btrfs's cleaner has dropped them and the next
** transaction is committed (btrfs.sync starts both). Needs CAP_SYS_ADMIN. */
static int l_deleted(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uint64_t *ids = NULL;
  size_t n = 0;
  errno = 0;
  enum btrfs_util_error e = btrfs_util_deleted_subvolumes(path, &ids, &n);
  if (e != BTRFS_UTIL_OK)
    return util_fail(L, "deleted", path, e, errno);
  free(ids);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static const luaL_Reg btrfs_funcs[] = {
  {"create", l_create},
  {"snapshot", l_snapshot},
  {"delete", l_delete},
  {"set_readonly", l_set_readonly},
  {"is_readonly", l_is_readonly},
  {"is_subvolume", l_is_subvolume},
  {"sync", l_sync},
  {"deleted", l_deleted},
  {NULL, NULL},
};

void lx_open_btrfs(lua_State *L) {
  luaL_newlib(L, btrfs_funcs);
}

/* }====== */
