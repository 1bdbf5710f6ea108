/*
** core.c -- luactr.core: gathers each kernel area into one module.
**
**   core.ns      unshare, setns, clone flags
**   core.mount   mount, umount, pivot_root, bind, mask, readonly
**   core.spawn   the whole container start sequence, natively
**   core.pty     terminal sizes and pseudo-terminals
**   core.sys     small process and clock primitives
*/
#include "luactr.h"

int luaopen_luactr_core(lua_State *L);

int luaopen_luactr_core(lua_State *L) {
  lua_newtable(L);
  lx_open_ns(L);
  lua_setfield(L, -2, "ns");
  lx_open_mount(L);
  lua_setfield(L, -2, "mount");
  lx_open_pty(L);
  lua_setfield(L, -2, "pty");
  lx_open_sys(L);
  lua_setfield(L, -2, "sys");
  lx_open_spawn(L);  /* sets core.spawn and the process metatable */
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
