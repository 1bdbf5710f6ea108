/*
** caps.c -- capability sets (libcap).
**
** The parent reads an OCI `process.capabilities` table into bit masks with
** libcap's names (lx_caps_parse); the child applies them with raw system
** calls only (prctl, capset), which are async-signal-safe. The order is
** spawn's business: the bounding set goes while the child is still fully
** privileged, the other sets after it has become the final user.
**
**   caps.names()  -> every capability this kernel knows, as OCI names
**   caps.get()    -> the calling process's five sets, as OCI names
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "luactr.h"

/* {====== names ====== */

/* The kernel's capability count: libcap asks the running kernel. */
static int cap_count(void) {
  int n = (int)cap_max_bits();
  return n > 64 ? 64 : n;
}

/* Pushes the OCI name of `cap` ("CAP_CHOWN"): libcap's name, upper-cased.
** A capability newer than libcap is named by its number. */
static void push_name(lua_State *L, int cap) {
  char *name = cap_to_name((cap_value_t)cap);
  if (!name) {
    lua_pushfstring(L, "%d", cap);
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (const char *p = name; *p; p++)
    luaL_addchar(&b, (char)toupper((unsigned char)*p));
  cap_free(name);
  luaL_pushresult(&b);
}

/* The number of the capability named `name` ("CAP_CHOWN", as libcap
** spells it in any case), or -1. */
static int cap_number(const char *name) {
  cap_value_t v;
  if (cap_from_name(name, &v) < 0 || v < 0 || v >= cap_count())
    return -1;
  return (int)v;
}

/* }====== */

/* {====== the spec, in the parent ====== */

/* Reads the array of names at t[key] (t at `idx`) into a mask; raises on
** a name the kernel does not know: a typo must not silently widen or
** narrow a container's powers. */
static uint64_t parse_set(lua_State *L, int idx, const char *key) {
  uint64_t mask = 0;
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (t != LUA_TTABLE)
    luaL_error(L, "spawn: process.capabilities.%s: expected an array", key);
  lua_Integer n = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, -1, i) != LUA_TSTRING)
      luaL_error(L, "spawn: process.capabilities.%s[%d]: expected a string",
                 key, (int)i);
    const char *name = lua_tostring(L, -1);
    int cap = cap_number(name);
    if (cap < 0)
      luaL_error(L, "spawn: process.capabilities.%s: unknown capability '%s'",
                 key, name);
    mask |= (uint64_t)1 << cap;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return mask;
}

void lx_caps_parse(lua_State *L, int idx, lx_caps *c) {
  static const char *const known[] = {"bounding", "effective", "permitted",
                                      "inheritable", "ambient", NULL};
  lx_checkkeys(L, idx, "spawn: process.capabilities", known);
  c->set = true;
  c->count = cap_count();
  c->bounding = parse_set(L, idx, "bounding");
  c->effective = parse_set(L, idx, "effective");
  c->permitted = parse_set(L, idx, "permitted");
  c->inheritable = parse_set(L, idx, "inheritable");
  c->ambient = parse_set(L, idx, "ambient");
}

/* }====== */

/* {====== the child (async-signal-safe only) ====== */

int lx_caps_drop_bounding(const lx_caps *c) {
  for (int cap = 0; cap < c->count; cap++)
    if (!(c->bounding & ((uint64_t)1 << cap)) &&
        prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
      return -1;
  return 0;
}

int lx_caps_set(const lx_caps *c) {
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3,
                                       .pid = 0};
  struct __user_cap_data_struct d[2];
  d[0].effective = (uint32_t)c->effective;
  d[1].effective = (uint32_t)(c->effective >> 32);
  d[0].permitted = (uint32_t)c->permitted;
  d[1].permitted = (uint32_t)(c->permitted >> 32);
  d[0].inheritable = (uint32_t)c->inheritable;
  d[1].inheritable = (uint32_t)(c->inheritable >> 32);
  if (syscall(SYS_capset, &h, d) < 0)
    return -1;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
    return c->ambient ? -1 : 0;  /* a kernel without ambient sets */
  for (int cap = 0; cap < c->count; cap++)
    if ((c->ambient & ((uint64_t)1 << cap)) &&
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
      return -1;
  return 0;
}

/* }====== */

/* {====== Lua bindings ====== */

static void push_mask(lua_State *L, uint64_t mask, int count) {
  lua_createtable(L, 0, 0);
  int n = 0;
  for (int cap = 0; cap < count; cap++)
    if (mask & ((uint64_t)1 << cap)) {
      push_name(L, cap);
      lua_rawseti(L, -2, ++n);
    }
}

/* caps.names() -> {"CAP_CHOWN", ...}: every capability of this kernel,
** by number. */
static int l_names(lua_State *L) {
  int count = cap_count();
  lua_createtable(L, count, 0);
  for (int cap = 0; cap < count; cap++) {
    push_name(L, cap);
    lua_rawseti(L, -2, cap + 1);
  }
  return 1;
}

/* caps.get() -> {bounding=, effective=, permitted=, inheritable=, ambient=}
** | nil, err, errno: the calling process's sets, in the OCI shape. */
static int l_get(lua_State *L) {
  int count = cap_count();
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3,
                                       .pid = 0};
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) < 0)
    return lx_fail(L, "capget", errno);
  uint64_t bounding = 0, ambient = 0;
  for (int cap = 0; cap < count; cap++) {
    if (cap_get_bound((cap_value_t)cap) > 0)
      bounding |= (uint64_t)1 << cap;
    if (cap_get_ambient((cap_value_t)cap) > 0)
      ambient |= (uint64_t)1 << cap;
  }
  lua_createtable(L, 0, 5);
  push_mask(L, bounding, count);
  lua_setfield(L, -2, "bounding");
  push_mask(L, d[0].effective | (uint64_t)d[1].effective << 32, count);
  lua_setfield(L, -2, "effective");
  push_mask(L, d[0].permitted | (uint64_t)d[1].permitted << 32, count);
  lua_setfield(L, -2, "permitted");
  push_mask(L, d[0].inheritable | (uint64_t)d[1].inheritable << 32, count);
  lua_setfield(L, -2, "inheritable");
  push_mask(L, ambient, count);
  lua_setfield(L, -2, "ambient");
  return 1;
}

static const luaL_Reg caps_funcs[] = {
  {"names", l_names},
  {"get", l_get},
  {NULL, NULL},
};

void lx_open_caps(lua_State *L) {
  luaL_newlib(L, caps_funcs);
}

/* }====== */
