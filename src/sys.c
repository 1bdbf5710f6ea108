/*
** sys.c -- small process and clock primitives the Lua layer and the
** benchmarks need: a monotonic clock, spawning a host program without a
** shell, waiting, signalling.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
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

/* sys.spawnp({prog, args...}) -> pid | nil, err, errno
** posix_spawnp with the caller's environment and stdio: no shell. */
static int l_spawnp(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n > 0, 1, "empty command");
  const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    argv[i - 1] = luaL_checkstring(L, -1);
    lua_pop(L, 1);  /* anchored by the argument table */
  }
  argv[n] = NULL;
  pid_t pid;
  int r = posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv,
                       environ);
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

static const luaL_Reg sys_funcs[] = {
  {"monotonic", l_monotonic},
  {"spawnp", l_spawnp},
  {"waitpid", l_waitpid},
  {"kill", l_kill},
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
    {NULL, 0},
  };
  for (int i = 0; sigs[i].name; i++) {
    lua_pushinteger(L, sigs[i].sig);
    lua_setfield(L, -2, sigs[i].name);
  }
  lua_setfield(L, -2, "signals");
  lua_newtable(L);  /* sys.errno: the numbers the Lua layer tells apart */
  static const struct { const char *name; int err; } errs[] = {
    {"EPERM", EPERM}, {"ENOENT", ENOENT}, {"EACCES", EACCES},
    {"ENOEXEC", ENOEXEC}, {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR},
    {"ELOOP", ELOOP}, {"EINVAL", EINVAL}, {"EEXIST", EEXIST},
    {"ENOTEMPTY", ENOTEMPTY}, {"EBUSY", EBUSY}, {"EXDEV", EXDEV},
    {"EAGAIN", EAGAIN}, {"EWOULDBLOCK", EWOULDBLOCK},
    {NULL, 0},
  };
  for (int i = 0; errs[i].name; i++) {
    lua_pushinteger(L, errs[i].err);
    lua_setfield(L, -2, errs[i].name);
  }
  lua_setfield(L, -2, "errno");
}
