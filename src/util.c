/*
** util.c -- failures, option tables and their getters, async-signal-safe
** strings, fds over unix sockets, and a process's start time.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "luactr.h"

/* {====== failures ====== */

int lx_fail(lua_State *L, const char *what, int err) {
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", what, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

int lx_failmsg(lua_State *L, const char *msg, int err) {
  luaL_pushfail(L);
  lua_pushstring(L, msg);
  lua_pushinteger(L, err);
  return 3;
}

/* }====== */

/* {====== option tables ====== */

void lx_checkkeys(lua_State *L, int idx, const char *where,
                  const char *const known[]) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);  /* the value; keep the key for lua_next */
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: unexpected non-string key", where);
    const char *k = lua_tostring(L, -1);
    size_t i = 0;
    while (known[i] && strcmp(known[i], k) != 0)
      i++;
    if (!known[i])
      luaL_error(L, "%s: unknown field '%s'", where, k);
  }
}

bool lx_opt_get(lua_State *L, int idx, const char *key, int type,
                const char *where) {
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return false;
  }
  if (t != type)
    luaL_error(L, "%s.%s: expected %s, got %s", where, key,
               lua_typename(L, type), luaL_typename(L, -1));
  return true;
}

const char *lx_opt_str(lua_State *L, int idx, const char *key,
                       const char *where) {
  if (!lx_opt_get(L, idx, key, LUA_TSTRING, where))
    return NULL;
  const char *s = lua_tostring(L, -1);  /* anchored by the table */
  lua_pop(L, 1);
  return s;
}

bool lx_opt_bool(lua_State *L, int idx, const char *key, const char *where) {
  if (!lx_opt_get(L, idx, key, LUA_TBOOLEAN, where))
    return false;
  bool b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

lua_Integer lx_opt_int(lua_State *L, int idx, const char *key,
                       const char *where, lua_Integer dflt) {
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint)
    luaL_error(L, "%s.%s: expected an integer", where, key);
  lua_pop(L, 1);
  return v;
}

lua_Integer lx_opt_array(lua_State *L, int idx, const char *key,
                         const char *where) {
  if (!lx_opt_get(L, idx, key, LUA_TTABLE, where))
    return -1;
  return luaL_len(L, -1);
}

/* }====== */

/* {====== async-signal-safe strings ====== */

void lx_buf_init(lx_buf *b) {
  b->n = 0;
  b->s[0] = '\0';
}

void lx_buf_catn(lx_buf *b, const char *s, size_t n) {
  size_t room = sizeof(b->s) - 1 - b->n;
  if (n > room)
    n = room;
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}

void lx_buf_cat(lx_buf *b, const char *s) {
  lx_buf_catn(b, s, strlen(s));
}

void lx_buf_catint(lx_buf *b, long v) {
  char tmp[24];
  size_t i = sizeof(tmp);
  unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
  do {
    tmp[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    tmp[--i] = '-';
  lx_buf_catn(b, tmp + i, sizeof(tmp) - i);
}

bool lx_path_join(char *out, const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  while (a > 0 && dir[a - 1] == '/')
    a--;
  while (*name == '/')
    name++, b--;
  if (a + 1 + b + 1 > PATH_MAX)
    return false;
  memcpy(out, dir, a);
  out[a] = '/';
  memcpy(out + a + 1, name, b + 1);
  return true;
}

/* }====== */

/* {====== fds over unix sockets (async-signal-safe) ====== */

/* room for one fd's control message, aligned as a cmsghdr */
typedef union {
  struct cmsghdr h;
  char buf[CMSG_SPACE(sizeof(int))];
} one_fd;

ssize_t lx_send_fd(int sock, int fd) {
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  one_fd u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n;
}

ssize_t lx_recv_fd(int sock, int *fd) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  one_fd u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  ssize_t n;
  do
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  *fd = -1;
  struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
    memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return n;
}

/* }====== */

/* {====== processes ====== */

long long lx_start_time(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  int err = errno;
  close(fd);
  if (n <= 0) {
    errno = n < 0 ? err : ESRCH;
    return -1;
  }
  buf[n] = '\0';
  char *p = strrchr(buf, ')');  /* the command may hold spaces and ')' */
  for (int field = 2; p && field < 22; field++)
    p = strchr(p + 1, ' ');
  if (!p) {
    errno = EINVAL;
    return -1;
  }
  return strtoll(p + 1, NULL, 10);
}

/* }====== */
