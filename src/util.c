/*
** util.c -- failures, option tables, async-signal-safe strings, and a
** process's start time.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
