/*
** luactr.h -- what the files of the native core share.
**
** Every C file in src/ is one kernel area; each ends with a luaL_Reg table
** and an opener `lx_open_<area>` that core.c gathers into `luactr.core`.
** Names: `lx_` for what is shared between files, `l_` for Lua bindings,
** plain static names for what a file keeps to itself.
*/
#ifndef LUACTR_H
#define LUACTR_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/mount.h>
#include <linux/filter.h>

#include <lua.h>
#include <lauxlib.h>

#define LX_PROCESS "luactr.process"

/* {====== failures ====== */

/* Pushes the luaposix failure triple `nil, "what: strerror(err)", err`
** and returns 3, for a failed system call. */
int lx_fail(lua_State *L, const char *what, int err);

/* Same, with the message already written (no strerror appended). */
int lx_failmsg(lua_State *L, const char *msg, int err);

/* }====== */

/* {====== option tables ====== */

/* Raises an error naming `where` if table at `idx` has a key that is not
** in the NULL-terminated `known` list. Unknown keys are never ignored. */
void lx_checkkeys(lua_State *L, int idx, const char *where,
                  const char *const known[]);

/* The getters of option tables. Each reads field `key` of the table at
** `idx` (an absolute index) and raises on a value of another type,
** naming the field as "<where>.<key>" ("spawn: process.cwd: expected
** string, got number"); an absent field is no error. */

/* Pushes t[key] and returns true when it is there; pushes nothing and
** returns false when it is absent. */
bool lx_opt_get(lua_State *L, int idx, const char *key, int type,
                const char *where);

/* The string t[key], or NULL when absent; it is anchored by the table. */
const char *lx_opt_str(lua_State *L, int idx, const char *key,
                       const char *where);

/* The boolean t[key], false when absent. */
bool lx_opt_bool(lua_State *L, int idx, const char *key, const char *where);

/* The integer t[key], `dflt` when absent ("expected an integer" for a
** float or anything else). */
lua_Integer lx_opt_int(lua_State *L, int idx, const char *key,
                       const char *where, lua_Integer dflt);

/* Pushes the table t[key] and returns its length; pushes nothing and
** returns -1 when it is absent. */
lua_Integer lx_opt_array(lua_State *L, int idx, const char *key,
                         const char *where);

/* }====== */

/* {====== async-signal-safe string building, for the child ====== */

/* A fixed buffer that never overflows: appends are truncated. */
typedef struct lx_buf {
  char s[4096];
  size_t n;
} lx_buf;

void lx_buf_init(lx_buf *b);
void lx_buf_cat(lx_buf *b, const char *s);
void lx_buf_catn(lx_buf *b, const char *s, size_t n);
void lx_buf_catint(lx_buf *b, long v);

/* Joins `dir` and `name` into `out` (size PATH_MAX); returns false when the
** result does not fit. */
bool lx_path_join(char *out, const char *dir, const char *name);

/* Sends one byte over the unix socket `sock`, and with it the fd `fd`
** (SCM_RIGHTS) unless fd < 0. Returns what sendmsg did: 1, or -1 with
** errno. Never raises SIGPIPE. Async-signal-safe. */
ssize_t lx_send_fd(int sock, int fd);

/* Receives one byte from the unix socket `sock` and, when one came with
** it, a fd (*fd, close-on-exec; else -1). Returns what recvmsg did: 1,
** 0 at the end, -1 with errno. Async-signal-safe. */
ssize_t lx_recv_fd(int sock, int *fd);

/* The start time of process `pid` (clock ticks since boot, field 22 of
** /proc/PID/stat): with the pid it names one process, whatever pids are
** reused. -1 with errno when it cannot be read (ESRCH: gone). */
long long lx_start_time(pid_t pid);

/* }====== */

/* {====== mount mechanism shared with spawn ====== */

/* Flags a bind mount can only get by a second, remounting mount(2). */
#define LX_REMOUNT_FLAGS \
  (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | \
   MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME)

/* One entry of the OCI `mounts` array, parsed in the parent so that the
** child only has to call mount(2). */
typedef struct lx_mount {
  const char *dest;       /* absolute path in the container */
  const char *type;       /* filesystem type, or NULL for bind */
  const char *source;
  const char *data;       /* comma-joined options that are not flags */
  unsigned long flags;    /* MS_* flags for the first mount(2) */
  unsigned long pflags;   /* propagation (MS_PRIVATE, ...) or 0 */
  bool bind;              /* bind or rbind */
  bool remount;           /* flags that a bind mount needs a remount for */
} lx_mount;

/* Parses an OCI options array (Lua table at `idx`, may be absent) into
** `m`. Raises on an option it does not know: a typo must not silently
** weaken a mount. The data string is allocated as a Lua string left on
** the stack (or nil): exactly one value is pushed. */
void lx_mount_parseopts(lua_State *L, int idx, lx_mount *m);

/* Performs one mount of the spec at `path`: beneath `rootfd` without ever
** leaving it (creating the target as needed), or as the path is when
** rootfd < 0. Remounts and sets propagation when the options ask.
** Returns 0 or -1 with errno set. Async-signal-safe. */
int lx_mount_at(const lx_mount *m, int rootfd, const char *path);

/* Opens `path` beneath `rootfd` (O_PATH), never resolving outside it,
** creating missing directories (and a missing last component as a file
** when `as_file`). Returns the fd or -1 with errno. Async-signal-safe. */
int lx_open_in_root(int rootfd, const char *path, bool create, bool as_file);

/* Hides `path` (container view): /dev/null over a file, an empty read-only
** tmpfs over a directory; a missing path is left alone. 0 or -1/errno. */
int lx_mask_path(const char *path);

/* Makes `path` a read-only bind of itself, keeping its nosuid/nodev/noexec
** flags; a missing path is left alone. 0 or -1/errno. */
int lx_readonly_path(const char *path);

/* Remounts the bind mount at `path` with `flags` added to the flags it
** already has (MS_RDONLY for a read-only root). 0 or -1/errno. */
int lx_remount_bind(const char *path, unsigned long flags);

/* Makes a detached recursive copy of the mount tree at `path` in which
** files are seen through the id mappings of the user namespace
** `usernsfd` (an idmapped mount; needs CAP_SYS_ADMIN over the
** filesystem, so the host's root). Returns the tree's fd (close-on-exec),
** to be attached with move_mount(2), or -1 with errno: EINVAL or
** EOPNOTSUPP when the filesystem or kernel cannot idmap. */
int lx_mount_idmapped(const char *path, int usernsfd);

/* }====== */

/* {====== namespaces ====== */

/* The CLONE_NEW* flag of an OCI namespace type ("pid", "network", ...), or
** 0 when the name is unknown. */
int lx_ns_flag(const char *type);

/* Writes the id map `map` ("inside outside count" lines, `len` bytes) to
** /proc/PID/<file>, "uid_map" or "gid_map". 0 or -1 with errno. */
int lx_ns_write_map(pid_t pid, const char *file, const char *map, size_t len);

/* }====== */

/* {====== btrfs, shared with fs ====== */

/* Deletes the btrfs subvolume `name` beneath folder `parentfd` with
** libbtrfsutil (with the subvolumes nested in it when `recursive`).
** Returns 0 or -1 with errno set. */
int lx_btrfs_delete_at(int parentfd, const char *name, bool recursive);

/* }====== */

/* {====== capabilities and seccomp, shared with spawn ====== */

/* An OCI process.capabilities, as bit masks (bit N = capability N). */
typedef struct lx_caps {
  bool set;              /* the spec gave capabilities */
  int count;             /* how many capabilities the kernel has */
  uint64_t bounding, effective, permitted, inheritable, ambient;
} lx_caps;

/* Reads the OCI capabilities table at `idx` into `c`. Raises on an
** unknown key or capability name. */
void lx_caps_parse(lua_State *L, int idx, lx_caps *c);

/* Drops every capability outside c->bounding from the bounding set (needs
** CAP_SETPCAP). 0 or -1/errno. Async-signal-safe. */
int lx_caps_drop_bounding(const lx_caps *c);

/* Sets the effective, permitted and inheritable sets, then the ambient
** set. 0 or -1/errno. Async-signal-safe. */
int lx_caps_set(const lx_caps *c);

/* A compiled seccomp profile, ready for seccomp(2): one or more filters,
** all installed (the kernel takes the strictest answer of them). */
#define LX_SECCOMP_MAX 8
typedef struct lx_seccomp {
  bool set;
  unsigned flags;              /* SECCOMP_FILTER_FLAG_* */
  int n;
  struct sock_fprog progs[LX_SECCOMP_MAX];
} lx_seccomp;

/* Compiles the OCI linux.seccomp table at `idx` with libseccomp into `f`,
** through the cache of compiled filters in the folder `cache` (an
** absolute path; NULL: none, see seccomp.c). Pushes exactly one value,
** the userdata holding the BPF program, which must stay alive as long as
** `f` is used. Raises on a bad profile or a relative `cache`. */
void lx_seccomp_compile(lua_State *L, int idx, const char *cache,
                        lx_seccomp *f);

/* Installs the filters in the calling thread (needs no_new_privs or
** CAP_SYS_ADMIN). 0 or -1/errno. Async-signal-safe. */
int lx_seccomp_load(const lx_seccomp *f);

/* }====== */

/* {====== device nodes, shared with spawn ====== */

/* One entry of the OCI linux.devices: a node to make in the container. */
typedef struct lx_device {
  const char *path;       /* absolute, in the container */
  mode_t mode;            /* S_IFCHR, S_IFBLK or S_IFIFO | fileMode */
  dev_t dev;
  uid_t uid;
  gid_t gid;
} lx_device;

/* Parses the linux.devices array at `idx` into *list (*n entries), in a
** userdata it pushes (exactly one value; keep it alive as long as the
** list is used). Raises on a malformed entry. */
void lx_devices_parse(lua_State *L, int idx, lx_device **list, int *n);

/* Makes the nodes beneath `rootfd` (never resolving outside it, making
** missing folders), replacing what is at their paths. 0, or -1 with
** errno and *failed naming the path. Async-signal-safe. */
int lx_devices_make(const lx_device *list, int n, int rootfd,
                    const char **failed);

/* }====== */

/* {====== openers ====== */

void lx_open_ns(lua_State *L);
void lx_open_mount(lua_State *L);
void lx_open_spawn(lua_State *L);
void lx_open_attach(lua_State *L);
void lx_open_pty(lua_State *L);
void lx_open_sys(lua_State *L);
void lx_open_fs(lua_State *L);
void lx_open_btrfs(lua_State *L);
void lx_open_digest(lua_State *L);
void lx_open_loop(lua_State *L);
void lx_open_cgroup(lua_State *L);
void lx_open_caps(lua_State *L);
void lx_open_seccomp(lua_State *L);
void lx_open_devices(lua_State *L);

/* }====== */

/* {====== resolving beneath a root, shared by mount and fs ====== */

/* openat2(dirfd, path, flags | O_CLOEXEC) with RESOLVE_IN_ROOT and
** RESOLVE_NO_MAGICLINKS: `path` resolved as if `dirfd` were the root
** ("..", absolute and climbing symlinks stay beneath it). The fd, or -1
** with errno. Async-signal-safe. */
int lx_openat_in_root(int dirfd, const char *path, int flags);

/* }====== */

#endif
