/*
** seccomp.c -- seccomp filters from an OCI profile table (libseccomp).
**
** The parent compiles `linux.seccomp` with libseccomp and exports the BPF
** program into memory (lx_seccomp_compile); the child installs it with
** the seccomp(2) system call alone (lx_seccomp_load), which is
** async-signal-safe where libseccomp's own seccomp_load is not (it
** allocates). The profile is the plain OCI form: Docker's includes and
** excludes are resolved by the Lua layer (luactr.seccomp) beforehand.
**
**   seccomp.compile(profile) -> the number of BPF instructions (a check)
**   seccomp.native_arch()    -> "SCMP_ARCH_X86_64", ...
*/
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "luactr.h"

#define LX_SECCOMP_CTX "luactr.seccomp.ctx"

/* {====== names ====== */

static const struct {
  const char *name;
  uint32_t token;
} arches[] = {
  {"SCMP_ARCH_X86", SCMP_ARCH_X86},
  {"SCMP_ARCH_X86_64", SCMP_ARCH_X86_64},
  {"SCMP_ARCH_X32", SCMP_ARCH_X32},
  {"SCMP_ARCH_ARM", SCMP_ARCH_ARM},
  {"SCMP_ARCH_AARCH64", SCMP_ARCH_AARCH64},
  {"SCMP_ARCH_MIPS", SCMP_ARCH_MIPS},
  {"SCMP_ARCH_MIPS64", SCMP_ARCH_MIPS64},
  {"SCMP_ARCH_MIPS64N32", SCMP_ARCH_MIPS64N32},
  {"SCMP_ARCH_MIPSEL", SCMP_ARCH_MIPSEL},
  {"SCMP_ARCH_MIPSEL64", SCMP_ARCH_MIPSEL64},
  {"SCMP_ARCH_MIPSEL64N32", SCMP_ARCH_MIPSEL64N32},
  {"SCMP_ARCH_PPC", SCMP_ARCH_PPC},
  {"SCMP_ARCH_PPC64", SCMP_ARCH_PPC64},
  {"SCMP_ARCH_PPC64LE", SCMP_ARCH_PPC64LE},
  {"SCMP_ARCH_S390", SCMP_ARCH_S390},
  {"SCMP_ARCH_S390X", SCMP_ARCH_S390X},
  {"SCMP_ARCH_PARISC", SCMP_ARCH_PARISC},
  {"SCMP_ARCH_PARISC64", SCMP_ARCH_PARISC64},
  {"SCMP_ARCH_RISCV64", SCMP_ARCH_RISCV64},
  {NULL, 0},
};

static const struct {
  const char *name;
  enum scmp_compare op;
} ops[] = {
  {"SCMP_CMP_NE", SCMP_CMP_NE},
  {"SCMP_CMP_LT", SCMP_CMP_LT},
  {"SCMP_CMP_LE", SCMP_CMP_LE},
  {"SCMP_CMP_EQ", SCMP_CMP_EQ},
  {"SCMP_CMP_GE", SCMP_CMP_GE},
  {"SCMP_CMP_GT", SCMP_CMP_GT},
  {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
  {NULL, 0},
};

static const struct {
  const char *name;
  unsigned flag;
} filter_flags[] = {
  {"SECCOMP_FILTER_FLAG_TSYNC", SECCOMP_FILTER_FLAG_TSYNC},
  {"SECCOMP_FILTER_FLAG_LOG", SECCOMP_FILTER_FLAG_LOG},
  {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", SECCOMP_FILTER_FLAG_SPEC_ALLOW},
  {NULL, 0},
};

/* The action named `name`; `ret` is the errno of SCMP_ACT_ERRNO (and the
** message of SCMP_ACT_TRACE). Raises on a name it does not know. */
static uint32_t action(lua_State *L, const char *name, int ret,
                       const char *where) {
  if (strcmp(name, "SCMP_ACT_ALLOW") == 0)
    return SCMP_ACT_ALLOW;
  if (strcmp(name, "SCMP_ACT_ERRNO") == 0)
    return SCMP_ACT_ERRNO((uint32_t)ret);
  if (strcmp(name, "SCMP_ACT_KILL") == 0 ||
      strcmp(name, "SCMP_ACT_KILL_THREAD") == 0)
    return SCMP_ACT_KILL_THREAD;
  if (strcmp(name, "SCMP_ACT_KILL_PROCESS") == 0)
    return SCMP_ACT_KILL_PROCESS;
  if (strcmp(name, "SCMP_ACT_TRAP") == 0)
    return SCMP_ACT_TRAP;
  if (strcmp(name, "SCMP_ACT_TRACE") == 0)
    return SCMP_ACT_TRACE((uint32_t)ret);
  if (strcmp(name, "SCMP_ACT_LOG") == 0)
    return SCMP_ACT_LOG;
  if (strcmp(name, "SCMP_ACT_NOTIFY") == 0)
    luaL_error(L, "%s: SCMP_ACT_NOTIFY is not supported", where);
  luaL_error(L, "%s: unknown action '%s'", where, name);
  return 0;
}

/* }====== */

/* {====== compiling, in the parent ====== */

/* The libseccomp context lives in a box with a __gc, so that an error
** raised halfway through a profile cannot leak it. */
typedef struct box {
  scmp_filter_ctx ctx;
} box;

static int box_gc(lua_State *L) {
  box *b = luaL_checkudata(L, 1, LX_SECCOMP_CTX);
  if (b->ctx)
    seccomp_release(b->ctx);
  b->ctx = NULL;
  return 0;
}

static const char *field_str(lua_State *L, int idx, const char *key,
                             const char *where) {
  int t = lua_getfield(L, idx, key);
  if (t != LUA_TNIL && t != LUA_TSTRING)
    luaL_error(L, "%s.%s: expected a string", where, key);
  const char *s = lua_tostring(L, -1);  /* anchored by the profile */
  lua_pop(L, 1);
  return s;
}

static lua_Integer field_int(lua_State *L, int idx, const char *key,
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

/* Pushes t[key] when it is an array (returns its length), or nothing
** (returns -1) when it is absent. */
static lua_Integer field_array(lua_State *L, int idx, const char *key,
                               const char *where) {
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return -1;
  }
  if (t != LUA_TTABLE)
    luaL_error(L, "%s.%s: expected an array", where, key);
  return luaL_len(L, -1);
}

/* Reads the architectures into `tokens`, the native one first, each once;
** returns how many. */
static int read_arches(lua_State *L, int idx, uint32_t tokens[LX_SECCOMP_MAX],
                       const char *where) {
  int count = 0;
  tokens[count++] = seccomp_arch_native();
  lua_Integer n = field_array(L, idx, "architectures", where);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, -1, i);
    const char *name = lua_tostring(L, -1);
    int k = 0;
    while (arches[k].name && !(name && strcmp(arches[k].name, name) == 0))
      k++;
    if (!arches[k].name)
      luaL_error(L, "%s.architectures[%d]: unknown architecture '%s'", where,
                 (int)i, name ? name : luaL_typename(L, -1));
    int seen = 0;
    while (seen < count && tokens[seen] != arches[k].token)
      seen++;
    if (seen == count) {
      if (count == LX_SECCOMP_MAX - 1)
        luaL_error(L, "%s.architectures: too many", where);
      tokens[count++] = arches[k].token;
    }
    lua_pop(L, 1);
  }
  if (n >= 0)
    lua_pop(L, 1);
  return count;
}

/* Reads the `args` of a syscalls entry (at `idx`) into `cmp`; returns how
** many, and whether an argument is compared more than once in `*repeats`
** (libseccomp cannot AND two comparisons of one argument: such a rule
** becomes one rule per comparison, as in runc and crun). */
static int read_args(lua_State *L, int idx, struct scmp_arg_cmp cmp[6],
                     bool *repeats, const char *where) {
  lua_Integer n = field_array(L, idx, "args", where);
  int count = 0, seen = 0;
  *repeats = false;
  if (n > 6)
    luaL_error(L, "%s.args: more than 6 comparisons", where);
  for (lua_Integer i = 1; i <= n; i++) {
    const char *awhere = lua_pushfstring(L, "%s.args[%d]", where, (int)i);
    if (lua_geti(L, -2, i) != LUA_TTABLE)
      luaL_error(L, "%s: expected a table", awhere);
    int a = lua_gettop(L);
    static const char *const known[] = {"index", "value", "valueTwo", "op",
                                        NULL};
    lx_checkkeys(L, a, awhere, known);
    lua_Integer index = field_int(L, a, "index", awhere, -1);
    if (index < 0 || index > 5)
      luaL_error(L, "%s.index: expected 0 to 5", awhere);
    const char *opname = field_str(L, a, "op", awhere);
    int k = 0;
    while (ops[k].name && !(opname && strcmp(ops[k].name, opname) == 0))
      k++;
    if (!ops[k].name)
      luaL_error(L, "%s: unknown op '%s'", awhere, opname ? opname : "(none)");
    if (seen & (1 << index))
      *repeats = true;
    seen |= 1 << index;
    cmp[count].arg = (unsigned)index;
    cmp[count].op = ops[k].op;
    cmp[count].datum_a = (scmp_datum_t)field_int(L, a, "value", awhere, 0);
    cmp[count].datum_b = (scmp_datum_t)field_int(L, a, "valueTwo", awhere, 0);
    count++;
    lua_pop(L, 2);  /* the comparison and its name */
  }
  if (n >= 0)
    lua_pop(L, 1);
  return count;
}

static void add_rules(lua_State *L, int idx, scmp_filter_ctx ctx,
                      uint32_t defact, const char *where) {
  lua_Integer n = field_array(L, idx, "syscalls", where);
  for (lua_Integer i = 1; i <= n; i++) {
    const char *ewhere = lua_pushfstring(L, "%s.syscalls[%d]", where, (int)i);
    if (lua_geti(L, -2, i) != LUA_TTABLE)
      luaL_error(L, "%s: expected a table", ewhere);
    int e = lua_gettop(L);
    static const char *const known[] = {"names", "action", "errnoRet",
                                        "args", NULL};
    lx_checkkeys(L, e, ewhere, known);
    const char *actname = field_str(L, e, "action", ewhere);
    if (!actname)
      luaL_error(L, "%s.action is missing", ewhere);
    int ret = (int)field_int(L, e, "errnoRet", ewhere, EPERM);
    uint32_t act = action(L, actname, ret, ewhere);
    struct scmp_arg_cmp cmp[6];
    bool repeats;
    int ncmp = read_args(L, e, cmp, &repeats, ewhere);
    lua_Integer nn = field_array(L, e, "names", ewhere);
    for (lua_Integer j = 1; j <= nn; j++) {
      if (lua_geti(L, -1, j) != LUA_TSTRING)
        luaL_error(L, "%s.names[%d]: expected a string", ewhere, (int)j);
      const char *name = lua_tostring(L, -1);
      int nr = seccomp_syscall_resolve_name(name);
      /* A name this libseccomp does not know is skipped, as runc and crun
      ** do: profiles list the calls of every architecture. A rule that
      ** repeats the default action changes nothing (libseccomp refuses
      ** it). */
      if (nr != __NR_SCMP_ERROR && act != defact) {
        int rc = 0;
        if (!repeats) {
          rc = seccomp_rule_add_array(ctx, act, nr, (unsigned)ncmp, cmp);
        } else {
          for (int c = 0; c < ncmp && rc == 0; c++)
            rc = seccomp_rule_add_array(ctx, act, nr, 1, &cmp[c]);
        }
        if (rc < 0)
          luaL_error(L, "%s: syscall %s: %s", ewhere, name, strerror(-rc));
      }
      lua_pop(L, 1);
    }
    if (nn >= 0)
      lua_pop(L, 1);
    lua_pop(L, 2);  /* the entry and its name */
  }
  if (n >= 0)
    lua_pop(L, 1);
}

/* Writes the filter's BPF into a memory file and copies it into a new
** userdata (pushed). Returns its length in instructions, or -errno. */
static long export_bpf(lua_State *L, scmp_filter_ctx ctx) {
  int fd = memfd_create("luactr-seccomp", MFD_CLOEXEC);
  if (fd < 0)
    return -errno;
  int rc = seccomp_export_bpf(ctx, fd);
  off_t size = rc < 0 ? -1 : lseek(fd, 0, SEEK_END);
  if (rc < 0 || size < 0 || size % sizeof(struct sock_filter) != 0) {
    int e = rc < 0 ? -rc : (size < 0 ? errno : EPROTO);
    close(fd);
    return -e;
  }
  char *buf = lua_newuserdatauv(L, (size_t)size + 1, 0);
  size_t done = 0;
  while (done < (size_t)size) {
    ssize_t r = pread(fd, buf + done, (size_t)size - done, (off_t)done);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      int e = r < 0 ? errno : EPROTO;
      close(fd);
      return -e;
    }
    done += (size_t)r;
  }
  close(fd);
  return (long)(size / (off_t)sizeof(struct sock_filter));
}

/* Compiles one filter for the architectures `tokens` (n of them) and
** pushes its program (a userdata); returns its length in instructions.
** With `rules` false the filter has none: it only answers `badarch` for
** an architecture outside `tokens`. */
static long compile_one(lua_State *L, int idx, const uint32_t *tokens, int n,
                        uint32_t defact, uint32_t badarch, bool rules,
                        const char *where) {
  box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->ctx = NULL;
  luaL_setmetatable(L, LX_SECCOMP_CTX);
  b->ctx = seccomp_init(defact);
  if (!b->ctx)
    luaL_error(L, "%s: seccomp_init failed", where);
  int rc = seccomp_attr_set(b->ctx, SCMP_FLTATR_ACT_BADARCH, badarch);
  bool native = false;
  for (int i = 0; i < n && rc == 0; i++) {
    native = native || tokens[i] == seccomp_arch_native();
    rc = seccomp_arch_add(b->ctx, tokens[i]);
    rc = rc == -EEXIST ? 0 : rc;
  }
  if (rc == 0 && !native)
    rc = seccomp_arch_remove(b->ctx, SCMP_ARCH_NATIVE);
  if (rc < 0)
    luaL_error(L, "%s: architectures: %s", where, strerror(-rc));
  if (rules)
    add_rules(L, idx, b->ctx, defact, where);
  long len = export_bpf(L, b->ctx);
  seccomp_release(b->ctx);
  b->ctx = NULL;
  if (len < 0)
    luaL_error(L, "%s: export: %s", where, strerror((int)-len));
  if (len > BPF_MAXINSNS)
    luaL_error(L, "%s: the filter is too long (%d instructions)", where,
               (int)len);
  lua_remove(L, -2);  /* the box; the program stays */
  return len;
}

/* libseccomp's time to compile grows much faster than the number of
** rules times the number of architectures: Docker's profile for x86_64,
** x86 and x32 takes it 10 ms, against 3.5 ms for the three alone. So each
** architecture gets a filter of its own that lets any other one through
** (SCMP_FLTATR_ACT_BADARCH), and one more filter with no rules refuses
** the architectures the profile does not name. The kernel runs every
** filter and takes the strictest answer: the same as one filter. */
void lx_seccomp_compile(lua_State *L, int idx, lx_seccomp *f) {
  static const char *const known[] = {"defaultAction", "defaultErrnoRet",
                                      "architectures", "flags", "syscalls",
                                      NULL};
  const char *where = "spawn: linux.seccomp";
  idx = lua_absindex(L, idx);
  lx_checkkeys(L, idx, where, known);
  memset(f, 0, sizeof *f);
  const char *defname = field_str(L, idx, "defaultAction", where);
  if (!defname)
    luaL_error(L, "%s.defaultAction is missing", where);
  int defret = (int)field_int(L, idx, "defaultErrnoRet", where, EPERM);
  uint32_t defact = action(L, defname, defret, where);
  lua_Integer nf = field_array(L, idx, "flags", where);
  for (lua_Integer i = 1; i <= nf; i++) {
    lua_geti(L, -1, i);
    const char *name = lua_tostring(L, -1);
    int k = 0;
    while (filter_flags[k].name &&
           !(name && strcmp(filter_flags[k].name, name) == 0))
      k++;
    if (!filter_flags[k].name)
      luaL_error(L, "%s.flags[%d]: unknown flag '%s'", where, (int)i,
                 name ? name : luaL_typename(L, -1));
    f->flags |= filter_flags[k].flag;
    lua_pop(L, 1);
  }
  if (nf >= 0)
    lua_pop(L, 1);
  uint32_t tokens[LX_SECCOMP_MAX];
  int ntokens = read_arches(L, idx, tokens, where);
  int top = lua_gettop(L);
  long lens[LX_SECCOMP_MAX], total = 0;
  uint32_t kill = SCMP_ACT_KILL_THREAD;  /* libseccomp's own default */
  if (ntokens == 1 || defact == SCMP_ACT_ALLOW) {
    /* one architecture, or a denylist (little to compile): one filter */
    f->n = 1;
    lens[0] = compile_one(L, idx, tokens, ntokens, defact, kill, true, where);
  } else {
    f->n = ntokens + 1;
    for (int i = 0; i < ntokens; i++)
      lens[i] = compile_one(L, idx, &tokens[i], 1, defact, SCMP_ACT_ALLOW,
                            true, where);
    lens[ntokens] = compile_one(L, idx, tokens, ntokens, SCMP_ACT_ALLOW,
                                kill, false, where);
  }
  for (int i = 0; i < f->n; i++)
    total += lens[i];
  /* one block for every program, so that one value anchors them all */
  struct sock_filter *all = lua_newuserdatauv(L, (size_t)total * sizeof *all
                                              + 1, 0);
  for (int i = 0, at = 0; i < f->n; i++) {
    memcpy(all + at, lua_touserdata(L, top + 1 + i),
           (size_t)lens[i] * sizeof *all);
    f->progs[i].len = (unsigned short)lens[i];
    f->progs[i].filter = all + at;
    at += (int)lens[i];
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  f->set = true;
}

/* }====== */

/* {====== the child (async-signal-safe only) ====== */

int lx_seccomp_load(const lx_seccomp *f) {
  for (int i = 0; i < f->n; i++)
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, f->flags,
                &f->progs[i]) < 0)
      return -1;
  return 0;
}

/* }====== */

/* {====== Lua bindings ====== */

/* seccomp.compile(profile) -> number of BPF instructions, of filters
** Compiles an OCI linux.seccomp table as spawn would, and raises where
** spawn would: a way to check a profile without starting anything. */
static int l_compile(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lx_seccomp f;
  lx_seccomp_compile(L, 1, &f);
  int total = 0;
  for (int i = 0; i < f.n; i++)
    total += f.progs[i].len;
  lua_pushinteger(L, total);
  lua_pushinteger(L, f.n);
  return 2;
}

/* seccomp.native_arch() -> the OCI name of this machine's architecture */
static int l_native_arch(lua_State *L) {
  uint32_t token = seccomp_arch_native();
  for (int k = 0; arches[k].name; k++)
    if (arches[k].token == token) {
      lua_pushstring(L, arches[k].name);
      return 1;
    }
  return lx_failmsg(L, "seccomp: unknown native architecture", ENOSYS);
}

static const luaL_Reg seccomp_funcs[] = {
  {"compile", l_compile},
  {"native_arch", l_native_arch},
  {NULL, NULL},
};

void lx_open_seccomp(lua_State *L) {
  luaL_newmetatable(L, LX_SECCOMP_CTX);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, seccomp_funcs);
}

/* }====== */
