/*
** devices.c -- core.devices: device nodes and the device rules of a
** container's cgroup.
**
** Two halves, both mechanism:
** - the nodes of the OCI spec's linux.devices, parsed in the parent and
**   made by spawn's child beneath the container's root (mknod, chown,
**   chmod), async-signal-safe;
** - cgroup v2's device filter: v2 has no devices.allow file, a cgroup's
**   device rules are an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE
**   attached to its folder. The program is assembled here from the
**   rules by hand (as crun's ebpf.c and systemd do: no libbpf), loaded
**   with bpf(2) and attached to a folder. On v1 the same rules are
**   lines written to devices.deny and devices.allow, by luactr.runtime.cgroup.
**
** Which rules a container gets is policy, in luactr.spec.devices.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "luactr.h"

#define LX_BPFPROG "luactr.bpfprog"

/* {====== nodes, for spawn ====== */

/* Reads an integer field of the device table at `idx`; `dflt` when
** absent. Raises when it is not an integer in [lo, hi]. */
static lua_Integer devfield(lua_State *L, int idx, int i, const char *key,
                            lua_Integer dflt, lua_Integer lo, lua_Integer hi) {
  int t = lua_getfield(L, idx, key);
  lua_Integer v = dflt;
  if (t != LUA_TNIL) {
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < lo || v > hi)
      luaL_error(L, "spawn: linux.devices[%d].%s: expected an integer "
                 "from %I to %I", i, key, lo, hi);
  }
  lua_pop(L, 1);
  return v;
}

void lx_devices_parse(lua_State *L, int idx, lx_device **list, int *n) {
  static const char *const known[] = {"type", "path", "major", "minor",
                                      "fileMode", "uid", "gid", NULL};
  idx = lua_absindex(L, idx);
  lua_Integer len = luaL_len(L, idx);
  if (len > 1024)
    luaL_error(L, "spawn: linux.devices: more than 1024 devices");
  lx_device *d = lua_newuserdatauv(L, (size_t)(len + 1) * sizeof *d, 0);
  memset(d, 0, (size_t)(len + 1) * sizeof *d);
  for (int i = 1; i <= (int)len; i++) {
    if (lua_geti(L, idx, i) != LUA_TTABLE)
      luaL_error(L, "spawn: linux.devices[%d]: expected a table", i);
    int t = lua_gettop(L);
    lx_checkkeys(L, t, "spawn: linux.devices[]", known);
    lx_device *e = &d[i - 1];
    if (lua_getfield(L, t, "path") != LUA_TSTRING)
      luaL_error(L, "spawn: linux.devices[%d].path: expected a string", i);
    e->path = lua_tostring(L, -1);  /* anchored by the spec table */
    lua_pop(L, 1);
    if (e->path[0] != '/' || strlen(e->path) >= PATH_MAX || !strrchr(e->path, '/')[1])
      luaL_error(L, "spawn: linux.devices[%d].path: expected an absolute "
                 "file path, got '%s'", i, e->path);
    if (lua_getfield(L, t, "type") != LUA_TSTRING)
      luaL_error(L, "spawn: linux.devices[%d].type: expected a string", i);
    const char *type = lua_tostring(L, -1);
    mode_t fmt = strcmp(type, "b") == 0 ? S_IFBLK
               : (strcmp(type, "c") == 0 || strcmp(type, "u") == 0) ? S_IFCHR
               : strcmp(type, "p") == 0 ? S_IFIFO : 0;
    if (!fmt)
      luaL_error(L, "spawn: linux.devices[%d].type: expected b, c, u or p, "
                 "got '%s'", i, type);
    lua_pop(L, 1);
    lua_Integer major = devfield(L, t, i, "major", -1, 0, 0xfffff);
    lua_Integer minor = devfield(L, t, i, "minor", -1, 0, 0xfffff);
    if (fmt != S_IFIFO && (major < 0 || minor < 0))
      luaL_error(L, "spawn: linux.devices[%d]: major and minor are missing", i);
    e->dev = fmt == S_IFIFO ? 0 : makedev((unsigned)major, (unsigned)minor);
    e->mode = fmt | (mode_t)devfield(L, t, i, "fileMode", 0666, 0, 07777);
    e->uid = (uid_t)devfield(L, t, i, "uid", 0, 0, UINT32_MAX - 1);
    e->gid = (gid_t)devfield(L, t, i, "gid", 0, 0, UINT32_MAX - 1);
    lua_pop(L, 1);
  }
  *list = d;
  *n = (int)len;
}

int lx_devices_make(const lx_device *d, int n, int rootfd,
                    const char **failed) {
  for (int i = 0; i < n; i++) {
    char dir[PATH_MAX];
    const char *slash = strrchr(d[i].path, '/');
    size_t len = (size_t)(slash - d[i].path);
    memcpy(dir, d[i].path, len);
    dir[len ? len : 1] = '\0';
    if (!len)
      dir[0] = '/';
    *failed = d[i].path;
    int dirfd = lx_open_in_root(rootfd, dir, true, false);
    if (dirfd < 0)
      return -1;
    const char *base = slash + 1;
    /* a node the default /dev has already (--device /dev/null) is replaced */
    if (unlinkat(dirfd, base, 0) < 0 && errno != ENOENT) {
      int err = errno;
      close(dirfd);
      errno = err;
      return -1;
    }
    int r = mknodat(dirfd, base, d[i].mode, d[i].dev);
    /* mknod's mode is cut by the umask; fileMode is meant exactly */
    if (r == 0)
      r = fchmodat(dirfd, base, d[i].mode & 07777, 0);
    if (r == 0)
      r = fchownat(dirfd, base, d[i].uid, d[i].gid, AT_SYMLINK_NOFOLLOW);
    int err = errno;
    close(dirfd);
    if (r < 0) {
      errno = err;
      return -1;
    }
  }
  return 0;
}

/* }====== */

/* {====== the v2 device program ====== */

/* The instructions of the program, as crun's ebpf.c writes them. */
#define INSN(CODE, DST, SRC, OFF, IMM) \
  ((struct bpf_insn){.code = (CODE), .dst_reg = (DST), .src_reg = (SRC), \
                     .off = (OFF), .imm = (IMM)})
#define LDX_W(DST, SRC, OFF) INSN(BPF_LDX | BPF_W | BPF_MEM, DST, SRC, OFF, 0)
#define ALU32_IMM(OP, DST, IMM) INSN(BPF_ALU | (OP) | BPF_K, DST, 0, 0, IMM)
#define MOV32_REG(DST, SRC) INSN(BPF_ALU | BPF_MOV | BPF_X, DST, SRC, 0, 0)
#define MOV64_IMM(DST, IMM) INSN(BPF_ALU64 | BPF_MOV | BPF_K, DST, 0, 0, IMM)
#define JNE_IMM(DST, IMM, OFF) INSN(BPF_JMP | BPF_JNE | BPF_K, DST, 0, OFF, IMM)
#define JNE_REG(DST, SRC, OFF) INSN(BPF_JMP | BPF_JNE | BPF_X, DST, SRC, OFF, 0)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* One rule of the OCI linux.resources.devices, read from Lua. */
typedef struct rule {
  bool allow;
  int type;                 /* 'a', 'b' or 'c' */
  long major, minor;        /* -1: any */
  int access;               /* BPF_DEVCG_ACC_* bits */
} rule;

static void read_rule(lua_State *L, int idx, int i, rule *r) {
  static const char *const known[] = {"allow", "type", "major", "minor",
                                      "access", NULL};
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "devices: rules[%d]: expected a table", i);
  lx_checkkeys(L, idx, "devices: rules[]", known);
  lua_getfield(L, idx, "allow");
  if (!lua_isboolean(L, -1))
    luaL_error(L, "devices: rules[%d].allow: expected a boolean", i);
  r->allow = lua_toboolean(L, -1);
  lua_getfield(L, idx, "type");
  const char *type = luaL_optstring(L, -1, "a");
  if (strlen(type) != 1 || !strchr("abc", type[0]))
    luaL_error(L, "devices: rules[%d].type: expected a, b or c, got '%s'", i, type);
  r->type = type[0];
  lua_getfield(L, idx, "access");
  const char *access = luaL_optstring(L, -1, "rwm");
  r->access = 0;
  for (const char *p = access; *p; p++) {
    int bit = *p == 'r' ? BPF_DEVCG_ACC_READ : *p == 'w' ? BPF_DEVCG_ACC_WRITE
            : *p == 'm' ? BPF_DEVCG_ACC_MKNOD : 0;
    if (!bit)
      luaL_error(L, "devices: rules[%d].access: expected letters of rwm, got '%s'",
                 i, access);
    r->access |= bit;
  }
  lua_pop(L, 3);
  const char *nums[] = {"major", "minor"};
  long *out[] = {&r->major, &r->minor};
  for (int k = 0; k < 2; k++) {
    lua_getfield(L, idx, nums[k]);
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (lua_isnil(L, -1))
      v = -1;
    else if (!isint || v < -1 || v > 0xfffff)
      luaL_error(L, "devices: rules[%d].%s: expected a device number or -1", i, nums[k]);
    *out[k] = (long)v;
    lua_pop(L, 1);
  }
}

/* Appends the block of one rule to `p` (room for 9 more): when the
** request matches, return the rule's answer. Returns how many were
** written; *wildcard is set when the rule matches every request. */
static int rule_block(const rule *r, struct bpf_insn *p, bool *wildcard) {
  const int all = BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD;
  bool has_type = r->type != 'a', has_access = r->access != all;
  bool has_major = r->major >= 0, has_minor = r->minor >= 0;
  /* a failed test jumps past the block's end: from instruction k, by
  ** total - k - 1 */
  int total = has_type + 3 * has_access + has_major + has_minor + 2;
  int n = 0;
  if (has_type) {
    p[n] = JNE_IMM(BPF_REG_2, r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR,
                   (short)(total - n - 1));
    n++;
  }
  if (has_access) {
    /* the access asked for must be within the rule's */
    p[n++] = MOV32_REG(BPF_REG_1, BPF_REG_3);
    p[n++] = ALU32_IMM(BPF_AND, BPF_REG_1, r->access);
    p[n] = JNE_REG(BPF_REG_1, BPF_REG_3, (short)(total - n - 1));
    n++;
  }
  if (has_major) {
    p[n] = JNE_IMM(BPF_REG_4, (int)r->major, (short)(total - n - 1));
    n++;
  }
  if (has_minor) {
    p[n] = JNE_IMM(BPF_REG_5, (int)r->minor, (short)(total - n - 1));
    n++;
  }
  p[n++] = MOV64_IMM(BPF_REG_0, r->allow ? 1 : 0);
  p[n++] = EXIT();
  *wildcard = !has_type && !has_access && !has_major && !has_minor;
  return n;
}

/* devices.program(rules) -> string
** The BPF_PROG_TYPE_CGROUP_DEVICE program of the OCI device rules
** `rules` ({ allow=, type=, major=, minor=, access= }, ...), as a string
** of struct bpf_insn (8 bytes each, host order). As in the cgroup v1
** files, a later rule overrides an earlier one: the blocks are laid out
** from the last rule to the first, and the first that matches answers.
** A request no rule matches is denied. Raises on a malformed rule. */
static int l_program(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  if (n > 4096)
    luaL_error(L, "devices: more than 4096 rules");
  size_t cap = 6 + 9 * (size_t)n + 2;
  struct bpf_insn *p = lua_newuserdatauv(L, cap * sizeof *p, 0);
  size_t used = 0;
  /* the request, as systemd and crun load it: type -> r2, access -> r3,
  ** major -> r4, minor -> r5 (r1 is the context, struct
  ** bpf_cgroup_dev_ctx) */
  p[used++] = LDX_W(BPF_REG_2, BPF_REG_1, 0);
  p[used++] = ALU32_IMM(BPF_AND, BPF_REG_2, 0xffff);
  p[used++] = LDX_W(BPF_REG_3, BPF_REG_1, 0);
  p[used++] = ALU32_IMM(BPF_RSH, BPF_REG_3, 16);
  p[used++] = LDX_W(BPF_REG_4, BPF_REG_1, 4);
  p[used++] = LDX_W(BPF_REG_5, BPF_REG_1, 8);
  bool wildcard = false;
  for (lua_Integer i = n; i >= 1 && !wildcard; i--) {
    rule r;
    lua_geti(L, 1, i);
    read_rule(L, lua_gettop(L), (int)i, &r);
    lua_pop(L, 1);
    used += (size_t)rule_block(&r, p + used, &wildcard);
  }
  /* after a rule matching everything nothing more is reached */
  if (!wildcard) {
    p[used++] = MOV64_IMM(BPF_REG_0, 0);
    p[used++] = EXIT();
  }
  lua_pushlstring(L, (const char *)p, used * sizeof *p);
  return 1;
}

typedef struct bpfprog {
  int fd;
} bpfprog;

static long sys_bpf(int cmd, union bpf_attr *attr) {
  return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

/* devices.load(program) -> prog | nil, err, errno
** Loads a device program (a string from devices.program) into the
** kernel. The handle (luactr.bpfprog) holds its fd until closed or
** collected; a program stays attached to a cgroup after that. */
static int l_load(lua_State *L) {
  size_t len;
  const char *insns = luaL_checklstring(L, 1, &len);
  if (len == 0 || len % sizeof(struct bpf_insn) != 0)
    return luaL_argerror(L, 1, "not a string of BPF instructions");
  bpfprog *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->fd = -1;
  luaL_setmetatable(L, LX_BPFPROG);
  static char license[] = "GPL";
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = (uint64_t)(uintptr_t)insns;
  attr.insn_cnt = (uint32_t)(len / sizeof(struct bpf_insn));
  attr.license = (uint64_t)(uintptr_t)license;
  long fd = sys_bpf(BPF_PROG_LOAD, &attr);
  if (fd < 0) {
    /* again with the verifier's log, for the message: its end says why */
    int err = errno;
    size_t size = 1 << 16;
    char *log = lua_newuserdatauv(L, size, 0);
    log[0] = '\0';
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = (uint32_t)size;
    attr.log_level = 1;
    fd = sys_bpf(BPF_PROG_LOAD, &attr);
    if (fd >= 0) {  /* a passing failure: keep the program */
      lua_pop(L, 1);
      h->fd = (int)fd;
      return 1;
    }
    log[size - 1] = '\0';
    size_t n = strlen(log);
    while (n > 0 && log[n - 1] == '\n')
      log[--n] = '\0';
    /* the last line that is not the verifier's statistics */
    char *end = log + n;
    const char *last;
    for (;;) {
      char *start = end;
      while (start > log && start[-1] != '\n')
        start--;
      last = start;
      if (start == log || (strncmp(start, "processed ", 10) != 0 &&
                           strncmp(start, "verification time", 17) != 0))
        break;
      end = start - 1;  /* the newline before it */
      *end = '\0';
    }
    lua_pushfstring(L, "bpf load: %s%s%s", strerror(err), *last ? ": " : "", last);
    return lx_failmsg(L, lua_tostring(L, -1), err);
  }
  h->fd = (int)fd;
  return 1;
}

static bpfprog *checkprog(lua_State *L) {
  bpfprog *h = luaL_checkudata(L, 1, LX_BPFPROG);
  if (h->fd < 0)
    luaL_error(L, "devices: the program is closed");
  return h;
}

/* Attaches or detaches the program to or from the folder at arg 2. */
static int attach(lua_State *L, int cmd, const char *what) {
  bpfprog *h = checkprog(L);
  const char *dir = luaL_checkstring(L, 2);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    lua_pushfstring(L, "open %s", dir);
    return lx_fail(L, lua_tostring(L, -1), errno);
  }
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.target_fd = (uint32_t)dirfd;
  attr.attach_bpf_fd = (uint32_t)h->fd;
  attr.attach_type = BPF_CGROUP_DEVICE;
  /* ALLOW_MULTI: programs of the folders above still run, and all of
  ** them must allow a request */
  if (cmd == BPF_PROG_ATTACH)
    attr.attach_flags = BPF_F_ALLOW_MULTI;
  long r = sys_bpf(cmd, &attr);
  int err = errno;
  close(dirfd);
  if (r < 0) {
    lua_pushfstring(L, "bpf %s %s", what, dir);
    return lx_fail(L, lua_tostring(L, -1), err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* prog:attach(dir) -> true | nil, err, errno
** Attaches the program to the cgroup v2 folder `dir` as its device
** filter (BPF_CGROUP_DEVICE). It stays there until detached or the
** folder is removed. Whose folder may be given is the caller's policy. */
static int l_attach(lua_State *L) {
  return attach(L, BPF_PROG_ATTACH, "attach");
}

/* prog:detach(dir) -> true | nil, err, errno */
static int l_detach(lua_State *L) {
  return attach(L, BPF_PROG_DETACH, "detach");
}

/* prog:close(): releases the fd; idempotent (also __gc and __close). */
static int l_close(lua_State *L) {
  bpfprog *h = luaL_checkudata(L, 1, LX_BPFPROG);
  if (h->fd >= 0) {
    close(h->fd);
    h->fd = -1;
  }
  return 0;
}

/* }====== */

static const luaL_Reg prog_methods[] = {
  {"attach", l_attach},
  {"detach", l_detach},
  {"close", l_close},
  {NULL, NULL},
};

static const luaL_Reg devices_funcs[] = {
  {"program", l_program},
  {"load", l_load},
  {NULL, NULL},
};

void lx_open_devices(lua_State *L) {
  if (luaL_newmetatable(L, LX_BPFPROG)) {
    luaL_newlib(L, prog_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, devices_funcs);
  /* the request's bits, for reading programs in tests */
  lua_pushinteger(L, BPF_DEVCG_DEV_BLOCK);
  lua_setfield(L, -2, "DEV_BLOCK");
  lua_pushinteger(L, BPF_DEVCG_DEV_CHAR);
  lua_setfield(L, -2, "DEV_CHAR");
}
