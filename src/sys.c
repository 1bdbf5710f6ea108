/*
** sys.c -- small process and clock primitives the Lua layer and the
** benchmarks need: a monotonic clock, spawning a host program without a
** shell, waiting, signalling.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "luactr.h"

extern char **environ;

/* sys.monotonic() -> seconds (float) of CLOCK_MONOTONIC */
static int l_monotonic(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* The strings of the array at `idx` as a NULL-terminated vector, in a
** userdata left on the stack (the strings stay anchored by the array).
** Raises when it is empty or holds something else. */
static const char **string_vector(lua_State *L, int idx) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  luaL_argcheck(L, n > 0, idx, "empty command");
  const char **v = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    v[i - 1] = luaL_checkstring(L, -1);
    lua_pop(L, 1);
  }
  v[n] = NULL;
  return v;
}

/* sys.spawnp({prog, args...}, [{stdout=path}]) -> pid | nil, err, errno
** posix_spawnp with the caller's environment and stdio (stdout opened
** on `path` instead when given): no shell. */
static int l_spawnp(lua_State *L) {
  const char *out = NULL;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const known[] = {"stdout", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "spawnp", known);
    lua_getfield(L, 2, "stdout");
    out = lua_tostring(L, -1);  /* anchored by the options table */
    lua_pop(L, 1);
  }
  const char **argv = string_vector(L, 1);
  pid_t pid;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out)
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
  int r = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv,
                       environ);
  posix_spawn_file_actions_destroy(&fa);
  if (r != 0)
    return lx_fail(L, argv[0], r);
  lua_pushinteger(L, pid);
  return 1;
}

/* sys.waitpid(pid) -> "exit", code | "signal", sig | nil, err, errno */
static int l_waitpid(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int status;
  pid_t r;
  do
    r = waitpid(pid, &status, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return lx_fail(L, "waitpid", errno);
  if (WIFEXITED(status)) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(status));
  } else {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(status));
  }
  return 2;
}

/* sys.kill(pid, [sig]) -> true | nil, err, errno */
static int l_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = (int)luaL_optinteger(L, 2, SIGTERM);
  if (kill(pid, sig) < 0)
    return lx_fail(L, "kill", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* sys.signal(pid, start, sig) -> true | nil, err, errno
** Sends `sig` to `pid` only while it is the process that started at
** `start` (ticks since boot, as /proc/PID/stat says): the pid is pinned
** with a pidfd first and its start time read after, so a pid reused by
** another process since is never hit (ESRCH). */
static int l_signal(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  long long start = (long long)luaL_checkinteger(L, 2);
  int sig = (int)luaL_checkinteger(L, 3);
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0)
    return lx_fail(L, "pidfd_open", errno);
  long long now = lx_start_time(pid);
  int err = now < 0 ? errno : ESRCH;
  if (now == start && syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0) {
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (now == start)
    err = errno;
  close(fd);
  return lx_fail(L, "signal", err);
}

/* sys.sleep(seconds) */
static int l_sleep(lua_State *L) {
  lua_Number t = luaL_checknumber(L, 1);
  struct timespec ts = {.tv_sec = (time_t)t,
                        .tv_nsec = (long)((t - (lua_Number)(time_t)t) * 1e9)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
  return 0;
}

/* sys.setenv(name, value | nil): this process's environment, which
** spawnp passes on. */
static int l_setenv(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int r = lua_isnoneornil(L, 2) ? unsetenv(name)
                                : setenv(name, luaL_checkstring(L, 2), 1);
  if (r < 0)
    return lx_fail(L, "setenv", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* sys.getpid() -> pid */
static int l_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

/* {====== the monitor handoff (see luactr.runtime.monitor) ====== */

/* sys.fork() -> 0 in the child, the child's pid in the parent
** | nil, err, errno */
static int l_fork(lua_State *L) {
  pid_t pid = fork();
  if (pid < 0)
    return lx_fail(L, "fork", errno);
  lua_pushinteger(L, pid);
  return 1;
}

/* sys.pipe() -> rfd, wfd (both close-on-exec) | nil, err, errno */
static int l_pipe(lua_State *L) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0)
    return lx_fail(L, "pipe", errno);
  lua_pushinteger(L, p[0]);
  lua_pushinteger(L, p[1]);
  return 2;
}

/* sys.close(fd): a fd got from pipe or spawn; idempotence is the
** caller's. */
static int l_close(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

/* sys.read_all(fd) -> what fd gives until end of file | nil, err, errno */
static int l_read_all(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = read(fd, p, LUAL_BUFFERSIZE);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return lx_fail(L, "read", errno);
    if (n == 0)
      break;
    luaL_addsize(&b, (size_t)n);
  }
  luaL_pushresult(&b);
  return 1;
}

/* sys.write(fd, s) -> true | nil, err, errno: all of s */
static int l_write(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  while (len > 0) {
    ssize_t n = write(fd, s, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return lx_fail(L, "write", errno);
    s += n;
    len -= (size_t)n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* sys.setsid() -> true | nil, err, errno */
static int l_setsid(lua_State *L) {
  if (setsid() < 0)
    return lx_fail(L, "setsid", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* sys.exec(path, {argv...}, [{keep fds...}]) -> nil, err, errno
** (returns only on failure), with this process's environment. The fds
** in `keep` stay open across the exec; every other close-on-exec one
** closes. */
static int l_exec(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 3);  /* the vector made below goes above the arguments */
  const char **argv = string_vector(L, 2);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer k = luaL_len(L, 3);
    for (lua_Integer i = 1; i <= k; i++) {
      lua_geti(L, 3, i);
      int fd = (int)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
      int fl = fcntl(fd, F_GETFD);
      if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0)
        return lx_fail(L, "exec: keep fd", errno);
    }
  }
  execve(path, (char *const *)argv, environ);
  return lx_fail(L, path, errno);
}

/* sys.exit(code): ends the process at once (_exit: no atexit handlers,
** no buffers flushed), for a forked child that failed. */
static int l_exit(lua_State *L) {
  _exit((int)luaL_optinteger(L, 1, 0));
}

/* }====== */

static const luaL_Reg sys_funcs[] = {
  {"fork", l_fork},
  {"pipe", l_pipe},
  {"close", l_close},
  {"read_all", l_read_all},
  {"write", l_write},
  {"setsid", l_setsid},
  {"exec", l_exec},
  {"exit", l_exit},
  {"monotonic", l_monotonic},
  {"spawnp", l_spawnp},
  {"waitpid", l_waitpid},
  {"kill", l_kill},
  {"signal", l_signal},
  {"getpid", l_getpid},
  {"sleep", l_sleep},
  {"setenv", l_setenv},
  {NULL, NULL},
};

void lx_open_sys(lua_State *L) {
  luaL_newlib(L, sys_funcs);
  lua_newtable(L);  /* sys.signals: name -> number, for the CLI */
  static const struct { const char *name; int sig; } sigs[] = {
    {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL},
    {"TRAP", SIGTRAP}, {"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE},
    {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
    {"TERM", SIGTERM}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},
    {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH}, {"IO", SIGIO}, {"PWR", SIGPWR}, {"SYS", SIGSYS},
    {"STKFLT", SIGSTKFLT},
    {NULL, 0},
  };
  for (int i = 0; sigs[i].name; i++) {
    lua_pushinteger(L, sigs[i].sig);
    lua_setfield(L, -2, sigs[i].name);
  }
  /* the real-time range, as this libc gives it (not a constant) */
  lua_pushinteger(L, SIGRTMIN);
  lua_setfield(L, -2, "RTMIN");
  lua_pushinteger(L, SIGRTMAX);
  lua_setfield(L, -2, "RTMAX");
  lua_setfield(L, -2, "signals");
  lua_newtable(L);  /* sys.errno: the numbers the Lua layer tells apart */
  static const struct { const char *name; int err; } errs[] = {
    {"EPERM", EPERM}, {"ENOENT", ENOENT}, {"EACCES", EACCES},
    {"ENOEXEC", ENOEXEC}, {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR},
    {"ELOOP", ELOOP}, {"EINVAL", EINVAL}, {"EEXIST", EEXIST},
    {"ENOTEMPTY", ENOTEMPTY}, {"EBUSY", EBUSY}, {"EXDEV", EXDEV},
    {"EAGAIN", EAGAIN}, {"EWOULDBLOCK", EWOULDBLOCK}, {"ESRCH", ESRCH},
    {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT},
    {NULL, 0},
  };
  for (int i = 0; errs[i].name; i++) {
    lua_pushinteger(L, errs[i].err);
    lua_setfield(L, -2, errs[i].name);
  }
  lua_setfield(L, -2, "errno");
}
