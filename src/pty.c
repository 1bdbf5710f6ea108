/*
** pty.c -- terminals: sizes, and whether a descriptor is one.
**
** The relay between a caller's terminal and a container's pty is part of
** process:wait (spawn.c), where it shares the poll loop with signals.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "luactr.h"

/* pty.size(fd) -> rows, cols | nil, err, errno */
static int l_size(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) < 0)
    return lx_fail(L, "TIOCGWINSZ", errno);
  lua_pushinteger(L, ws.ws_row);
  lua_pushinteger(L, ws.ws_col);
  return 2;
}

/* pty.resize(fd, rows, cols) -> true | nil, err, errno */
static int l_resize(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct winsize ws = {.ws_row = (unsigned short)luaL_checkinteger(L, 2),
                       .ws_col = (unsigned short)luaL_checkinteger(L, 3)};
  if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
    return lx_fail(L, "TIOCSWINSZ", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* pty.isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static const luaL_Reg pty_funcs[] = {
  {"size", l_size},
  {"resize", l_resize},
  {"isatty", l_isatty},
  {NULL, NULL},
};

void lx_open_pty(lua_State *L) {
  luaL_newlib(L, pty_funcs);
}
