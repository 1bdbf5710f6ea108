/*
** pty.c -- terminals: sizes, and whether a descriptor is one.
**
** The relay between a caller's terminal and a container's pty is part of
** process:wait (process.c), through the one relay (relay.c).
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

/* pty.isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

static const luaL_Reg pty_funcs[] = {
  {"size", l_size},
  {"isatty", l_isatty},
  {NULL, NULL},
};

void lx_open_pty(lua_State *L) {
  luaL_newlib(L, pty_funcs);
}
