/*
** spawn-parse.c -- core.spawn's spec and opts, checked and copied into a
** `spec` (spawn.h) in the parent, before the clone.
**
** Every field of the OCI spec that spawn is given is either acted on or
** refused: an unknown key, a wrong type or a field spawn cannot honour
** raises, naming the field ("spawn: process.cwd: expected string, got
** number"). What the child will read (strings, vectors, the compiled
** seccomp program) stays anchored on the Lua stack above the spec and
** opts for as long as l_spawn runs.
*/
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>

#include "spawn.h"

/* {====== the spec, parsed in the parent ====== */

/* Allocates `n` zeroed items in a userdata left on the stack (collected
** with the call's stack frame). */
static void *scratch(lua_State *L, size_t n, size_t size) {
  void *p = lua_newuserdatauv(L, n * size + 1, 0);
  memset(p, 0, n * size + 1);
  return p;
}

/* Reads the string array at the top of the stack into a NULL-terminated
** vector; pops it. */
static const char **strings(lua_State *L, const char *where, int *count) {
  int t = lua_gettop(L);
  lua_Integer n = luaL_len(L, t);
  const char **v = scratch(L, (size_t)n + 1, sizeof *v);
  lua_insert(L, t);  /* keep the userdata below the array */
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, t + 1, i) != LUA_TSTRING)
      luaL_error(L, "spawn: %s[%d]: expected a string", where, (int)i);
    v[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* the array; the userdata stays */
  if (count)
    *count = (int)n;
  return v;
}

static void parse_process(lua_State *L, int idx, spec *s) {
  static const char *const known[] = {
    "terminal", "consoleSize", "user", "args", "env", "cwd",
    "noNewPrivileges", "capabilities", NULL};
  lx_checkkeys(L, idx, "spawn: process", known);
  if (!lx_opt_get(L, idx, "args", LUA_TTABLE, "spawn: process"))
    luaL_error(L, "spawn: process.args is missing");
  int n;
  const char **args = strings(L, "process.args", &n);
  if (n == 0)
    luaL_error(L, "spawn: process.args is empty");
  /* the stage's arguments go before the command's (luactr-stage.h) */
  s->stage_argv = scratch(L, (size_t)n + LX_STAGE_ARGS + 1,
                          sizeof *s->stage_argv);
  memcpy(s->stage_argv + LX_STAGE_ARGS, args, (size_t)n * sizeof *args);
  s->argv = s->stage_argv + LX_STAGE_ARGS;
  if (lx_opt_get(L, idx, "env", LUA_TTABLE, "spawn: process"))
    s->envp = strings(L, "process.env", NULL);
  else
    s->envp = scratch(L, 1, sizeof *s->envp);
  s->cwd = lx_opt_str(L, idx, "cwd", "spawn: process");
  if (!s->cwd)
    s->cwd = "/";
  if (s->cwd[0] != '/')
    luaL_error(L, "spawn: process.cwd must be an absolute path");
  s->terminal = lx_opt_bool(L, idx, "terminal", "spawn: process");
  s->no_new_privs = lx_opt_bool(L, idx, "noNewPrivileges", "spawn: process");
  if (lx_opt_get(L, idx, "capabilities", LUA_TTABLE, "spawn: process")) {
    lx_caps_parse(L, lua_gettop(L), &s->caps);
    lua_pop(L, 1);
  }
  if (lx_opt_get(L, idx, "consoleSize", LUA_TTABLE, "spawn: process")) {
    int c = lua_gettop(L);
    static const char *const cs[] = {"height", "width", NULL};
    lx_checkkeys(L, c, "spawn: process.consoleSize", cs);
    const char *where = "spawn: process.consoleSize";
    s->rows = (unsigned short)lx_opt_int(L, c, "height", where, 0);
    s->cols = (unsigned short)lx_opt_int(L, c, "width", where, 0);
    lua_pop(L, 1);
    if (!s->terminal)
      luaL_error(L, "spawn: process.consoleSize needs process.terminal");
  }
  s->umask = 022;
  if (lx_opt_get(L, idx, "user", LUA_TTABLE, "spawn: process")) {
    int u = lua_gettop(L);
    static const char *const uk[] = {"uid", "gid", "umask", "additionalGids",
                                     NULL};
    lx_checkkeys(L, u, "spawn: process.user", uk);
    s->uid = (uid_t)lx_opt_int(L, u, "uid", "spawn: process.user", 0);
    s->gid = (gid_t)lx_opt_int(L, u, "gid", "spawn: process.user", 0);
    s->umask = (mode_t)lx_opt_int(L, u, "umask", "spawn: process.user", 022);
    if (lx_opt_get(L, u, "additionalGids", LUA_TTABLE, "spawn: process.user")) {
      int g = lua_gettop(L);
      s->ngroups = (int)luaL_len(L, g);
      s->groups = scratch(L, (size_t)s->ngroups, sizeof *s->groups);
      lua_insert(L, g);  /* anchor below the array */
      for (int i = 0; i < s->ngroups; i++) {
        lua_geti(L, g + 1, i + 1);
        int isint;
        s->groups[i] = (gid_t)lua_tointegerx(L, -1, &isint);
        if (!isint)
          luaL_error(L, "spawn: process.user.additionalGids[%d]: expected "
                     "an integer", i + 1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_remove(L, u);  /* the table; the groups' scratch above it stays */
  }
  lua_remove(L, idx);  /* process; the vectors above it stay */
}

static void parse_mounts(lua_State *L, int idx, spec *s) {
  s->nmounts = (int)luaL_len(L, idx);
  s->mounts = scratch(L, (size_t)s->nmounts, sizeof *s->mounts);
  lua_insert(L, idx);  /* anchor below the array */
  lua_newtable(L);     /* anchors the options' data strings */
  lua_insert(L, idx + 1);
  int anchor = idx + 1;
  idx += 2;
  static const char *const known[] = {"destination", "type", "source",
                                      "options", NULL};
  for (int i = 0; i < s->nmounts; i++) {
    lx_mount *m = &s->mounts[i];
    if (lua_geti(L, idx, i + 1) != LUA_TTABLE)
      luaL_error(L, "spawn: mounts[%d]: expected a table", i + 1);
    int t = lua_gettop(L);
    lx_checkkeys(L, t, "spawn: mounts[]", known);
    m->dest = lx_opt_str(L, t, "destination", "spawn: mounts[]");
    if (!m->dest || m->dest[0] != '/')
      luaL_error(L, "spawn: mounts[%d].destination must be an absolute path",
                 i + 1);
    m->type = lx_opt_str(L, t, "type", "spawn: mounts[]");
    m->source = lx_opt_str(L, t, "source", "spawn: mounts[]");
    lua_getfield(L, t, "options");
    lx_mount_parseopts(L, -1, m);  /* pushes the data string (or nil) */
    lua_rawseti(L, anchor, i + 1);
    lua_pop(L, 1);  /* options */
    if (m->type && strcmp(m->type, "bind") == 0) {
      m->type = NULL;
      m->bind = true;
      m->flags |= MS_BIND;
      m->remount = (m->flags & LX_REMOUNT_FLAGS) != 0;
    }
    if (m->bind && m->data)
      luaL_error(L, "spawn: mounts[%d]: unknown bind mount option in '%s'",
                 i + 1, m->data);
    if (m->bind && !m->source)
      luaL_error(L, "spawn: mounts[%d]: a bind mount needs a source", i + 1);
    if (!m->bind && !m->type)
      luaL_error(L, "spawn: mounts[%d]: type is missing", i + 1);
    if (m->type && strcmp(m->type, "tmpfs") == 0 && strcmp(m->dest, "/dev") == 0)
      s->dev_tmpfs = true;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* the array; the scratch stays */
}

/* Reads the OCI id mappings linux.<key> (an array of {containerID,
** hostID, size}) into the text /proc/PID/uid_map takes, left on the stack
** (which anchors it). NULL, nothing pushed, when the key is absent. */
static const char *idmap(lua_State *L, int idx, const char *key,
                         size_t *len) {
  if (!lx_opt_get(L, idx, key, LUA_TTABLE, "spawn: linux"))
    return NULL;
  int t = lua_gettop(L);
  lua_Integer n = luaL_len(L, t);
  if (n < 1 || n > 340)  /* the kernel takes at most 340 lines */
    luaL_error(L, "spawn: linux.%s: expected 1 to 340 mappings", key);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, t, i) != LUA_TTABLE)
      luaL_error(L, "spawn: linux.%s[%d]: expected a table", key, (int)i);
    static const char *const mk[] = {"containerID", "hostID", "size", NULL};
    int e = lua_gettop(L);
    const char *where = lua_pushfstring(L, "spawn: linux.%s[%d]", key, (int)i);
    lx_checkkeys(L, e, where, mk);
    lua_Integer v[3];
    for (int j = 0; j < 3; j++) {
      v[j] = lx_opt_int(L, e, mk[j], where, -1);
      if (v[j] < 0 || v[j] > UINT32_MAX || (j == 2 && v[j] == 0))
        luaL_error(L, "%s.%s: expected a %s", where, mk[j],
                   j == 2 ? "positive size" : "32-bit id");
    }
    lua_pop(L, 2);  /* where, the mapping */
    lua_pushfstring(L, "%I %I %I\n", v[0], v[1], v[2]);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_remove(L, t);  /* the array; the text stays */
  return lua_tolstring(L, -1, len);
}

/* linux.resources and linux.cgroupsPath are the caller's to apply: spawn
** makes no cgroup (luactr.runtime.cgroup does, with the limits, before
** spawn); it joins the folders opts.cgroups names. A spec that has them
** is taken only with opts.cgroups, which says the caller did its part. */
static void parse_linux(lua_State *L, int idx, spec *s,
                        const char **cgroup_field) {
  static const char *const known[] = {"namespaces", "maskedPaths",
                                      "readonlyPaths", "rootfsPropagation",
                                      "seccomp", "resources", "cgroupsPath",
                                      "uidMappings", "gidMappings",
                                      "devices", NULL};
  lx_checkkeys(L, idx, "spawn: linux", known);
  if (lua_getfield(L, idx, "resources") != LUA_TNIL)
    *cgroup_field = "linux.resources";
  else if (lua_getfield(L, idx, "cgroupsPath") != LUA_TNIL)
    *cgroup_field = "linux.cgroupsPath";
  lua_settop(L, idx);
  if (lx_opt_get(L, idx, "namespaces", LUA_TTABLE, "spawn: linux")) {
    int t = lua_gettop(L);
    lua_Integer n = luaL_len(L, t);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_geti(L, t, i) != LUA_TTABLE)
        luaL_error(L, "spawn: linux.namespaces[%d]: expected a table", (int)i);
      static const char *const nk[] = {"type", "path", NULL};
      lx_checkkeys(L, -1, "spawn: linux.namespaces[]", nk);
      const char *where = "spawn: linux.namespaces[]";
      const char *type = lx_opt_str(L, lua_gettop(L), "type", where);
      int flag = type ? lx_ns_flag(type) : 0;
      if (!flag)
        luaL_error(L, "spawn: linux.namespaces[%d]: unknown type '%s'",
                   (int)i, type ? type : "(none)");
      const char *path = lx_opt_str(L, lua_gettop(L), "path", where);
      if (flag == CLONE_NEWTIME || (flag == CLONE_NEWUSER && path))
        luaL_error(L, "spawn: %s the %s namespace is not supported yet",
                   path ? "joining" : "creating", type);
      if (path) {
        if (s->njoin == MAX_JOIN)
          luaL_error(L, "spawn: too many namespaces to join");
        s->join[s->njoin].type = flag;
        s->join[s->njoin++].path = path;
      } else {
        s->nsflags |= flag;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  s->uidmap = idmap(L, idx, "uidMappings", &s->uidmaplen);
  s->gidmap = idmap(L, idx, "gidMappings", &s->gidmaplen);
  if ((s->nsflags & CLONE_NEWUSER) && !(s->uidmap && s->gidmap))
    luaL_error(L, "spawn: a user namespace needs linux.uidMappings and "
               "linux.gidMappings");
  if (!(s->nsflags & CLONE_NEWUSER) && (s->uidmap || s->gidmap))
    luaL_error(L, "spawn: linux.uidMappings need a user namespace");
  if (lx_opt_get(L, idx, "maskedPaths", LUA_TTABLE, "spawn: linux"))
    s->masked = strings(L, "linux.maskedPaths", &s->nmasked);
  if (lx_opt_get(L, idx, "readonlyPaths", LUA_TTABLE, "spawn: linux"))
    s->ropaths = strings(L, "linux.readonlyPaths", &s->nro);
  s->rootprop = MS_REC | MS_PRIVATE;
  const char *prop = lx_opt_str(L, idx, "rootfsPropagation", "spawn: linux");
  if (prop) {
    static const char *const names[] = {"private", "rprivate", "slave",
                                        "rslave", "shared", "rshared",
                                        "unbindable", "runbindable", NULL};
    static const unsigned long flags[] = {
      MS_PRIVATE, MS_REC | MS_PRIVATE, MS_SLAVE, MS_REC | MS_SLAVE,
      MS_SHARED, MS_REC | MS_SHARED, MS_UNBINDABLE, MS_REC | MS_UNBINDABLE};
    int i = 0;
    while (names[i] && strcmp(names[i], prop) != 0)
      i++;
    if (!names[i])
      luaL_error(L, "spawn: linux.rootfsPropagation: unknown value '%s'", prop);
    s->rootprop = flags[i];
  }
  if (lx_opt_get(L, idx, "devices", LUA_TTABLE, "spawn: linux")) {
    lx_devices_parse(L, lua_gettop(L), &s->devices, &s->ndevices);
    lua_remove(L, -2);  /* the table; the list stays */
  }
  if (lx_opt_get(L, idx, "seccomp", LUA_TTABLE, "spawn: linux")) {
    lx_seccomp_compile(L, lua_gettop(L), s->seccomp_cache,
                       &s->seccomp);  /* pushes the BPF */
    lua_remove(L, -2);  /* the table; the program stays */
  }
  lua_remove(L, idx);  /* linux; the vectors and the program stay */
}

/* The options of core.spawn that are not the OCI spec's (see l_spawn). */
static void parse_opts(lua_State *L, int idx, spec *s, bool *cgroups_given) {
  static const char *const ok[] = {"init", "stdin", "forward_signals",
                                   "die_with_parent", "cgroups", "idmap_root",
                                   "join", "join_start", "stdio", "make_cwd",
                                   "start", "seccomp_cache", NULL};
  luaL_checktype(L, idx, LUA_TTABLE);
  lx_checkkeys(L, idx, "spawn: opts", ok);
  s->init = lx_opt_bool(L, idx, "init", "spawn: opts");
  s->forward = lx_opt_bool(L, idx, "forward_signals", "spawn: opts");
  s->pdeath = lx_opt_bool(L, idx, "die_with_parent", "spawn: opts");
  s->idmap_root = lx_opt_bool(L, idx, "idmap_root", "spawn: opts");
  s->make_cwd = lx_opt_bool(L, idx, "make_cwd", "spawn: opts");
  if (lx_opt_get(L, idx, "start", LUA_TBOOLEAN, "spawn: opts")) {
    s->start = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (s->idmap_root && !(s->nsflags & CLONE_NEWUSER))
    luaL_error(L, "spawn: opts.idmap_root needs a user namespace");
  lua_Integer n = lx_opt_array(L, idx, "cgroups", "spawn: opts");
  if (n >= 0) {
    int t = lua_gettop(L);
    if (n > MAX_CGROUPS)
      luaL_error(L, "spawn: opts.cgroups: more than %d", MAX_CGROUPS);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_geti(L, t, i) != LUA_TSTRING)
        luaL_error(L, "spawn: opts.cgroups[%d]: expected a string", (int)i);
      s->cgroups[s->ncgroups++] = lua_tostring(L, -1);  /* anchored by opts */
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *cgroups_given = true;
  }
  if (lx_opt_get(L, idx, "stdio", LUA_TTABLE, "spawn: opts")) {
    for (int i = 0; i < 3; i++) {
      lua_geti(L, -1, i + 1);
      int isint;
      lua_Integer fd = lua_tointegerx(L, -1, &isint);
      if (!isint || fd < (i == 0 ? -1 : 0))
        luaL_error(L, "spawn: opts.stdio[%d]: expected a fd", i + 1);
      s->stdio[i] = (int)fd;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (s->terminal)
      luaL_error(L, "spawn: opts.stdio and process.terminal do not go "
                 "together");
  }
  const char *in = lx_opt_str(L, idx, "stdin", "spawn: opts");
  if (in && strcmp(in, "null") == 0)
    s->stdin_null = true;
  else if (in && strcmp(in, "inherit") != 0)
    luaL_error(L, "spawn: opts.stdin: expected \"inherit\" or \"null\"");
  if (in && s->stdio[1] >= 0)
    luaL_error(L, "spawn: opts.stdin and opts.stdio do not go together");
  s->target = (pid_t)lx_opt_int(L, idx, "join", "spawn: opts", 0);
  s->target_start = lx_opt_int(L, idx, "join_start", "spawn: opts", -1);
  if (s->target_start >= 0 && !s->target)
    luaL_error(L, "spawn: opts.join_start needs opts.join");
}

/* In join mode the spec is the running container's own (its saved
** config.json, with the exec's process): what describes the container
** itself -- root, mounts, hostname, masks, devices, id maps -- was made
** by that container's spawn and is not made again; its namespaces are
** the ones entered; process (user, capabilities, no_new_privs, cwd,
** terminal) and linux.seccomp apply to the new process. */
static void check_join(lua_State *L, spec *s) {
  if (s->target < 0)
    luaL_error(L, "spawn: opts.join: expected a pid");
  if (s->init)
    luaL_error(L, "spawn: opts.init and opts.join do not go together");
  if (s->make_cwd)
    luaL_error(L, "spawn: opts.make_cwd and opts.join do not go together "
               "(an exec changes nothing in a running container)");
  if (!s->start)
    luaL_error(L, "spawn: opts.start = false and opts.join do not go "
               "together yet");
  s->dev_tmpfs = false;
}

void lx_spawn_parse(lua_State *L, spec *s) {
  static const char *const known[] = {"ociVersion", "process", "root",
                                      "hostname", "domainname", "mounts",
                                      "linux", "annotations", NULL};
  memset(s, 0, sizeof *s);
  s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;
  s->start = true;
  lua_settop(L, 2);  /* spec, opts: what parsing pushes goes above them */
  luaL_checktype(L, 1, LUA_TTABLE);
  /* ociVersion and annotations are the caller's: nothing to do */
  lx_checkkeys(L, 1, "spawn: spec", known);
  if (!lx_opt_get(L, 1, "process", LUA_TTABLE, "spawn: spec"))
    luaL_error(L, "spawn: process is missing");
  parse_process(L, lua_gettop(L), s);
  if (!lx_opt_get(L, 1, "root", LUA_TTABLE, "spawn: spec"))
    luaL_error(L, "spawn: root is missing");
  static const char *const rk[] = {"path", "readonly", NULL};
  lx_checkkeys(L, -1, "spawn: root", rk);
  s->root = lx_opt_str(L, lua_gettop(L), "path", "spawn: root");
  if (!s->root)
    luaL_error(L, "spawn: root.path is missing");
  s->root_ro = lx_opt_bool(L, lua_gettop(L), "readonly", "spawn: root");
  lua_pop(L, 1);
  s->hostname = lx_opt_str(L, 1, "hostname", "spawn: spec");
  s->domainname = lx_opt_str(L, 1, "domainname", "spawn: spec");
  if (lua_type(L, 2) == LUA_TTABLE)  /* before linux.seccomp is compiled */
    s->seccomp_cache = lx_opt_str(L, 2, "seccomp_cache", "spawn: opts");
  const char *cgroup_field = NULL;
  if (lx_opt_get(L, 1, "linux", LUA_TTABLE, "spawn: spec"))
    parse_linux(L, lua_gettop(L), s, &cgroup_field);
  if (lx_opt_get(L, 1, "mounts", LUA_TTABLE, "spawn: spec"))
    parse_mounts(L, lua_gettop(L), s);
  /* Without these namespaces the child would change the host itself. */
  if (!(s->nsflags & CLONE_NEWNS))
    luaL_error(L, "spawn: a container needs its own mount namespace");
  if ((s->hostname || s->domainname) && !(s->nsflags & CLONE_NEWUTS))
    luaL_error(L, "spawn: hostname needs its own uts namespace");
  bool cgroups_given = false;
  if (!lua_isnoneornil(L, 2))
    parse_opts(L, 2, s, &cgroups_given);
  if (cgroup_field && !cgroups_given)
    luaL_error(L, "spawn: %s: spawn makes no cgroup; make it first "
               "(luactr.runtime.cgroup) and give its folders as opts.cgroups",
               cgroup_field);
  if (s->target)
    check_join(L, s);
}

/* }====== */
