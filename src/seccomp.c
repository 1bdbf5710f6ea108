/*
** seccomp.c -- seccomp filters from an OCI profile table (libseccomp).
**
** The parent compiles `linux.seccomp` with libseccomp and exports the BPF
** program into memory (lx_seccomp_compile); the child installs it with
** the seccomp(2) system call alone (lx_seccomp_load), which is
** async-signal-safe where libseccomp's own seccomp_load is not (it
** allocates). The profile is the plain OCI form: Docker's includes and
** excludes are resolved by the Lua layer (luactr.spec.seccomp) beforehand.
**
** libseccomp takes milliseconds to compile Docker's profile, every start.
** So compiled filters can be kept in a folder that the caller names at
** each compile (spawn's opts.seccomp_cache; whether there is one, and
** where, is luactr.spec.seccomp's policy), a file per profile, named by
** a digest of the profile and of everything else the program depends on;
** a file is only ever used after it has passed every check (its owner
** and mode, its size, its layout, a digest over its content and its
** key), and on any doubt the profile is compiled again.
**
**   seccomp.compile(profile, [{ cache = folder }])
**                            -> BPF instructions, filters, from_cache
**   seccomp.native_arch()    -> "SCMP_ARCH_X86_64", ...
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <nettle/sha2.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
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

/* Reads the architectures into `tokens`, the native one first, each once;
** returns how many. */
static int read_arches(lua_State *L, int idx, uint32_t tokens[LX_SECCOMP_MAX],
                       const char *where) {
  int count = 0;
  tokens[count++] = seccomp_arch_native();
  lua_Integer n = lx_opt_array(L, idx, "architectures", where);
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
  lua_Integer n = lx_opt_array(L, idx, "args", where);
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
    lua_Integer index = lx_opt_int(L, a, "index", awhere, -1);
    if (index < 0 || index > 5)
      luaL_error(L, "%s.index: expected 0 to 5", awhere);
    const char *opname = lx_opt_str(L, a, "op", awhere);
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
    cmp[count].datum_a = (scmp_datum_t)lx_opt_int(L, a, "value", awhere, 0);
    cmp[count].datum_b = (scmp_datum_t)lx_opt_int(L, a, "valueTwo", awhere, 0);
    count++;
    lua_pop(L, 2);  /* the comparison and its name */
  }
  if (n >= 0)
    lua_pop(L, 1);
  return count;
}

static void add_rules(lua_State *L, int idx, scmp_filter_ctx ctx,
                      uint32_t defact, const char *where) {
  lua_Integer n = lx_opt_array(L, idx, "syscalls", where);
  for (lua_Integer i = 1; i <= n; i++) {
    const char *ewhere = lua_pushfstring(L, "%s.syscalls[%d]", where, (int)i);
    if (lua_geti(L, -2, i) != LUA_TTABLE)
      luaL_error(L, "%s: expected a table", ewhere);
    int e = lua_gettop(L);
    static const char *const known[] = {"names", "action", "errnoRet",
                                        "args", NULL};
    lx_checkkeys(L, e, ewhere, known);
    const char *actname = lx_opt_str(L, e, "action", ewhere);
    if (!actname)
      luaL_error(L, "%s.action is missing", ewhere);
    int ret = (int)lx_opt_int(L, e, "errnoRet", ewhere, EPERM);
    uint32_t act = action(L, actname, ret, ewhere);
    struct scmp_arg_cmp cmp[6];
    bool repeats;
    int ncmp = read_args(L, e, cmp, &repeats, ewhere);
    lua_Integer nn = lx_opt_array(L, e, "names", ewhere);
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
** an architecture outside `tokens`. With `tree`, the calls are found by
** a binary search (libseccomp's SCMP_FLTATR_CTL_OPTIMIZE 2, when it has
** it): slower to compile, faster to install and to run. */
static long compile_one(lua_State *L, int idx, const uint32_t *tokens, int n,
                        uint32_t defact, uint32_t badarch, bool rules,
                        bool tree, const char *where) {
  box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->ctx = NULL;
  luaL_setmetatable(L, LX_SECCOMP_CTX);
  b->ctx = seccomp_init(defact);
  if (!b->ctx)
    luaL_error(L, "%s: seccomp_init failed", where);
  int rc = seccomp_attr_set(b->ctx, SCMP_FLTATR_ACT_BADARCH, badarch);
  if (rc == 0 && tree)
    seccomp_attr_set(b->ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);  /* or a list */
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
** x86 and x32 takes it 10 ms, against 3.5 ms for the three alone. So a
** profile compiled for one start only gets a filter per architecture
** that lets any other one through (SCMP_FLTATR_ACT_BADARCH), and one
** more filter with no rules refuses the architectures the profile does
** not name. The kernel runs every filter and takes the strictest answer:
** the same as one filter.
** But each filter costs every start too: the kernel checks it, JITs it
** and runs it for every call number to find the calls it always allows.
** Docker's profile as those four filters took 1.9 ms to install (and
** run 200 calls) on a 2-CPU VM, as one filter with a binary search of
** the calls 1.0 ms. So a profile that is `kept` (in the cache, for the
** starts to come) is compiled into that one filter: 25 ms, once.
** Fills f->n and f->progs; pushes their block. */
static void compile_profile(lua_State *L, int idx, lx_seccomp *f,
                            bool kept) {
  const char *where = "spawn: linux.seccomp";
  const char *defname = lx_opt_str(L, idx, "defaultAction", where);
  if (!defname)
    luaL_error(L, "%s.defaultAction is missing", where);
  int defret = (int)lx_opt_int(L, idx, "defaultErrnoRet", where, EPERM);
  uint32_t defact = action(L, defname, defret, where);
  uint32_t tokens[LX_SECCOMP_MAX];
  int ntokens = read_arches(L, idx, tokens, where);
  int top = lua_gettop(L);
  long lens[LX_SECCOMP_MAX], total = 0;
  uint32_t kill = SCMP_ACT_KILL_THREAD;  /* libseccomp's own default */
  if (kept || ntokens == 1 || defact == SCMP_ACT_ALLOW) {
    /* kept, one architecture, or a denylist (little to compile) */
    f->n = 1;
    lens[0] = compile_one(L, idx, tokens, ntokens, defact, kill, true, kept,
                          where);
  } else {
    f->n = ntokens + 1;
    for (int i = 0; i < ntokens; i++)
      lens[i] = compile_one(L, idx, &tokens[i], 1, defact, SCMP_ACT_ALLOW,
                            true, false, where);
    lens[ntokens] = compile_one(L, idx, tokens, ntokens, SCMP_ACT_ALLOW,
                                kill, false, false, where);
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
}

/* }====== */

/* {====== the cache of compiled filters ====== */

/* A cache file:
**
**   magic[8]  n (u32)  len[n] (u32)  the n programs (len[i] sock_filter
**   each)  mac[32] = sha256(key, every byte before mac)
**
** in host byte order (the key holds the architecture). The key is a
** sha256 over the profile, encoded so that two profiles that compile
** differently never encode alike, and over what else the program
** depends on: this code (its build time, see BUILT), libseccomp's
** version, the native architecture and the kernel (libseccomp checks
** what it supports). The mac covers the key, so that a file is only
** good under its own name. */
static const char magic[8] = "LXSCMP01";

/* __DATE__ and __TIME__ of this file's build: a changed compiler of
** profiles (this file) never reads the programs of an older one. Under
** SOURCE_DATE_EPOCH (reproducible builds) gcc makes them that date. */
static const char BUILT[] = __DATE__ " " __TIME__;

#define MAC_SIZE SHA256_DIGEST_SIZE
#define HEAD_SIZE(n) (sizeof magic + 4 + 4 * (size_t)(n))
#define MAX_FILE (HEAD_SIZE(LX_SECCOMP_MAX) \
                  + (size_t)LX_SECCOMP_MAX * BPF_MAXINSNS \
                    * sizeof(struct sock_filter) + MAC_SIZE)

/* {------ the key ------ */

/* The encoder of a key. Every datum is tagged and strings carry their
** length. `ok` turns false on anything compile_profile would refuse or
** read differently: such a profile is compiled (and fails there, with
** its own message), never looked up. */
typedef struct keyer {
  struct sha256_ctx ctx;
  bool ok;
} keyer;

static void key_raw(keyer *k, char tag, const void *p, size_t n) {
  uint64_t len = n;
  sha256_update(&k->ctx, 1, (const uint8_t *)&tag);
  sha256_update(&k->ctx, sizeof len, (const uint8_t *)&len);
  sha256_update(&k->ctx, n, p);
}

/* The string at the top (popped); only a string is good. */
static void key_top_str(lua_State *L, keyer *k) {
  size_t n;
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n)
                                                  : NULL;
  if (s)
    key_raw(k, 's', s, n);
  else
    k->ok = false;
  lua_pop(L, 1);
}

/* t[key], a string or absent, as lx_opt_str reads it. */
static void key_str(lua_State *L, int idx, const char *key, keyer *k) {
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    key_raw(k, 'n', NULL, 0);
  } else {
    key_top_str(L, k);
  }
}

/* t[key], an integer or absent, as lx_opt_int reads it. */
static void key_int(lua_State *L, int idx, const char *key, keyer *k) {
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    key_raw(k, 'n', NULL, 0);
  } else {
    int isint;
    int64_t v = (int64_t)lua_tointegerx(L, -1, &isint);
    if (isint)
      key_raw(k, 'i', &v, sizeof v);
    else
      k->ok = false;
  }
  lua_pop(L, 1);
}

/* Pushes t[key] when it is an array (returns its length), or nothing
** (returns -1) when absent or not a table (then the key is not ok). */
static lua_Integer key_array(lua_State *L, int idx, const char *key,
                             keyer *k) {
  int t = lua_getfield(L, idx, key);
  if (t != LUA_TTABLE) {
    lua_pop(L, 1);
    k->ok = k->ok && t == LUA_TNIL;
    key_raw(k, 'n', NULL, 0);
    return -1;
  }
  lua_Integer n = luaL_len(L, -1);
  int64_t len = n;
  key_raw(k, 'a', &len, sizeof len);
  return n;
}

/* Are the keys of the table at `idx` all strings among `known`? What
** lx_checkkeys accepts, without raising. */
static bool keys_known(lua_State *L, int idx, const char *const known[]) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    size_t i = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *name = lua_tostring(L, -1);
      while (known[i] && strcmp(known[i], name) != 0)
        i++;
    }
    if (lua_type(L, -1) != LUA_TSTRING || !known[i]) {
      lua_pop(L, 1);
      return false;
    }
  }
  return true;
}

/* An array of strings, t[key] (absent or an array). */
static void key_strings(lua_State *L, int idx, const char *key, keyer *k) {
  lua_Integer n = key_array(L, idx, key, k);
  for (lua_Integer i = 1; i <= n && k->ok; i++) {
    lua_geti(L, -1, i);
    key_top_str(L, k);
  }
  if (n >= 0)
    lua_pop(L, 1);
}

static const char *const profile_keys[] = {"defaultAction",
                                           "defaultErrnoRet",
                                           "architectures", "flags",
                                           "syscalls", NULL};
static const char *const entry_keys[] = {"names", "action", "errnoRet",
                                         "args", NULL};
static const char *const arg_keys[] = {"index", "value", "valueTwo", "op",
                                       NULL};

/* The syscalls entry at the top of the stack. */
static void key_entry(lua_State *L, keyer *k) {
  int e = lua_gettop(L);
  if (lua_type(L, e) != LUA_TTABLE || !keys_known(L, e, entry_keys)) {
    k->ok = false;
    return;
  }
  key_str(L, e, "action", k);
  key_int(L, e, "errnoRet", k);
  lua_Integer na = key_array(L, e, "args", k);
  for (lua_Integer i = 1; i <= na && k->ok; i++) {
    int a = lua_gettop(L) + 1;
    if (lua_geti(L, a - 1, i) != LUA_TTABLE || !keys_known(L, a, arg_keys)) {
      k->ok = false;
    } else {
      key_int(L, a, "index", k);
      key_int(L, a, "value", k);
      key_int(L, a, "valueTwo", k);
      key_str(L, a, "op", k);
    }
    lua_pop(L, 1);
  }
  if (na >= 0)
    lua_pop(L, 1);
  key_strings(L, e, "names", k);
}

/* The key of the profile at `idx` into `key`; false when the profile is
** not one to look up (see keyer). */
static bool profile_key(lua_State *L, int idx, uint8_t key[MAC_SIZE]) {
  keyer k;
  sha256_init(&k.ctx);
  k.ok = keys_known(L, idx, profile_keys);
  key_raw(&k, 'v', magic, sizeof magic);
  key_raw(&k, 'v', BUILT, sizeof BUILT - 1);
  const struct scmp_version *v = seccomp_version();
  uint32_t about[4] = {v->major, v->minor, v->micro, seccomp_arch_native()};
  key_raw(&k, 'v', about, sizeof about);
  struct utsname u;
  if (uname(&u) < 0)
    return false;
  key_raw(&k, 'v', u.release, strlen(u.release));
  key_raw(&k, 'v', u.version, strlen(u.version));
  key_raw(&k, 'v', u.machine, strlen(u.machine));
  key_str(L, idx, "defaultAction", &k);
  key_int(L, idx, "defaultErrnoRet", &k);
  key_strings(L, idx, "flags", &k);
  key_strings(L, idx, "architectures", &k);
  lua_Integer n = k.ok ? key_array(L, idx, "syscalls", &k) : -1;
  for (lua_Integer i = 1; i <= n && k.ok; i++) {
    lua_geti(L, -1, i);
    key_entry(L, &k);
    lua_pop(L, 1);
  }
  if (n >= 0)
    lua_pop(L, 1);
  sha256_digest(&k.ctx, MAC_SIZE, key);
  return k.ok;
}

/* }------ */
/* {------ files ------ */

/* The file name of a key: its digest in hex. */
static void key_name(const uint8_t key[MAC_SIZE], char name[2 * MAC_SIZE + 1]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < MAC_SIZE; i++) {
    name[2 * i] = digits[key[i] >> 4];
    name[2 * i + 1] = digits[key[i] & 15];
  }
  name[2 * MAC_SIZE] = '\0';
}

static void mac_of(const uint8_t key[MAC_SIZE], const void *data, size_t n,
                   uint8_t mac[MAC_SIZE]) {
  struct sha256_ctx ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, MAC_SIZE, key);
  sha256_update(&ctx, n, data);
  sha256_digest(&ctx, MAC_SIZE, mac);
}

/* Is `st` ours and writable by no one else? A file anyone else could
** have written is never trusted. */
static bool private_to_us(const struct stat *st) {
  return st->st_uid == geteuid() && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* Opens the cache folder `dir` (checked private_to_us); -1 with errno. */
static int open_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && (fstat(fd, &st) < 0 || !private_to_us(&st))) {
    close(fd);
    errno = EPERM;
    return -1;
  }
  return fd;
}

static bool read_all(int fd, char *buf, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t r = pread(fd, buf + done, size - done, (off_t)done);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return false;
    done += (size_t)r;
  }
  return true;
}

/* Checks the file content `buf` (`size` bytes) of `key` and points the
** programs of `f` into it; false when anything is off. */
static bool parse_file(const char *buf, size_t size,
                       const uint8_t key[MAC_SIZE], lx_seccomp *f) {
  uint32_t n, len;
  if (size < HEAD_SIZE(1) + MAC_SIZE || memcmp(buf, magic, sizeof magic) != 0)
    return false;
  memcpy(&n, buf + sizeof magic, 4);
  if (n < 1 || n > LX_SECCOMP_MAX || size < HEAD_SIZE(n) + MAC_SIZE)
    return false;
  size_t at = HEAD_SIZE(n);
  for (uint32_t i = 0; i < n; i++) {
    memcpy(&len, buf + sizeof magic + 4 + 4 * i, 4);
    size_t bytes = (size_t)len * sizeof(struct sock_filter);
    if (len < 1 || len > BPF_MAXINSNS || bytes > size - MAC_SIZE - at)
      return false;
    f->progs[i].len = (unsigned short)len;
    /* aligned: userdata memory is, and so is every offset here */
    f->progs[i].filter = (struct sock_filter *)(void *)(buf + at);
    at += bytes;
  }
  uint8_t mac[MAC_SIZE];
  if (at + MAC_SIZE != size)
    return false;
  mac_of(key, buf, at, mac);
  if (memcmp(mac, buf + at, MAC_SIZE) != 0)
    return false;
  f->n = (int)n;
  return true;
}

/* Reads the programs of `key` from `dir` into a userdata (pushed) and
** `f`; false, with nothing pushed, when there is no such file or it
** fails a check. */
static bool cache_load(lua_State *L, const char *dir,
                       const uint8_t key[MAC_SIZE], lx_seccomp *f) {
  char name[2 * MAC_SIZE + 1];
  key_name(key, name);
  int dfd = open_dir(dir);
  if (dfd < 0)
    return false;
  int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  close(dfd);
  if (fd < 0)
    return false;
  struct stat st;
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && private_to_us(&st)
            && st.st_size > 0 && (size_t)st.st_size <= MAX_FILE;
  if (ok) {
    size_t size = (size_t)st.st_size;
    char *buf = lua_newuserdatauv(L, size + 1, 0);
    ok = read_all(fd, buf, size) && parse_file(buf, size, key, f);
    if (!ok)
      lua_pop(L, 1);
  }
  close(fd);
  return ok;
}

/* Makes the folder `dir` and its missing parents, private (0700). */
static int make_dirs(const char *dir) {
  char path[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(path, dir, n + 1);
  for (char *p = path + 1; ; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -1;
      if (c == '\0')
        return 0;
      *p = c;
    }
  }
}

/* Writes the programs of `f` as the file of `key` in `dir`, through a
** temporary file and a rename, so that a reader sees the whole file or
** none (a torn one, after a crash, fails the mac). Best effort: a
** cache that cannot be written is only slower. */
static void cache_store(const char *dir, const uint8_t key[MAC_SIZE],
                        const lx_seccomp *f) {
  size_t size = HEAD_SIZE(f->n) + MAC_SIZE;
  for (int i = 0; i < f->n; i++)
    size += f->progs[i].len * sizeof(struct sock_filter);
  char *buf = malloc(size);
  if (!buf)
    return;
  memcpy(buf, magic, sizeof magic);
  uint32_t n = (uint32_t)f->n;
  memcpy(buf + sizeof magic, &n, 4);
  size_t at = HEAD_SIZE(n);
  for (int i = 0; i < f->n; i++) {
    uint32_t len = f->progs[i].len;
    size_t bytes = len * sizeof(struct sock_filter);
    memcpy(buf + sizeof magic + 4 + 4 * (size_t)i, &len, 4);
    memcpy(buf + at, f->progs[i].filter, bytes);
    at += bytes;
  }
  mac_of(key, buf, at, (uint8_t *)buf + at);
  char name[2 * MAC_SIZE + 1], tmp[2 * MAC_SIZE + 32];
  key_name(key, name);
  snprintf(tmp, sizeof tmp, ".%s.%ld", name, (long)getpid());
  int dfd = open_dir(dir);
  if (dfd < 0 && errno == ENOENT && make_dirs(dir) == 0)
    dfd = open_dir(dir);
  int fd = dfd < 0 ? -1 : openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC
                                 | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) {
    size_t done = 0;
    while (done < size) {
      ssize_t w = write(fd, buf + done, size - done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        break;
      done += (size_t)w;
    }
    if (close(fd) < 0 || done < size || renameat(dfd, tmp, dfd, name) < 0)
      unlinkat(dfd, tmp, 0);
  }
  if (dfd >= 0)
    close(dfd);
  free(buf);
}

/* }------ */

/* }====== */

/* {====== compiling, through the cache ====== */

/* The flags of the profile at `idx` (they are not in the programs). */
static unsigned profile_flags(lua_State *L, int idx, const char *where) {
  unsigned flags = 0;
  lua_Integer nf = lx_opt_array(L, idx, "flags", where);
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
    flags |= filter_flags[k].flag;
    lua_pop(L, 1);
  }
  if (nf >= 0)
    lua_pop(L, 1);
  return flags;
}

/* lx_seccomp_compile; returns whether the programs came from the cache. */
static bool compile_cached(lua_State *L, int idx, const char *cache,
                           lx_seccomp *f) {
  const char *where = "spawn: linux.seccomp";
  idx = lua_absindex(L, idx);
  if (cache && cache[0] != '/')
    luaL_error(L, "seccomp cache '%s': expected an absolute path", cache);
  /* a copy: the profile's metamethods could let go of the string */
  char dir[PATH_MAX];
  bool cached = cache && strlen(cache) < sizeof dir;
  if (cached)
    strcpy(dir, cache);
  lx_checkkeys(L, idx, where, profile_keys);
  memset(f, 0, sizeof *f);
  f->flags = profile_flags(L, idx, where);
  uint8_t key[MAC_SIZE];
  bool keyed = cached && profile_key(L, idx, key);
  bool hit = keyed && cache_load(L, dir, key, f);
  if (!hit) {
    compile_profile(L, idx, f, keyed);
    if (keyed)
      cache_store(dir, key, f);
  }
  f->set = true;
  return hit;
}

void lx_seccomp_compile(lua_State *L, int idx, const char *cache,
                        lx_seccomp *f) {
  compile_cached(L, idx, cache, f);
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

/* seccomp.compile(profile, [{ cache = folder }]) -> number of BPF
** instructions, of filters, whether they came from the cache
** Compiles an OCI linux.seccomp table as spawn would (through the cache
** in `folder`, an absolute path, as spawn's opts.seccomp_cache), and
** raises where spawn would: a way to check a profile, or to fill the
** cache, without starting anything. */
static int l_compile(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *cache = NULL;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const known[] = {"cache", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "seccomp.compile: opts", known);
    int t = lua_getfield(L, 2, "cache");
    if (t != LUA_TNIL && t != LUA_TSTRING)
      luaL_argerror(L, 2, "cache: expected a folder");
    cache = lua_tostring(L, -1);  /* anchored by the stack */
  }
  lx_seccomp f;
  bool hit = compile_cached(L, 1, cache, &f);
  int total = 0;
  for (int i = 0; i < f.n; i++)
    total += f.progs[i].len;
  lua_pushinteger(L, total);
  lua_pushinteger(L, f.n);
  lua_pushboolean(L, hit);
  return 3;
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
