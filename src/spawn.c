/*
** spawn.c -- the container start sequence, from clone to execve, natively.
**
** core.spawn(spec, opts) takes an OCI runtime spec as a Lua table, checks
** and copies everything it needs into a C struct in the parent, then
** clones a child into new namespaces. The child runs the whole sequence
** (mounts, /dev, pivot_root, masks, user, capabilities, no_new_privs)
** with no Lua in between and only async-signal-safe calls, then execs
** luactr-stage from a sealed memfd copy, which installs the seccomp
** filters (compiled in the parent) and execs the command: the process
** that the container could see is never backed by a host file
** (luactr-stage.c says why). A failing step is written to a pipe as
** (errno, "step detail"); the command's execve closes the pipe, so the
** parent knows the outcome when its read ends.
**
** It returns a process handle (luactr.process): wait, kill, resize.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <grp.h>
#include <termios.h>
#include <unistd.h>

#include "luactr.h"
#include "luactr-stage.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_JOIN 8
#define MAX_CGROUPS 16

/* {====== the spec, parsed in the parent ====== */

#define STAGE_ARGS 6             /* before the command's, see luactr-stage.h */

typedef struct spec {
  const char **argv, **envp;     /* NULL-terminated */
  const char **stage_argv;       /* STAGE_ARGS slots, then argv */
  const char *cwd;
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  int ngroups;
  mode_t umask;
  bool terminal, no_new_privs;
  lx_caps caps;                  /* process.capabilities (caps.set if any) */
  lx_seccomp seccomp;            /* linux.seccomp, compiled (seccomp.set) */
  unsigned short rows, cols;     /* console size, 0 when not given */
  const char *root;
  bool root_ro;
  const char *hostname, *domainname;
  int nsflags;                   /* namespaces to create */
  const char *uidmap, *gidmap;   /* user namespace: the maps the parent */
  size_t uidmaplen, gidmaplen;   /* writes, "inside outside count" lines */
  bool idmap_root;               /* root: an idmapped mount (opts) */
  int syncfd;                    /* user namespace: the child waits here */
  int njoin;                     /* namespaces to join, by path */
  struct { int type; const char *path; } join[MAX_JOIN];
  unsigned long rootprop;
  lx_mount *mounts;
  int nmounts;
  bool dev_tmpfs;                /* /dev is ours to fill */
  lx_device *devices;            /* linux.devices, made after /dev */
  int ndevices;
  const char **masked, **ropaths;
  int nmasked, nro;
  /* from opts, not the OCI spec */
  bool init;                     /* the stage as PID 1, the command its child */
  bool stdin_null, forward, pdeath;
  int stdio[3];                  /* fds to become 0, 1, 2, or -1 */
  const char *cgroups[MAX_CGROUPS];  /* cgroup folders to join */
  int ncgroups;
  int cgfds[MAX_CGROUPS];        /* their cgroup.procs, opened by spawn */
  pid_t target;                  /* join mode: the running container's PID 1 */
  long long target_start;        /* its start time (/proc stat), -1: unchecked */
  int targetfd;                  /* its pidfd, opened by spawn */
  /* set up by spawn */
  int errfd, sockfd;
  int stagefd;                   /* the sealed copy of luactr-stage */
  int filterfd;                  /* the seccomp filters for it, or -1 */
  int barrier;                   /* --init: ends when PID 1 is the stage */
  sigset_t childmask;            /* the mask the command starts with */
} spec;

/* Allocates `n` zeroed items in a userdata left on the stack (collected
** with the call's stack frame). */
static void *scratch(lua_State *L, size_t n, size_t size) {
  void *p = lua_newuserdatauv(L, n * size + 1, 0);
  memset(p, 0, n * size + 1);
  return p;
}

/* Pushes t[key] (idx absolute) and checks its type; returns false when
** absent. `where` names the field for the error. */
static bool getfield(lua_State *L, int idx, const char *key, int type,
                     const char *where) {
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return false;
  }
  if (t != type)
    luaL_error(L, "spawn: %s.%s: expected %s, got %s", where, key,
               lua_typename(L, type), luaL_typename(L, -1));
  return true;
}

static const char *optstr(lua_State *L, int idx, const char *key,
                          const char *where) {
  if (!getfield(L, idx, key, LUA_TSTRING, where))
    return NULL;
  const char *s = lua_tostring(L, -1);  /* anchored by the spec table */
  lua_pop(L, 1);
  return s;
}

static bool optbool(lua_State *L, int idx, const char *key, const char *where) {
  if (!getfield(L, idx, key, LUA_TBOOLEAN, where))
    return false;
  bool b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

static lua_Integer optint(lua_State *L, int idx, const char *key,
                          const char *where, lua_Integer dflt) {
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint)
    luaL_error(L, "spawn: %s.%s: expected an integer", where, key);
  lua_pop(L, 1);
  return v;
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
  if (!getfield(L, idx, "args", LUA_TTABLE, "process"))
    luaL_error(L, "spawn: process.args is missing");
  int n;
  const char **args = strings(L, "process.args", &n);
  if (n == 0)
    luaL_error(L, "spawn: process.args is empty");
  /* the stage's arguments go before the command's (luactr-stage.h) */
  s->stage_argv = scratch(L, (size_t)n + STAGE_ARGS + 1, sizeof *s->stage_argv);
  memcpy(s->stage_argv + STAGE_ARGS, args, (size_t)n * sizeof *args);
  s->argv = s->stage_argv + STAGE_ARGS;
  if (getfield(L, idx, "env", LUA_TTABLE, "process"))
    s->envp = strings(L, "process.env", NULL);
  else
    s->envp = scratch(L, 1, sizeof *s->envp);
  s->cwd = optstr(L, idx, "cwd", "process");
  if (!s->cwd)
    s->cwd = "/";
  if (s->cwd[0] != '/')
    luaL_error(L, "spawn: process.cwd must be an absolute path");
  s->terminal = optbool(L, idx, "terminal", "process");
  s->no_new_privs = optbool(L, idx, "noNewPrivileges", "process");
  if (getfield(L, idx, "capabilities", LUA_TTABLE, "process")) {
    lx_caps_parse(L, lua_gettop(L), &s->caps);
    lua_pop(L, 1);
  }
  if (getfield(L, idx, "consoleSize", LUA_TTABLE, "process")) {
    int c = lua_gettop(L);
    static const char *const cs[] = {"height", "width", NULL};
    lx_checkkeys(L, c, "spawn: process.consoleSize", cs);
    s->rows = (unsigned short)optint(L, c, "height", "consoleSize", 0);
    s->cols = (unsigned short)optint(L, c, "width", "consoleSize", 0);
    lua_pop(L, 1);
  }
  s->umask = 022;
  if (getfield(L, idx, "user", LUA_TTABLE, "process")) {
    int u = lua_gettop(L);
    static const char *const uk[] = {"uid", "gid", "umask", "additionalGids",
                                     NULL};
    lx_checkkeys(L, u, "spawn: process.user", uk);
    s->uid = (uid_t)optint(L, u, "uid", "process.user", 0);
    s->gid = (gid_t)optint(L, u, "gid", "process.user", 0);
    s->umask = (mode_t)optint(L, u, "umask", "process.user", 022);
    if (getfield(L, u, "additionalGids", LUA_TTABLE, "process.user")) {
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
    m->dest = optstr(L, t, "destination", "mounts[]");
    if (!m->dest || m->dest[0] != '/')
      luaL_error(L, "spawn: mounts[%d].destination must be an absolute path",
                 i + 1);
    m->type = optstr(L, t, "type", "mounts[]");
    m->source = optstr(L, t, "source", "mounts[]");
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
  if (!getfield(L, idx, key, LUA_TTABLE, "linux"))
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
    const char *where = lua_pushfstring(L, "spawn: linux.%s[%d]", key, (int)i);
    lx_checkkeys(L, -2, where, mk);
    lua_pop(L, 1);
    lua_Integer v[3];
    for (int j = 0; j < 3; j++) {
      v[j] = optint(L, lua_gettop(L), mk[j], key, -1);
      if (v[j] < 0 || v[j] > UINT32_MAX || (j == 2 && v[j] == 0))
        luaL_error(L, "spawn: linux.%s[%d].%s: expected a %s", key, (int)i,
                   mk[j], j == 2 ? "positive size" : "32-bit id");
    }
    lua_pop(L, 1);
    lua_pushfstring(L, "%I %I %I\n", v[0], v[1], v[2]);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_remove(L, t);  /* the array; the text stays */
  return lua_tolstring(L, -1, len);
}

static void parse_linux(lua_State *L, int idx, spec *s) {
  /* resources and cgroupsPath are applied before spawn, by luactr.cgroup */
  static const char *const known[] = {"namespaces", "maskedPaths",
                                      "readonlyPaths", "rootfsPropagation",
                                      "seccomp", "resources", "cgroupsPath",
                                      "uidMappings", "gidMappings",
                                      "devices", NULL};
  lx_checkkeys(L, idx, "spawn: linux", known);
  if (getfield(L, idx, "namespaces", LUA_TTABLE, "linux")) {
    int t = lua_gettop(L);
    lua_Integer n = luaL_len(L, t);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_geti(L, t, i) != LUA_TTABLE)
        luaL_error(L, "spawn: linux.namespaces[%d]: expected a table", (int)i);
      static const char *const nk[] = {"type", "path", NULL};
      lx_checkkeys(L, -1, "spawn: linux.namespaces[]", nk);
      const char *type = optstr(L, lua_gettop(L), "type", "namespaces[]");
      int flag = type ? lx_ns_flag(type) : 0;
      if (!flag)
        luaL_error(L, "spawn: linux.namespaces[%d]: unknown type '%s'",
                   (int)i, type ? type : "(none)");
      const char *path = optstr(L, lua_gettop(L), "path", "namespaces[]");
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
  if (getfield(L, idx, "maskedPaths", LUA_TTABLE, "linux"))
    s->masked = strings(L, "linux.maskedPaths", &s->nmasked);
  if (getfield(L, idx, "readonlyPaths", LUA_TTABLE, "linux"))
    s->ropaths = strings(L, "linux.readonlyPaths", &s->nro);
  s->rootprop = MS_REC | MS_PRIVATE;
  const char *prop = optstr(L, idx, "rootfsPropagation", "linux");
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
  if (getfield(L, idx, "devices", LUA_TTABLE, "linux")) {
    lx_devices_parse(L, lua_gettop(L), &s->devices, &s->ndevices);
    lua_remove(L, -2);  /* the table; the list stays */
  }
  if (getfield(L, idx, "seccomp", LUA_TTABLE, "linux")) {
    lx_seccomp_compile(L, lua_gettop(L), &s->seccomp);  /* pushes the BPF */
    lua_remove(L, -2);  /* the table; the program stays */
  }
  lua_remove(L, idx);  /* linux; the vectors and the program stay */
}

static void parse_spec(lua_State *L, spec *s) {
  static const char *const known[] = {"ociVersion", "process", "root",
                                      "hostname", "domainname", "mounts",
                                      "linux", "annotations", NULL};
  memset(s, 0, sizeof *s);
  s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;
  lua_settop(L, 2);  /* spec, opts: what parsing pushes goes above them */
  luaL_checktype(L, 1, LUA_TTABLE);
  lx_checkkeys(L, 1, "spawn: spec", known);
  if (!getfield(L, 1, "process", LUA_TTABLE, "spec"))
    luaL_error(L, "spawn: process is missing");
  parse_process(L, lua_gettop(L), s);
  if (!getfield(L, 1, "root", LUA_TTABLE, "spec"))
    luaL_error(L, "spawn: root is missing");
  static const char *const rk[] = {"path", "readonly", NULL};
  lx_checkkeys(L, -1, "spawn: root", rk);
  s->root = optstr(L, lua_gettop(L), "path", "root");
  if (!s->root)
    luaL_error(L, "spawn: root.path is missing");
  s->root_ro = optbool(L, lua_gettop(L), "readonly", "root");
  lua_pop(L, 1);
  s->hostname = optstr(L, 1, "hostname", "spec");
  s->domainname = optstr(L, 1, "domainname", "spec");
  if (getfield(L, 1, "linux", LUA_TTABLE, "spec"))
    parse_linux(L, lua_gettop(L), s);
  if (getfield(L, 1, "mounts", LUA_TTABLE, "spec"))
    parse_mounts(L, lua_gettop(L), s);
  /* Without these namespaces the child would change the host itself. */
  if (!(s->nsflags & CLONE_NEWNS))
    luaL_error(L, "spawn: a container needs its own mount namespace");
  if ((s->hostname || s->domainname) && !(s->nsflags & CLONE_NEWUTS))
    luaL_error(L, "spawn: hostname needs its own uts namespace");
  if (!lua_isnoneornil(L, 2)) {
    static const char *const ok[] = {"init", "stdin", "forward_signals",
                                      "die_with_parent", "cgroups", "idmap_root",
                                      "join", "stdio",
                                      "join_start", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "spawn: opts", ok);
    s->init = optbool(L, 2, "init", "opts");
    s->forward = optbool(L, 2, "forward_signals", "opts");
    s->pdeath = optbool(L, 2, "die_with_parent", "opts");
    s->idmap_root = optbool(L, 2, "idmap_root", "opts");
    if (s->idmap_root && !(s->nsflags & CLONE_NEWUSER))
      luaL_error(L, "spawn: opts.idmap_root needs a user namespace");
    if (getfield(L, 2, "cgroups", LUA_TTABLE, "opts")) {
      int t = lua_gettop(L);
      lua_Integer n = luaL_len(L, t);
      if (n > MAX_CGROUPS)
        luaL_error(L, "spawn: opts.cgroups: more than %d", MAX_CGROUPS);
      for (lua_Integer i = 1; i <= n; i++) {
        if (lua_geti(L, t, i) != LUA_TSTRING)
          luaL_error(L, "spawn: opts.cgroups[%d]: expected a string", (int)i);
        s->cgroups[s->ncgroups++] = lua_tostring(L, -1);  /* anchored by opts */
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    if (getfield(L, 2, "stdio", LUA_TTABLE, "opts")) {
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
    }
    const char *in = optstr(L, 2, "stdin", "opts");
    if (in && strcmp(in, "null") == 0)
      s->stdin_null = true;
    else if (in && strcmp(in, "inherit") != 0)
      luaL_error(L, "spawn: opts.stdin: expected \"inherit\" or \"null\"");
    s->target = (pid_t)optint(L, 2, "join", "opts", 0);
    s->target_start = optint(L, 2, "join_start", "opts", -1);
  }
  if (s->target) {
    /* join mode: the container's root, mounts and /dev are made already */
    if (s->target < 0)
      luaL_error(L, "spawn: opts.join: expected a pid");
    if (s->init)
      luaL_error(L, "spawn: opts.init and opts.join do not go together");
    s->dev_tmpfs = false;
  }
}

/* }====== */

/* {====== the child (async-signal-safe only) ====== */

/* Sends (errno, "step detail") to the parent and exits. */
static void __attribute__((noreturn))
die(const spec *s, const char *step, const char *detail) {
  lx_report r;
  lx_buf b;
  r.err = errno;
  lx_buf_init(&b);
  lx_buf_cat(&b, step);
  if (detail) {
    lx_buf_cat(&b, " ");
    lx_buf_cat(&b, detail);
  }
  r.len = (int)(b.n < sizeof r.msg ? b.n : sizeof r.msg - 1);
  memcpy(r.msg, b.s, (size_t)r.len);
  r.msg[r.len] = '\0';
  ssize_t w;
  do
    w = write(s->errfd, &r, offsetof(lx_report, msg) + (size_t)r.len + 1);
  while (w < 0 && errno == EINTR);
  _exit(125);
}

/* One of the default device nodes in the container's /dev (`dev`). In a
** user namespace the kernel refuses mknod (and a node on a filesystem
** mounted there would not open anyway), so the host's own node is bind
** mounted onto an empty file instead, as crun does. */
static void make_device(const spec *s, int rootfd, int dev, const char *name,
                        dev_t rdev) {
  if (!(s->nsflags & CLONE_NEWUSER)) {
    if (mknodat(dev, name, S_IFCHR | 0666, rdev) < 0 && errno != EEXIST)
      die(s, "mknod /dev/", name);
    return;
  }
  lx_buf path;
  lx_buf_init(&path);
  lx_buf_cat(&path, "/dev/");
  lx_buf_cat(&path, name);
  lx_mount m;
  memset(&m, 0, sizeof m);
  m.dest = m.source = path.s;  /* the host's /dev/NAME onto the container's */
  m.bind = true;
  m.flags = MS_BIND;
  if (lx_mount_at(&m, rootfd, path.s) < 0)
    die(s, "bind", path.s);
}

static void setup_devices(const spec *s, int rootfd) {
  static const struct { const char *name; unsigned maj, min; } devs[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
    {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
  };
  static const struct { const char *name, *to; } links[] = {
    {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
    {"ptmx", "pts/ptmx"}, {"core", "/proc/kcore"},
  };
  int dev = lx_open_in_root(rootfd, "/dev", false, false);
  if (dev < 0)
    die(s, "open", "/dev");
  for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
    make_device(s, rootfd, dev, devs[i].name,
                makedev(devs[i].maj, devs[i].min));
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    if (symlinkat(links[i].to, dev, links[i].name) < 0 && errno != EEXIST)
      die(s, "symlink /dev/", links[i].name);
  close(dev);
}

static void loopback_up(const spec *s) {
  struct ifreq ifr;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die(s, "socket", "lo");
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    die(s, "ioctl SIOCGIFFLAGS", "lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
    die(s, "ioctl SIOCSIFFLAGS", "lo");
  close(fd);
}

/* Moves into the new root: the old root is detached, never unmounted in a
** way the host could see (everything is private by now). */
static void enter_root(const spec *s, int rootfd) {
  if (fchdir(rootfd) < 0)
    die(s, "chdir", s->root);
  if (syscall(SYS_pivot_root, ".", ".") < 0)
    die(s, "pivot_root", s->root);
  /* the old root is stacked on "." now: lazily detach it */
  if (umount2(".", MNT_DETACH) < 0)
    die(s, "umount", "old root");
  if (chdir("/") < 0)
    die(s, "chdir", "/");
}

/* Opens a pseudo-terminal in the container's own devpts, sends the master
** to the parent and returns the slave. */
static int open_console(const spec *s) {
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    die(s, "open", "/dev/ptmx");
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
    die(s, "unlockpt", "/dev/ptmx");
  if (s->rows && s->cols) {
    struct winsize ws = {.ws_row = s->rows, .ws_col = s->cols};
    if (ioctl(master, TIOCSWINSZ, &ws) < 0)
      die(s, "ioctl TIOCSWINSZ", "/dev/ptmx");
  }
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0)
    die(s, "open", "pty slave");
  if (s->dev_tmpfs) {
    /* /dev/console is the container's terminal, as in runc and Docker */
    unsigned n;
    lx_buf p;
    if (ioctl(master, TIOCGPTN, &n) < 0)
      die(s, "ioctl TIOCGPTN", "/dev/ptmx");
    lx_buf_init(&p);
    lx_buf_cat(&p, "/dev/pts/");
    lx_buf_catint(&p, (long)n);
    int c = open("/dev/console", O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                 0600);
    if (c < 0)
      die(s, "create", "/dev/console");
    close(c);
    if (mount(p.s, "/dev/console", NULL, MS_BIND, NULL) < 0)
      die(s, "bind /dev/console", p.s);
  }
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &master, sizeof(int));
  if (sendmsg(s->sockfd, &msg, MSG_NOSIGNAL) < 0)
    die(s, "send", "pty master");
  close(master);
  return slave;
}

/* Closes every fd of ours but 0, 1, 2 and the `n` in `keep` (-1: none).
** Async-signal-safe. */
static int close_others(const int *keep, int n) {
  int k[4], m = 0;
  for (int i = 0; i < n && m < 4; i++)
    if (keep[i] > 2)
      k[m++] = keep[i];
  for (int i = 1; i < m; i++)  /* sorted, for the gaps between them */
    for (int j = i; j > 0 && k[j - 1] > k[j]; j--) {
      int t = k[j];
      k[j] = k[j - 1];
      k[j - 1] = t;
    }
  unsigned from = 3;
  for (int i = 0; i < m; i++) {
    if ((unsigned)k[i] > from &&
        syscall(SYS_close_range, from, (unsigned)k[i] - 1, 0) < 0)
      return -1;
    from = (unsigned)k[i] + 1;
  }
  return (int)syscall(SYS_close_range, from, ~0U, 0);
}

/* The seccomp filters' fd stays open across the stage's exec. */
static void keep_filters(const spec *s) {
  if (s->filterfd >= 0 && fcntl(s->filterfd, F_SETFD, 0) < 0)
    die(s, "fcntl", "seccomp filters");
}

/* Execs luactr-stage from its sealed copy (see luactr-stage.c), in
** `mode`, with `flags`; it finds and execs the command, in a new process
** in join mode. The process's exe is that copy from here on: no file of
** the host's is reachable through /proc/PID/exe, even by a command whose
** first line is "#!/proc/self/exe". */
static void __attribute__((noreturn))
exec_stage(const spec *s, const char *mode, const char *flags) {
  lx_buf errfd, filterfd;
  lx_buf_init(&errfd);
  lx_buf_init(&filterfd);
  lx_buf_catint(&errfd, s->errfd);
  if (s->filterfd >= 0)
    lx_buf_catint(&filterfd, s->filterfd);
  else
    lx_buf_cat(&filterfd, "-");
  const char *path = "";
  if (!strchr(s->argv[0], '/')) {
    path = DEFAULT_PATH;
    for (int i = 0; s->envp[i]; i++)
      if (strncmp(s->envp[i], "PATH=", 5) == 0)
        path = s->envp[i] + 5;
  }
  const char **argv = s->stage_argv;
  argv[0] = "luactr-stage";
  argv[1] = mode;
  argv[2] = errfd.s;
  argv[3] = filterfd.s;
  argv[4] = *flags ? flags : "-";
  argv[5] = path;
  /* the error pipe must reach the stage, which says why an exec failed;
  ** it closes it on the command's exec */
  if (fcntl(s->errfd, F_SETFD, 0) < 0)
    die(s, "fcntl", "error pipe");
  keep_filters(s);
  syscall(SYS_execveat, s->stagefd, "", argv, s->envp, AT_EMPTY_PATH);
  die(s, "exec", "luactr-stage");
}

/* --init: PID 1 becomes the stage's init, the parent of `child` (the
** command, forked already), as "luactr-init PID" (what ps shows), with the
** seccomp filters on fd 3 when there are any and `barrier`, which the
** command waits on, on fd 4: the init closes it once its filters are in
** (its error pipe closes on this exec; the command's exec alone ends it). */
static void __attribute__((noreturn))
exec_init(const spec *s, pid_t child, int barrier) {
  /* out of the way of fds 3 and 4 first, then into them (dup2 clears
  ** close-on-exec on the copy) */
  int stage = fcntl(s->stagefd, F_DUPFD_CLOEXEC, 5);
  int filters = s->filterfd < 0 ? -1 : fcntl(s->filterfd, F_DUPFD_CLOEXEC, 5);
  int wait = fcntl(barrier, F_DUPFD_CLOEXEC, 5);
  if (stage < 0 || wait < 0 || (s->filterfd >= 0 && filters < 0))
    die(s, "fcntl", "luactr-init");
  close(LX_INIT_FILTERS_FD);
  if (filters >= 0 && dup2(filters, LX_INIT_FILTERS_FD) < 0)
    die(s, "dup2", "seccomp filters");
  if (dup2(wait, LX_INIT_BARRIER_FD) < 0)
    die(s, "dup2", "init barrier");
  lx_buf pid;
  lx_buf_init(&pid);
  lx_buf_catint(&pid, (long)child);
  const char *argv[] = {"luactr-init", pid.s, NULL};
  const char *envp[] = {NULL};
  syscall(SYS_execveat, stage, "", argv, envp, AT_EMPTY_PATH);
  die(s, "exec", "luactr-init");
}

/* Becomes the spec's user with the spec's capabilities, in the order the
** kernel needs (as runc and crun do): a filter without no_new_privs must
** be installed while CAP_SYS_ADMIN is still held; the bounding set is
** dropped while the process is still fully privileged; keep-caps carries
** the permitted set across setuid to a non-root user, and capset then
** trims the sets to the spec's, ambient last. */
static void become_user(const spec *s) {
  if (s->seccomp.set && !s->no_new_privs && lx_seccomp_load(&s->seccomp) < 0)
    die(s, "seccomp", NULL);
  if (s->caps.set && lx_caps_drop_bounding(&s->caps) < 0)
    die(s, "prctl", "capability bounding set");
  if (s->caps.set && s->uid != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
    die(s, "prctl", "keep capabilities");
  if (setgroups((size_t)s->ngroups, s->groups) < 0)
    die(s, "setgroups", NULL);
  if (setgid(s->gid) < 0)
    die(s, "setgid", NULL);
  if (setuid(s->uid) < 0)
    die(s, "setuid", NULL);
  if (s->caps.set && lx_caps_set(&s->caps) < 0)
    die(s, "capset", NULL);
  /* a change of user or group clears the parent-death signal: arm it
  ** again */
  if (s->pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    die(s, "prctl", "pdeathsig");
}

/* no_new_privs, the last step before the stage's exec; the stage installs
** the seccomp filters next (see exec_stage), so that they need only allow
** what the command itself does. (Without no_new_privs the filters are in
** place already: become_user installed them while it could.) */
static void lock_down(const spec *s) {
  if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    die(s, "prctl", "no_new_privs");
}

/* After chdir: is the working directory beneath our root? A link in the
** container to /proc/self/fd/N, N a folder of the host's, would have taken
** it out (CVE-2024-21626); we hold no such fd by now, and this proves it
** (the kernel's getcwd says "(unreachable)" for a folder outside). */
static void check_cwd(const spec *s) {
  char cwd[PATH_MAX];
  if (syscall(SYS_getcwd, cwd, sizeof cwd) < 0)
    die(s, "getcwd", s->cwd);
  if (cwd[0] != '/') {
    lx_buf b;
    lx_buf_init(&b);
    lx_buf_cat(&b, s->cwd);
    lx_buf_cat(&b, " leads outside the container");
    errno = EPERM;
    die(s, "chdir", b.s);
  }
}

/* Who finishes: the container's PID 1 (a session leader), the command
** under --init (PID 1's child), or a process that joins a running
** container (exec), which leaves session and terminal to the command's
** process that the stage clones. */
typedef enum { AS_LEADER, UNDER_INIT, JOINING } role;

/* The part after pivot_root (or the join) that the command's own process
** does; it ends in the stage's exec. */
static void __attribute__((noreturn))
finish(const spec *s, int slave, role who) {
  /* Under --init, PID 1 is a clone of luactr until it has exec'd the
  ** stage: nothing of the command may run before, or /proc/1/exe would
  ** be the host's interpreter for it to open. The barrier's other end
  ** closes on that exec. */
  if (who == UNDER_INIT) {
    char c;
    ssize_t n;
    do
      n = read(s->barrier, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 0)
      die(s, "wait for", "the init");
    close(s->barrier);
  }
  if (who == AS_LEADER && setsid() < 0)
    die(s, "setsid", NULL);
  if (slave >= 0) {
    if (who == AS_LEADER) {
      if (ioctl(slave, TIOCSCTTY, 0) < 0)
        die(s, "ioctl TIOCSCTTY", "console");
    } else if (who == UNDER_INIT) {
      /* its own process group, in the terminal's foreground */
      if (setpgid(0, 0) < 0 || tcsetpgrp(slave, getpid()) < 0)
        die(s, "tcsetpgrp", "console");
    }
    for (int fd = 0; fd < 3; fd++)
      if (dup2(slave, fd) < 0)
        die(s, "dup2", "console");
    if (slave > 2)
      close(slave);
  } else if (s->stdio[1] >= 0) {
    /* pipes a monitor holds the other ends of (luactr.monitor); no
    ** stdin pipe: /dev/null */
    int in = s->stdio[0] >= 0 ? s->stdio[0]
                              : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0 || dup2(in, 0) < 0 || dup2(s->stdio[1], 1) < 0 ||
        dup2(s->stdio[2], 2) < 0)
      die(s, "dup2", "stdio");
  } else if (s->stdin_null) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || dup2(fd, 0) < 0)
      die(s, "open", "/dev/null");
    close(fd);
  }
  /* the working directory is made (as root) when it is missing, as
  ** Docker does; entering it waits for the final user. An exec (join)
  ** changes nothing in a running container: a missing one is an error. */
  if (!s->target && strcmp(s->cwd, "/") != 0) {
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd = root < 0 ? -1 : lx_open_in_root(root, s->cwd, true, false);
    if (fd < 0)
      die(s, "mkdir", s->cwd);
    close(fd);
    close(root);
  }
  become_user(s);
  /* Only 0, 1 and 2 reach the command, and what the stage needs, which it
  ** closes: no fd of the host's is left for the chdir to go through. */
  int keep[] = {s->errfd, s->stagefd, s->filterfd};
  if (close_others(keep, 3) < 0)
    die(s, "close_range", NULL);
  if (chdir(s->cwd) < 0)
    die(s, "chdir", s->cwd);
  check_cwd(s);
  umask(s->umask);
  sigprocmask(SIG_SETMASK, &s->childmask, NULL);
  lock_down(s);
  if (who != JOINING)
    exec_stage(s, "exec", "");
  /* the command's process: a session of its own, the terminal its
  ** controlling one, and killed with luactr when asked */
  char flags[4] = "s", *f = flags + 1;
  if (s->terminal)
    *f++ = 't';
  if (s->pdeath)
    *f++ = 'p';
  *f = '\0';
  exec_stage(s, "join", flags);
}

/* Receives one byte and, when one came with it, a fd (*fd, else -1)
** from unix socket `sock`. Returns what recvmsg did: 1, 0 at the end,
** -1 with errno. Async-signal-safe. */
static ssize_t recv_byte_fd(int sock, int *fd) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
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

/* In a new user namespace: waits for the parent to write our maps (and,
** with idmap_root, to send the idmapped root as a mount fd). Returns the
** root's mount fd, or -1 when there is none. */
static int enter_userns(const spec *s) {
  int tree;
  ssize_t n = recv_byte_fd(s->syncfd, &tree);
  if (n <= 0) {
    if (n == 0)
      errno = EPIPE;  /* the parent gave up */
    die(s, "wait for", "the id maps");
  }
  close(s->syncfd);
  if (s->idmap_root && tree < 0) {
    errno = EPROTO;
    die(s, "receive", "the idmapped root");
  }
  return tree;
}

/* Becomes the user namespace's root. Until then our ids are still the
** host's root, unmapped here: whatever we created would fail (EOVERFLOW)
** and files host root owns would still be ours -- which lets us reach
** the root filesystem through the store's private folders first. */
static void become_ns_root(const spec *s) {
  /* host root's supplementary groups would still open what they own */
  if (setresgid(0, 0, 0) < 0)
    die(s, "setresgid", "0");
  if (setgroups(0, NULL) < 0)
    die(s, "setgroups", NULL);
  if (setresuid(0, 0, 0) < 0)
    die(s, "setresuid", "0");
  /* a change of user clears the parent-death signal: arm it again */
  if (s->pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    die(s, "prctl", "pdeathsig");
}

static void __attribute__((noreturn)) child_main(spec *s) {
  /* A build step must not outlive its builder: killed with it, the pid
  ** namespace goes and takes every process of the step along. */
  if (s->pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    die(s, "prctl", "pdeathsig");
  /* Into the container's cgroups before anything runs ("0" is the writer
  ** itself, in v1 and v2 alike), and only then a cgroup namespace, so
  ** that the container sees its own cgroup as "/". */
  for (int i = 0; i < s->ncgroups; i++)
    if (write(s->cgfds[i], "0", 1) != 1)
      die(s, "join cgroup", s->cgroups[i]);
  if (s->ncgroups && (s->nsflags & CLONE_NEWCGROUP) &&
      unshare(CLONE_NEWCGROUP) < 0)
    die(s, "unshare", "cgroup namespace");
  int tree = (s->nsflags & CLONE_NEWUSER) ? enter_userns(s) : -1;
  /* Ignored signals survive exec: give the command default ones. */
  for (int sig = 1; sig < _NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      signal(sig, SIG_DFL);
  umask(0);
  for (int i = 0; i < s->njoin; i++) {
    int fd = open(s->join[i].path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, s->join[i].type) < 0)
      die(s, "setns", s->join[i].path);
    close(fd);
  }
  /* Nothing we mount may propagate back to the host. */
  if (mount(NULL, "/", NULL, s->rootprop, NULL) < 0)
    die(s, "make-private", "/");
  if (tree >= 0) {
    /* the idmapped copy of the root the parent made, in place of the
    ** plain rbind */
    if (move_mount(tree, "", AT_FDCWD, s->root, MOVE_MOUNT_F_EMPTY_PATH) < 0)
      die(s, "attach idmapped root", s->root);
    close(tree);
  } else if (mount(s->root, s->root, NULL, MS_BIND | MS_REC, NULL) < 0) {
    die(s, "bind", s->root);
  }
  int rootfd = open(s->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    die(s, "open", s->root);
  if (s->nsflags & CLONE_NEWUSER)
    become_ns_root(s);
  for (int i = 0; i < s->nmounts; i++)
    if (lx_mount_at(&s->mounts[i], rootfd, s->mounts[i].dest) < 0)
      die(s, "mount", s->mounts[i].dest);
  if (s->dev_tmpfs)
    setup_devices(s, rootfd);
  const char *failed;
  if (lx_devices_make(s->devices, s->ndevices, rootfd, &failed) < 0)
    die(s, "mknod", failed);
  if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
    die(s, "sethostname", s->hostname);
  if (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0)
    die(s, "setdomainname", s->domainname);
  if (s->nsflags & CLONE_NEWNET)
    loopback_up(s);
  enter_root(s, rootfd);
  close(rootfd);
  if (s->root_ro && lx_remount_bind("/", MS_RDONLY) < 0)
    die(s, "remount read-only", "/");
  for (int i = 0; i < s->nmasked; i++)
    if (lx_mask_path(s->masked[i]) < 0)
      die(s, "mask", s->masked[i]);
  for (int i = 0; i < s->nro; i++)
    if (lx_readonly_path(s->ropaths[i]) < 0)
      die(s, "readonly", s->ropaths[i]);
  int slave = s->terminal ? open_console(s) : -1;
  if (!s->init)
    finish(s, slave, AS_LEADER);
  /* --init: this process stays as PID 1, the command is its child */
  if (setsid() < 0)
    die(s, "setsid", NULL);
  if (slave >= 0 && ioctl(slave, TIOCSCTTY, 0) < 0)
    die(s, "ioctl TIOCSCTTY", "console");
  int barrier[2];
  if (pipe2(barrier, O_CLOEXEC) < 0)
    die(s, "pipe", "init");
  pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid < 0)
    die(s, "fork", "init");
  if (pid == 0) {
    close(barrier[1]);
    s->barrier = barrier[0];
    finish(s, slave, UNDER_INIT);
  }
  close(barrier[0]);
  /* Become the stage's init: exec keeps the child and the blocked mask,
  ** and leaves no copy of luactr's memory (or command line) behind. The
  ** init runs as the command's user, confined as it is (Docker's init
  ** does too), so it can signal the command and do nothing more. */
  become_user(s);
  int keep[] = {s->stagefd, s->filterfd, barrier[1]};
  if (close_others(keep, 3) < 0)
    die(s, "close_range", NULL);
  lock_down(s);
  exec_init(s, pid, barrier[1]);
}

/* Join mode (exec): a process that enters a running container instead of
** making one. It joins the cgroup, then every namespace at once through
** the pidfd, the pid namespace as its children's only: it stays in the
** host's, where no process of the container can see it, ptrace it or
** read its /proc files (runc's nsexec orders it so). From there on it is
** what finish() makes of any container process: user, capabilities,
** no_new_privs, no fd of the host's, the working directory; then the
** stage clones the command's process into the container's pid namespace,
** with nothing of the host's left and the seccomp filters installed.
** No mount, no pivot_root, no /dev: setns into the mount namespace makes
** the container's root our "/" and our working directory. */
static void __attribute__((noreturn)) join_main(spec *s) {
  /* Not dumpable until the exec, all the same: it holds host fds and
  ** every capability (runc's CVE-2016-9962). */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
    die(s, "prctl", "dumpable");
  if (s->pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    die(s, "prctl", "pdeathsig");
  /* the cgroup first, as the container's own PID 1 did: written from the
  ** host's cgroup namespace, where the recorded folders are */
  for (int i = 0; i < s->ncgroups; i++)
    if (write(s->cgfds[i], "0", 1) != 1)
      die(s, "join cgroup", s->cgroups[i]);
  for (int sig = 1; sig < _NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      signal(sig, SIG_DFL);
  if (s->nsflags && setns(s->targetfd, s->nsflags) < 0)
    die(s, "setns", "container namespaces");
  close(s->targetfd);
  /* the pty comes from the container's own devpts (its /dev/ptmx) */
  int slave = s->terminal ? open_console(s) : -1;
  finish(s, slave, JOINING);
}

/* }====== */

/* {====== the parent ====== */

typedef struct process {
  pid_t pid;
  int pidfd;
  int master;        /* pty master, or -1 */
  bool reaped;
  bool masked;       /* forwarded signals blocked since spawn */
  sigset_t oldmask;  /* the caller's mask, restored by wait or close */
} process;

/* Gives the caller its signal mask back (the forwarded ones were blocked
** since spawn). */
static void restore_mask(process *p) {
  if (p->masked) {
    sigprocmask(SIG_SETMASK, &p->oldmask, NULL);
    p->masked = false;
  }
}

/* The signals `luactr run` forwards to the container. */
static void forward_set(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGHUP);
  sigaddset(set, SIGQUIT);
  sigaddset(set, SIGUSR1);
  sigaddset(set, SIGUSR2);
}

static int recv_fd(int sock) {
  int fd;
  return recv_byte_fd(sock, &fd) > 0 ? fd : -1;
}

static pid_t clone_child(int flags, int *pidfd) {
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = (uint64_t)flags | CLONE_PIDFD;
  ca.pidfd = (uint64_t)(uintptr_t)pidfd;
  ca.exit_signal = SIGCHLD;
  return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
}

/* Opens a pidfd of the container's PID 1 for a join (it pins that very
** process: setns through it can never reach another one that took the
** pid later). The start time, when given, is checked once the pidfd is
** open, so the pidfd surely names the process the caller recorded.
** Returns the fd, or -1 with errno (ESRCH: it is gone). */
static int open_target(const spec *s) {
  int fd = (int)syscall(SYS_pidfd_open, s->target, 0);
  if (fd < 0)
    return -1;
  if (s->target_start >= 0 && lx_start_time(s->target) != s->target_start) {
    close(fd);
    errno = ESRCH;
    return -1;
  }
  return fd;
}

/* The sealed memfd copy of luactr-stage (the file "stage" beside this
** library) that the container's process execs before its command: see
** luactr-stage.c for why. Close-on-exec; -1 with errno, and *what set to
** the file that failed. */
static int stage_copy(char *path, const char **what) {
  Dl_info info;
  *what = "luactr-stage";
  if (!dladdr((void *)stage_copy, &info) || !info.dli_fname) {
    errno = ENOENT;
    return -1;
  }
  const char *slash = strrchr(info.dli_fname, '/');
  size_t dir = slash ? (size_t)(slash - info.dli_fname) + 1 : 0;
  if (dir + sizeof "stage" > PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(path, info.dli_fname, dir);
  memcpy(path + dir, "stage", sizeof "stage");
  *what = path;
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return -1;
  struct stat st;
  int fd = -1;
  if (fstat(in, &st) < 0)
    goto out;
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U  /* Linux 6.3: says the memfd may be exec'd */
#endif
  fd = memfd_create("luactr-stage", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL)
    fd = memfd_create("luactr-stage", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    goto out;
  for (off_t done = 0; done < st.st_size;) {
    ssize_t n = sendfile(fd, in, NULL, (size_t)(st.st_size - done));
    if (n <= 0) {
      if (n == 0)
        errno = EIO;  /* it shrank */
      goto fail;
    }
    done += n;
  }
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020  /* Linux 6.3: its mode's x bits stay */
#endif
  int seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
  if (fcntl(fd, F_ADD_SEALS, seals | F_SEAL_EXEC) < 0 &&
      (errno != EINVAL || fcntl(fd, F_ADD_SEALS, seals) < 0))
    goto fail;
  goto out;
fail:
  close(fd);
  fd = -1;
out:;
  int e = errno;
  close(in);
  errno = e;
  return fd;
}

/* The compiled seccomp filters, in the form the stage installs them
** (lx_filters in luactr-stage.h), in a sealed memfd. Close-on-exec; -1
** with errno. */
static int filter_copy(const lx_seccomp *f) {
  _Static_assert(LX_SECCOMP_MAX <= LX_FILTERS_MAX, "filters");
  int fd = memfd_create("luactr-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -1;
  lx_filters h;
  memset(&h, 0, sizeof h);
  h.magic = LX_FILTERS_MAGIC;
  h.flags = f->flags;
  h.n = (unsigned)f->n;
  struct iovec iov[1 + LX_SECCOMP_MAX];
  size_t total = sizeof h;
  iov[0] = (struct iovec){.iov_base = &h, .iov_len = sizeof h};
  for (int i = 0; i < f->n; i++) {
    h.len[i] = f->progs[i].len;
    iov[i + 1] = (struct iovec){
      .iov_base = f->progs[i].filter,
      .iov_len = f->progs[i].len * sizeof(struct sock_filter)};
    total += iov[i + 1].iov_len;
  }
  ssize_t n = writev(fd, iov, f->n + 1);  /* a memfd takes it whole */
  if (n != (ssize_t)total ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW |
                             F_SEAL_WRITE) < 0) {
    int e = n < 0 ? errno : n != (ssize_t)total ? EIO : errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* Reads what the child says on the error pipe until it closes: nothing
** when the command was exec'd; a report (*failed) when a step failed; in
** join mode, also "pid N", the command's process (*joined). Returns false
** when what came is not such messages. */
static bool read_reports(int fd, lx_report *failed, pid_t *joined) {
  char buf[3 * sizeof(lx_report)];
  size_t got = 0;
  ssize_t n;
  failed->err = 0;
  *joined = -1;
  do {
    n = read(fd, buf + got, sizeof buf - got);
    if (n > 0)
      got += (size_t)n;
  } while ((n > 0 && got < sizeof buf) || (n < 0 && errno == EINTR));
  size_t head = offsetof(lx_report, msg);
  for (size_t at = 0; at < got;) {
    lx_report r;
    if (got - at < head)
      return false;
    memcpy(&r, buf + at, head);
    if (r.len < 0 || r.len >= (int)sizeof r.msg || got - at < head + (size_t)r.len + 1)
      return false;
    memcpy(r.msg, buf + at + head, (size_t)r.len);
    r.msg[r.len] = '\0';
    at += head + (size_t)r.len + 1;
    if (r.err == 0) {
      long pid;
      if (sscanf(r.msg, "pid %ld", &pid) != 1 || pid <= 0)
        return false;
      *joined = (pid_t)pid;
    } else if (failed->err == 0) {
      *failed = r;  /* the first failure is the one to tell */
    }
  }
  return true;
}

/* The parent's part of a new user namespace: writes the child's uid and
** gid maps, makes the idmapped copy of its root when asked (only the
** host's root may: it needs CAP_SYS_ADMIN over the filesystem), and lets
** the child go on, sending that copy along. Returns NULL, or the step
** that failed with *err (and *detail) set. */
static const char *userns_start(const spec *s, pid_t pid, int syncfd,
                                const char **detail, int *err) {
  if (lx_ns_write_map(pid, "uid_map", s->uidmap, s->uidmaplen) < 0) {
    *err = errno;
    return "uid_map";
  }
  if (lx_ns_write_map(pid, "gid_map", s->gidmap, s->gidmaplen) < 0) {
    *err = errno;
    return "gid_map";
  }
  int tree = -1;
  if (s->idmap_root) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      *err = errno;
      *detail = "user namespace";
      return "open";
    }
    tree = lx_mount_idmapped(s->root, ns);
    *err = errno;
    close(ns);
    if (tree < 0) {
      *detail = s->root;
      return "idmap";
    }
  }
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (tree >= 0) {
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &tree, sizeof(int));
  }
  ssize_t n;
  do
    n = sendmsg(syncfd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  *err = errno;
  if (tree >= 0)
    close(tree);
  return n == 1 ? NULL : "sync";
}

/* core.spawn(spec, [opts]) -> process | nil, err, errno, step
** opts: init (true: the stage's init as PID 1, the command its child),
** stdin ("inherit" | "null"),
** forward_signals (block them from now until process:wait forwards),
** die_with_parent (SIGKILL the container when the caller dies),
** cgroups (folders whose cgroup.procs the container joins before it
** runs anything: one per v1 hierarchy, or the one v2 folder),
** join (join mode, for exec: the pid of a running container's PID 1,
** whose namespaces the process enters instead of making new ones, with
** no mount, pivot_root or /dev of its own; the spec's namespaces say
** which; join_start: that process's start time, checked against the pid's
** reuse; a process gone fails as "join container: No such process"),
** stdio ({in, out, err}: fds that become the container's 0, 1 and 2,
** for a monitor that holds the other ends; in -1: /dev/null; not with a
** terminal).
** Every container's process execs the command through luactr-stage, the
** program "stage" beside this library (luactr-stage.c). */
static int l_spawn(lua_State *L) {
  spec s;
  parse_spec(L, &s);
  int errp[2] = {-1, -1}, sockp[2] = {-1, -1}, syncp[2] = {-1, -1};
  s.stagefd = s.filterfd = s.targetfd = s.barrier = -1;
  for (int i = 0; i < s.ncgroups; i++)
    s.cgfds[i] = -1;
  process *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->pid = -1;
  p->pidfd = p->master = -1;
  p->reaped = p->masked = false;
  luaL_setmetatable(L, LX_PROCESS);
  int nret = 1;  /* the process, unless something fails */
  const char *what = NULL;  /* what failed before the clone */
  char stagepath[PATH_MAX];
  if ((s.stagefd = stage_copy(stagepath, &what)) < 0)
    goto failed;
  what = "seccomp filters";
  if (s.seccomp.set && s.no_new_privs && (s.filterfd = filter_copy(&s.seccomp)) < 0)
    goto failed;
  what = "pipe";
  if (pipe2(errp, O_CLOEXEC) < 0)
    goto failed;
  what = "socketpair";
  if (s.terminal &&
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockp) < 0)
    goto failed;
  /* a new user namespace: the child waits on syncp for its id maps */
  if ((s.nsflags & CLONE_NEWUSER) && !s.target &&
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, syncp) < 0)
    goto failed;
  what = "join container";
  if (s.target && (s.targetfd = open_target(&s)) < 0)
    goto failed;
  what = "open cgroup.procs";
  for (int i = 0; i < s.ncgroups; i++) {
    char path[PATH_MAX];
    errno = ENAMETOOLONG;
    if (!lx_path_join(path, s.cgroups[i], "cgroup.procs") ||
        (s.cgfds[i] = open(path, O_WRONLY | O_CLOEXEC)) < 0)
      goto failed;
  }
  s.errfd = errp[1];
  s.sockfd = sockp[1];
  s.syncfd = syncp[1];
  /* Block every signal across the clone: the child must not run a Lua
  ** handler; it restores the caller's mask just before exec. */
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &p->oldmask);
  s.childmask = p->oldmask;
  /* the child unshares the cgroup namespace once it has joined; a join
  ** stays in our namespaces until it enters the container's */
  int flags = s.target ? 0 : s.nsflags & ~(s.ncgroups ? CLONE_NEWCGROUP : 0);
  pid_t pid = clone_child(flags, &p->pidfd);
  if (pid == 0) {
    close(errp[0]);
    if (sockp[0] >= 0)
      close(sockp[0]);
    if (syncp[0] >= 0)
      close(syncp[0]);
    if (s.target)
      join_main(&s);
    child_main(&s);
  }
  int cloneerr = errno;
  if (s.forward && pid > 0) {
    sigset_t fw;
    forward_set(&fw);
    sigset_t keep = p->oldmask;
    for (int sig = 1; sig < _NSIG; sig++)
      if (sigismember(&fw, sig))
        sigaddset(&keep, sig);
    sigprocmask(SIG_SETMASK, &keep, NULL);
    p->masked = true;
  } else {
    sigprocmask(SIG_SETMASK, &p->oldmask, NULL);
  }
  /* the child's ends */
  close(errp[1]);
  errp[1] = -1;
  if (sockp[1] >= 0) {
    close(sockp[1]);
    sockp[1] = -1;
  }
  if (syncp[1] >= 0) {
    close(syncp[1]);
    syncp[1] = -1;
  }
  if (pid < 0) {
    what = "clone";
    errno = cloneerr;
    goto failed;
  }
  p->pid = pid;
  if (syncp[0] >= 0) {
    int uerr = 0;
    const char *detail = "";
    const char *ustep = userns_start(&s, pid, syncp[0], &detail, &uerr);
    if (ustep) {
      /* the child waits for us: it ends here, having done nothing */
      syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
      waitpid(pid, NULL, 0);
      p->reaped = true;
      restore_mask(p);
      luaL_pushfail(L);
      lua_pushfstring(L, "%s%s%s: %s", ustep, *detail ? " " : "", detail,
                      strerror(uerr));
      lua_pushinteger(L, uerr);
      lua_pushstring(L, ustep);
      nret = 4;
      goto done;
    }
  }
  lx_report r;
  pid_t joined;
  bool understood = read_reports(errp[0], &r, &joined);
  if (s.target) {
    /* the first child (in our pid namespace) ends once the stage has
    ** cloned the command's process, which is our child too */
    waitpid(pid, NULL, 0);
    close(p->pidfd);
    p->pidfd = -1;
    p->pid = joined;
  }
  if (!understood || r.err || (s.target && joined < 0)) {
    /* a step failed: reap what ran, report the step */
    if (p->pid > 0)
      waitpid(p->pid, NULL, 0);
    p->reaped = true;
    restore_mask(p);
    if (!understood || !r.err) {
      lua_pushnil(L);
      lua_pushliteral(L, "spawn: child failed without a report");
      lua_pushinteger(L, EPROTO);
      nret = 3;
      goto done;
    }
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", r.msg, strerror(r.err));
    lua_pushinteger(L, r.err);
    const char *sp = strchr(r.msg, ' ');
    lua_pushlstring(L, r.msg, sp ? (size_t)(sp - r.msg) : strlen(r.msg));
    nret = 4;
    goto done;
  }
  if (s.target && (p->pidfd = (int)syscall(SYS_pidfd_open, joined, 0)) < 0) {
    int e = errno;
    waitpid(joined, NULL, 0);  /* ours, not reaped: never seen */
    p->reaped = true;
    restore_mask(p);
    nret = lx_fail(L, "pidfd_open", e);
    goto done;
  }
  if (s.terminal) {
    p->master = recv_fd(sockp[0]);
    if (p->master < 0) {
      nret = lx_failmsg(L, "spawn: no terminal from the container", EPROTO);
      goto done;
    }
  }
  goto done;
failed:
  nret = lx_fail(L, what, errno);
done:;
  int fds[] = {errp[0], errp[1], sockp[0], sockp[1], syncp[0], syncp[1],
               s.stagefd, s.filterfd, s.targetfd};
  int e = errno;
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  for (int i = 0; i < s.ncgroups; i++)
    if (s.cgfds[i] >= 0)
      close(s.cgfds[i]);
  errno = e;
  return nret;  /* the process, or the failure above it */
}

/* }====== */

/* {====== process handles ====== */

static process *checkproc(lua_State *L) {
  return luaL_checkudata(L, 1, LX_PROCESS);
}

static ssize_t write_all(int fd, const char *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, buf + done, n - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pf = {.fd = fd, .events = POLLOUT};
      poll(&pf, 1, -1);
      continue;
    }
    if (w <= 0)
      return -1;
    done += (size_t)w;
  }
  return (ssize_t)done;
}

/* Copies what the master has to stdout; returns false once the terminal
** is gone (EIO: every slave closed) or nothing is left to read now. */
static bool drain_master(int master, bool *gone) {
  char buf[16384];
  ssize_t n = read(master, buf, sizeof buf);
  if (n > 0) {
    write_all(1, buf, (size_t)n);  /* a closed stdout only loses output */
    return true;
  }
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
    *gone = true;
  return false;
}

/* process:wait([{relay=, input=, raw=}]) -> "exit", code | "signal", sig
** Waits for the process to end, forwarding the signals blocked at spawn.
** With `relay`, copies the pty master to stdout and (with `input`) stdin to
** the master, in raw mode on a terminal when `raw`, following SIGWINCH. */
static int l_wait(lua_State *L) {
  process *p = checkproc(L);
  bool relay = false, input = false, raw = false;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const known[] = {"relay", "input", "raw", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "process:wait", known);
    relay = optbool(L, 2, "relay", "wait");
    input = optbool(L, 2, "input", "wait");
    raw = optbool(L, 2, "raw", "wait");
  }
  if (p->reaped || p->pidfd < 0)
    return luaL_error(L, "process:wait: the process was already waited for");
  relay = relay && p->master >= 0;

  sigset_t set, prev;
  sigemptyset(&set);
  if (p->masked)
    forward_set(&set);
  if (relay)
    sigaddset(&set, SIGWINCH);
  sigaddset(&set, SIGPIPE);  /* a closed stdout must not kill us */
  sigprocmask(SIG_BLOCK, &set, &prev);
  sigdelset(&set, SIGPIPE);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

  struct termios saved;
  bool restore_tty = false;
  if (relay && raw && isatty(0) && tcgetattr(0, &saved) == 0) {
    struct termios t = saved;
    cfmakeraw(&t);
    restore_tty = tcsetattr(0, TCSADRAIN, &t) == 0;
  }
  struct winsize ws;
  if (relay && ioctl(0, TIOCGWINSZ, &ws) == 0)
    ioctl(p->master, TIOCSWINSZ, &ws);
  if (relay)
    fcntl(p->master, F_SETFL, fcntl(p->master, F_GETFL) | O_NONBLOCK);

  bool exited = false, gone = !relay, in_open = relay && input;
  while (!exited) {
    struct pollfd pf[4];
    int n = 0, isig = -1, ipid, imaster = -1, iin = -1;
    if (sfd >= 0) {
      pf[n] = (struct pollfd){.fd = sfd, .events = POLLIN};
      isig = n++;
    }
    pf[n] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
    ipid = n++;
    if (!gone) {
      pf[n] = (struct pollfd){.fd = p->master, .events = POLLIN};
      imaster = n++;
    }
    if (in_open) {
      pf[n] = (struct pollfd){.fd = 0, .events = POLLIN};
      iin = n++;
    }
    if (poll(pf, (nfds_t)n, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    /* signals first: a resize must reach the container before the input
    ** that follows it */
    if (isig >= 0 && pf[isig].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGWINCH) {
          if (ioctl(0, TIOCGWINSZ, &ws) == 0)
            ioctl(p->master, TIOCSWINSZ, &ws);
        } else {
          syscall(SYS_pidfd_send_signal, p->pidfd, (int)si.ssi_signo, NULL, 0);
        }
      }
    }
    if (imaster >= 0 && pf[imaster].revents)
      while (drain_master(p->master, &gone))
        ;
    if (iin >= 0 && pf[iin].revents) {
      char buf[16384];
      ssize_t r = read(0, buf, sizeof buf);
      if (r > 0) {
        write_all(p->master, buf, (size_t)r);
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        /* end of input: the terminal's EOF character, as a person would */
        struct termios t;
        char eof = tcgetattr(p->master, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
        write_all(p->master, &eof, 1);
        in_open = false;
      }
    }
    if (pf[ipid].revents)
      exited = true;
  }
  /* PID 1 is gone, so is its namespace: what the terminal still holds is
  ** the last output. */
  while (!gone) {
    struct pollfd pf = {.fd = p->master, .events = POLLIN};
    if (poll(&pf, 1, 1000) <= 0)
      break;
    while (drain_master(p->master, &gone))
      ;
  }
  if (restore_tty)
    tcsetattr(0, TCSADRAIN, &saved);
  siginfo_t info;
  memset(&info, 0, sizeof info);
  int r;
  do
    r = waitid(P_PIDFD, (id_t)p->pidfd, &info, WEXITED);
  while (r < 0 && errno == EINTR);
  int err = errno;
  if (sfd >= 0)
    close(sfd);
  sigprocmask(SIG_SETMASK, &prev, NULL);
  restore_mask(p);
  if (r < 0)
    return lx_fail(L, "wait", err);
  p->reaped = true;
  if (info.si_code == CLD_EXITED) {
    lua_pushliteral(L, "exit");
  } else {
    lua_pushliteral(L, "signal");
  }
  lua_pushinteger(L, info.si_status);
  return 2;
}

/* process:kill([sig]) -> true | nil, err, errno (SIGTERM by default) */
static int l_kill(lua_State *L) {
  process *p = checkproc(L);
  int sig = (int)luaL_optinteger(L, 2, SIGTERM);
  if (p->reaped || p->pidfd < 0)
    return lx_fail(L, "kill", ESRCH);
  if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
    return lx_fail(L, "kill", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* process:resize(rows, cols): the container terminal's size */
static int l_resize(lua_State *L) {
  process *p = checkproc(L);
  struct winsize ws = {.ws_row = (unsigned short)luaL_checkinteger(L, 2),
                       .ws_col = (unsigned short)luaL_checkinteger(L, 3)};
  if (p->master < 0)
    return luaL_error(L, "process:resize: the process has no terminal");
  if (ioctl(p->master, TIOCSWINSZ, &ws) < 0)
    return lx_fail(L, "resize", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* process:close(): releases the handle's fds and signal mask; the process
** itself goes on. Idempotent; also __gc and __close. */
static int l_close(lua_State *L) {
  process *p = checkproc(L);
  if (p->pidfd >= 0)
    close(p->pidfd);
  if (p->master >= 0)
    close(p->master);
  p->pidfd = p->master = -1;
  restore_mask(p);
  return 0;
}

static int l_index(lua_State *L) {
  process *p = checkproc(L);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "pid") == 0) {
    lua_pushinteger(L, p->pid);
  } else if (strcmp(k, "pidfd") == 0) {
    if (p->pidfd < 0)
      lua_pushnil(L);
    else
      lua_pushinteger(L, p->pidfd);
  } else if (strcmp(k, "master") == 0) {
    if (p->master < 0)
      lua_pushnil(L);
    else
      lua_pushinteger(L, p->master);
  } else {
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, k);
  }
  return 1;
}

static int l_tostring(lua_State *L) {
  process *p = checkproc(L);
  lua_pushfstring(L, "luactr.process (%d)", (int)p->pid);
  return 1;
}

static const luaL_Reg process_methods[] = {
  {"wait", l_wait},
  {"kill", l_kill},
  {"resize", l_resize},
  {"close", l_close},
  {"__gc", l_close},
  {"__close", l_close},
  {"__index", l_index},
  {"__tostring", l_tostring},
  {NULL, NULL},
};

void lx_open_spawn(lua_State *L) {
  luaL_newmetatable(L, LX_PROCESS);
  luaL_setfuncs(L, process_methods, 0);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, -2, "spawn");
}

/* }====== */
