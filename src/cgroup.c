/*
** cgroup.c -- core.cgroup: the cgroup folders of containers, v1 and v2.
**
** Mechanism only. Which folders, which files and which values is policy
** and lives in luactr.runtime.cgroup; every function here takes a folder and does
** one thing to it. What is here rather than in Lua: a write that is one
** write(2) on a file that must already exist (cgroupfs takes a value in
** one piece, and a missing file means a missing controller, never a file
** to create), and the loops that wait on the kernel: killing every process
** of a group while it may still fork, freezing, and removing a folder
** whose last processes are still on their way out.
**
** No handle type: a container's cgroup outlives the process that made it
** (its folders are recorded in the container's state and removed by a
** later `rm`), so folders are plain paths.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "luactr.h"

/* {====== files ====== */

/* Joins folder and file name into `path` (PATH_MAX), or raises: a path
** that long is a caller's mistake, not a state of the system. */
static void joinpath(lua_State *L, char *path, const char *dir,
                     const char *name) {
  if (!lx_path_join(path, dir, name))
    luaL_error(L, "cgroup: path too long: %s/%s", dir, name);
}

static int fail_at(lua_State *L, const char *what, const char *path, int err) {
  lua_pushfstring(L, "%s %s", what, path);
  return lx_fail(L, lua_tostring(L, -1), err);
}

/* Writes `value` into `path` in one write(2); 0 or -1 with errno.
** O_TRUNC does nothing to a cgroup file (each write is read whole by the
** kernel) but keeps a fake tree in the tests holding the last value. */
static int write_value(const char *path, const char *value, size_t len) {
  int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t w;
  do
    w = write(fd, value, len);
  while (w < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (w < 0) {
    errno = err;
    return -1;
  }
  if ((size_t)w != len) {
    errno = EIO;
    return -1;
  }
  return 0;
}

/* Reads all of `path` into a malloc'd, NUL-terminated buffer (*len bytes);
** NULL with errno on failure. */
static char *read_all(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (n + 1 >= cap) {
      char *more = realloc(buf, cap * 2);
      if (!more) {
        free(buf);
        buf = NULL;
        errno = ENOMEM;
        break;
      }
      buf = more;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int err = errno;
      free(buf);
      buf = NULL;
      errno = err;
      break;
    }
    if (r == 0) {
      buf[n] = '\0';
      *len = n;
      break;
    }
    n += (size_t)r;
  }
  int err = errno;
  close(fd);
  errno = err;
  return buf;
}

static bool exists(const char *dir, const char *name) {
  char path[PATH_MAX];
  return lx_path_join(path, dir, name) && access(path, F_OK) == 0;
}

/* cgroup.create(dir) -> true | nil, err, errno
** Makes the folder (mode 0755); its parent must exist. EEXIST is a
** failure like any other: whether an existing folder will do is policy. */
static int l_create(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  if (mkdir(dir, 0755) < 0)
    return fail_at(L, "mkdir", dir, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* cgroup.write(dir, file, value) -> true | nil, err, errno
** One write(2) of `value` to dir/file, which must exist (ENOENT says the
** kernel lacks that file: a controller not there, or not enabled). */
static int l_write(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  const char *name = luaL_checkstring(L, 2);
  size_t len;
  const char *value = luaL_checklstring(L, 3, &len);
  char path[PATH_MAX];
  joinpath(L, path, dir, name);
  if (write_value(path, value, len) < 0)
    return fail_at(L, "write", path, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* cgroup.read(dir, file) -> text | nil, err, errno */
static int l_read(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  const char *name = luaL_checkstring(L, 2);
  char path[PATH_MAX];
  joinpath(L, path, dir, name);
  size_t len;
  char *text = read_all(path, &len);
  if (!text)
    return fail_at(L, "read", path, errno);
  lua_pushlstring(L, text, len);
  free(text);
  return 1;
}

/* }====== */

/* {====== processes ====== */

typedef struct pidlist {
  pid_t *pid;
  size_t n;
} pidlist;

/* Reads dir/cgroup.procs into `l` (malloc'd; free with free(l->pid)).
** 0 or -1 with errno. */
static int read_procs(const char *dir, pidlist *l) {
  char path[PATH_MAX];
  l->pid = NULL;
  l->n = 0;
  if (!lx_path_join(path, dir, "cgroup.procs")) {
    errno = ENAMETOOLONG;
    return -1;
  }
  size_t len;
  char *text = read_all(path, &len);
  if (!text)
    return -1;
  size_t lines = 0;
  for (size_t i = 0; i < len; i++)
    lines += text[i] == '\n';
  l->pid = malloc((lines + 1) * sizeof *l->pid);
  if (!l->pid) {
    free(text);
    errno = ENOMEM;
    return -1;
  }
  for (char *p = text; *p;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p)
      break;
    if (v > 0 && l->n <= lines)
      l->pid[l->n++] = (pid_t)v;
    p = end;
    while (*p == '\n' || *p == ' ')
      p++;
  }
  free(text);
  return 0;
}

static bool has_pid(const pidlist *l, pid_t pid) {
  for (size_t i = 0; i < l->n; i++)
    if (l->pid[i] == pid)
      return true;
  return false;
}

static void nap(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* cgroup.procs(dir) -> { pid, ... } | nil, err, errno
** The processes in the folder itself (not in folders beneath it), as
** pids of the caller's pid namespace. */
static int l_procs(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  pidlist l;
  if (read_procs(dir, &l) < 0)
    return fail_at(L, "read", dir, errno);
  lua_createtable(L, (int)l.n, 0);
  for (size_t i = 0; i < l.n; i++) {
    lua_pushinteger(L, l.pid[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(l.pid);
  return 1;
}

/* Sends `sig` once to every process of dir. A pid is first pinned with a
** pidfd and signalled only if it is still listed after that: a pid that
** was reused by a process outside the group in between is never hit.
** Returns how many were listed, or -1 with errno: EDEADLK, sending
** nothing, when the caller itself is in the folder (a folder that holds
** its caller is not a container's, and killing it would kill us). */
static long signal_round(const char *dir, int sig) {
  pidlist before, after;
  if (read_procs(dir, &before) < 0)
    return -1;
  if (before.n == 0) {
    free(before.pid);
    return 0;
  }
  if (has_pid(&before, getpid())) {
    free(before.pid);
    errno = EDEADLK;
    return -1;
  }
  int *fds = malloc(before.n * sizeof *fds);
  if (!fds) {
    free(before.pid);
    errno = ENOMEM;
    return -1;
  }
  for (size_t i = 0; i < before.n; i++)
    fds[i] = (int)syscall(SYS_pidfd_open, before.pid[i], 0);
  int r = read_procs(dir, &after);
  int err = errno;
  for (size_t i = 0; i < before.n; i++) {
    if (fds[i] < 0)
      continue;
    if (r == 0 && has_pid(&after, before.pid[i]))
      syscall(SYS_pidfd_send_signal, fds[i], sig, NULL, 0);
    close(fds[i]);
  }
  long n = (long)before.n;
  free(fds);
  free(before.pid);
  if (r < 0) {
    errno = err;
    return -1;
  }
  free(after.pid);
  return n;
}

/* cgroup.kill(dir, [sig], [timeout]) -> true | nil, err, errno
** Signals every process in the folder (SIGKILL by default). For SIGKILL,
** v2's cgroup.kill when the kernel has it, and otherwise rounds of
** signals until the folder is empty, since a process may fork while the
** list is read; fails with EBUSY if processes remain after `timeout`
** seconds (5). Another signal is sent once to each process listed.
** Refuses (EDEADLK) a folder that holds the caller. */
static int l_kill(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  int sig = (int)luaL_optinteger(L, 2, SIGKILL);
  double timeout = (double)luaL_optnumber(L, 3, 5);
  pidlist self;
  if (read_procs(dir, &self) < 0)
    return fail_at(L, "kill", dir, errno);
  bool holds_us = has_pid(&self, getpid());
  free(self.pid);
  if (holds_us)
    return fail_at(L, "kill", dir, EDEADLK);
  if (sig == SIGKILL && exists(dir, "cgroup.kill")) {
    char path[PATH_MAX];
    joinpath(L, path, dir, "cgroup.kill");
    if (write_value(path, "1", 1) < 0)
      return fail_at(L, "write", path, errno);
  }
  double deadline = now() + timeout;
  for (;;) {
    long n = signal_round(dir, sig);
    if (n < 0)
      return fail_at(L, "kill", dir, errno);
    if (n == 0 || sig != SIGKILL)
      break;
    if (now() > deadline)
      return fail_at(L, "kill", dir, EBUSY);
    nap(5);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* }====== */

/* {====== freezing ====== */

/* Does dir/file read as `want` (up to a newline)? */
static bool reads_as(const char *dir, const char *file, const char *want) {
  char path[PATH_MAX];
  size_t len;
  if (!lx_path_join(path, dir, file))
    return false;
  char *text = read_all(path, &len);
  if (!text)
    return false;
  bool ok;
  if (strcmp(file, "cgroup.events") == 0) {
    ok = strstr(text, want) != NULL;  /* one "key value" line among others */
  } else {
    size_t n = strlen(want);
    ok = len >= n && strncmp(text, want, n) == 0 &&
         (text[n] == '\n' || text[n] == '\0');
  }
  free(text);
  return ok;
}

/* Writes the v2 or v1 freezer file and waits (up to `timeout` seconds)
** for the group to reach the state. A folder removed meanwhile (its last
** process died, and its owner removed it) fails at once with ENOENT. */
static int set_frozen(lua_State *L, bool freeze) {
  const char *dir = luaL_checkstring(L, 1);
  double timeout = (double)luaL_optnumber(L, 2, 5);
  bool v2 = exists(dir, "cgroup.freeze");
  const char *file = v2 ? "cgroup.freeze" : "freezer.state";
  const char *value = v2 ? (freeze ? "1" : "0") : (freeze ? "FROZEN" : "THAWED");
  char path[PATH_MAX];
  joinpath(L, path, dir, file);
  if (write_value(path, value, strlen(value)) < 0)
    return fail_at(L, "write", path, errno);
  const char *state = v2 ? "cgroup.events" : "freezer.state";
  const char *want = v2 ? (freeze ? "frozen 1" : "frozen 0") : value;
  double deadline = now() + timeout;
  while (!reads_as(dir, state, want)) {
    if (!exists(dir, state))
      return fail_at(L, freeze ? "freeze" : "thaw", dir, ENOENT);
    if (now() > deadline)
      return fail_at(L, freeze ? "freeze" : "thaw", dir, EBUSY);
    /* v1 can stay FREEZING when a task is busy: asking again helps */
    if (!v2 && freeze)
      write_value(path, value, strlen(value));
    nap(2);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* cgroup.freeze(dir, [timeout]) -> true | nil, err, errno
** Stops every process of the folder (v2 cgroup.freeze, v1 freezer.state),
** waiting for the kernel to say it is frozen; EBUSY after `timeout` (5),
** ENOENT when the folder is gone. */
static int l_freeze(lua_State *L) {
  return set_frozen(L, true);
}

/* cgroup.thaw(dir, [timeout]) -> true | nil, err, errno */
static int l_thaw(lua_State *L) {
  return set_frozen(L, false);
}

/* }====== */

/* cgroup.remove(dir, [timeout]) -> true | nil, err, errno
** Removes the folder (rmdir). The last processes of a container take a
** moment to leave it after its PID 1 is reaped: EBUSY is retried for up
** to `timeout` seconds (1), then returned. */
static int l_remove(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  double deadline = now() + (double)luaL_optnumber(L, 2, 1);
  while (rmdir(dir) < 0) {
    if (errno != EBUSY || now() > deadline)
      return fail_at(L, "rmdir", dir, errno);
    nap(2);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg cgroup_funcs[] = {
  {"create", l_create},
  {"write", l_write},
  {"read", l_read},
  {"procs", l_procs},
  {"kill", l_kill},
  {"freeze", l_freeze},
  {"thaw", l_thaw},
  {"remove", l_remove},
  {NULL, NULL},
};

void lx_open_cgroup(lua_State *L) {
  luaL_newlib(L, cgroup_funcs);
}
