/*
** ns.c -- namespaces: unshare, setns and the clone flags.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "luactr.h"

/* OCI namespace types, in the order the runtime spec lists them. */
static const struct {
  const char *type;
  int flag;
} ns_types[] = {
  {"pid", CLONE_NEWPID},       {"network", CLONE_NEWNET},
  {"mount", CLONE_NEWNS},      {"ipc", CLONE_NEWIPC},
  {"uts", CLONE_NEWUTS},       {"user", CLONE_NEWUSER},
  {"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME},
  {NULL, 0},
};

int lx_ns_flag(const char *type) {
  for (int i = 0; ns_types[i].type; i++)
    if (strcmp(ns_types[i].type, type) == 0)
      return ns_types[i].flag;
  return 0;
}

/* Reads the flags argument: an integer, or an array of OCI type names. */
static int checkflags(lua_State *L, int arg) {
  if (lua_isinteger(L, arg))
    return (int)lua_tointeger(L, arg);
  luaL_checktype(L, arg, LUA_TTABLE);
  int flags = 0;
  lua_Integer n = luaL_len(L, arg);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, arg, i);
    const char *type = luaL_checkstring(L, -1);
    int f = lx_ns_flag(type);
    if (!f)
      luaL_error(L, "unknown namespace type '%s'", type);
    flags |= f;
    lua_pop(L, 1);
  }
  return flags;
}

/* ns.unshare(flags | {"mount", "uts", ...}) -> true | nil, err, errno */
static int l_unshare(lua_State *L) {
  if (unshare(checkflags(L, 1)) < 0)
    return lx_fail(L, "unshare", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* ns.setns(path | fd, [type]) -> true | nil, err, errno
** Joins the namespace that `path` (e.g. /proc/PID/ns/net) or an open fd
** names; `type` restricts which kind is accepted. */
static int l_setns(lua_State *L) {
  int fd, own = 0;
  int type = lua_isnoneornil(L, 2) ? 0 : lx_ns_flag(luaL_checkstring(L, 2));
  if (!lua_isnoneornil(L, 2) && !type)
    return luaL_argerror(L, 2, "unknown namespace type");
  if (lua_isinteger(L, 1)) {
    fd = (int)lua_tointeger(L, 1);
  } else {
    const char *path = luaL_checkstring(L, 1);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return lx_fail(L, path, errno);
    own = 1;
  }
  int r = setns(fd, type);
  int err = errno;
  if (own)
    close(fd);
  if (r < 0)
    return lx_fail(L, "setns", err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Writes `len` bytes of `map` ("inside outside count" lines) to
** /proc/PID/<file> ("uid_map" or "gid_map") in the single write(2) the
** kernel accepts. Real root in the parent namespace may write any map
** without first denying setgroups (that rule is only for writers without
** CAP_SETGID there). 0 or -1 with errno. */
int lx_ns_write_map(pid_t pid, const char *file, const char *map, size_t len) {
  char path[64];
  lx_buf b;
  lx_buf_init(&b);
  lx_buf_cat(&b, "/proc/");
  lx_buf_catint(&b, (long)pid);
  lx_buf_cat(&b, "/");
  lx_buf_cat(&b, file);
  if (b.n >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(path, b.s, b.n + 1);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t w = write(fd, map, len);
  int err = errno;
  close(fd);
  if (w != (ssize_t)len) {
    errno = w < 0 ? err : EIO;
    return -1;
  }
  return 0;
}

/* ns.sethostname(name) -> true | nil, err, errno */
static int l_sethostname(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  if (sethostname(name, len) < 0)
    return lx_fail(L, "sethostname", errno);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg ns_funcs[] = {
  {"unshare", l_unshare},
  {"setns", l_setns},
  {"sethostname", l_sethostname},
  {NULL, NULL},
};

void lx_open_ns(lua_State *L) {
  luaL_newlib(L, ns_funcs);
  lua_newtable(L);  /* ns.flags: OCI type -> CLONE_NEW* */
  for (int i = 0; ns_types[i].type; i++) {
    lua_pushinteger(L, ns_types[i].flag);
    lua_setfield(L, -2, ns_types[i].type);
  }
  lua_setfield(L, -2, "flags");
}
