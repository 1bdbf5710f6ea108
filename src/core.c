/*
** core.c -- luactr.core: gathers each kernel area into one module.
**
**   core.ns      unshare, setns, clone flags
**   core.mount   mount, umount, bind, mask, read_in_root
**   core.spawn   the whole container start sequence, natively, with a
**                start barrier (process:start)
**   core.pty     terminal sizes and pseudo-terminals
**   core.sys     small process and clock primitives
**   core.fs      files for the image store: stat, atomic writes, locks, trees
**   core.btrfs   subvolumes: create, snapshot, delete, read-only
**   core.digest  sha256
**   core.loop    loop devices
**   core.cgroup  cgroup folders: create, write, read, kill, freeze, remove
**   core.caps    capability names and the caller's sets (libcap)
**   core.seccomp seccomp profiles compiled with libseccomp
**   core.devices device nodes; cgroup v2 device programs (eBPF)
**   core.attach  the client of a detached container's monitor
**   core.path    the file this library was loaded from
*/
#define _GNU_SOURCE
#include <dlfcn.h>

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
  lx_open_fs(L);
  lua_setfield(L, -2, "fs");
  lx_open_btrfs(L);
  lua_setfield(L, -2, "btrfs");
  lx_open_digest(L);
  lua_setfield(L, -2, "digest");
  lx_open_loop(L);
  lua_setfield(L, -2, "loop");
  lx_open_cgroup(L);
  lua_setfield(L, -2, "cgroup");
  lx_open_caps(L);
  lua_setfield(L, -2, "caps");
  lx_open_seccomp(L);
  lua_setfield(L, -2, "seccomp");
  lx_open_devices(L);
  lua_setfield(L, -2, "devices");
  lx_open_spawn(L);  /* sets core.spawn and the process metatable */
  lx_open_attach(L);  /* sets core.attach */
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  /* where this library was loaded from: its helper programs sit beside it */
  Dl_info info;
  if (dladdr((void *)luaopen_luactr_core, &info) && info.dli_fname) {
    lua_pushstring(L, info.dli_fname);
    lua_setfield(L, -2, "path");
  }
  return 1;
}
