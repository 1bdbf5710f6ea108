/*
** process.c -- the luactr.process handle that core.spawn returns.
**
** It holds the container's process by a pidfd (the pid alone could name
** another process once it is reaped), the pty master when it has a
** terminal, and, for a process created with opts.start = false, the
** start barrier and the rest of the error pipe. Its methods: start,
** wait (with the terminal relay), kill, close; the fields pid,
** pidfd, master. close, __gc and __close release it, idempotently; a
** process created and never started is killed and reaped then, since
** nobody else could ever start or wait for it.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "spawn.h"
#include "relay.h"

/* {====== the handle ====== */

process *lx_process_new(lua_State *L) {
  process *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  p->pid = -1;
  p->pidfd = p->master = p->errfd = p->startfd = -1;
  luaL_setmetatable(L, LX_PROCESS);
  return p;
}

void lx_process_unmask(process *p) {
  if (p->masked) {
    sigprocmask(SIG_SETMASK, &p->oldmask, NULL);
    p->masked = false;
  }
}

void lx_forward_set(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGHUP);
  sigaddset(set, SIGQUIT);
  sigaddset(set, SIGUSR1);
  sigaddset(set, SIGUSR2);
}

static process *checkproc(lua_State *L) {
  return luaL_checkudata(L, 1, LX_PROCESS);
}

static bool created(const process *p) {
  return p->startfd >= 0;
}

/* Reaps the process (ours, not reaped yet); false with errno. */
static bool reap(process *p, siginfo_t *info) {
  int r;
  memset(info, 0, sizeof *info);
  do
    r = waitid(P_PIDFD, (id_t)p->pidfd, info, WEXITED);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    p->reaped = true;
  return r == 0;
}

/* }====== */

/* {====== start ====== */

/* process:start() -> true | nil, err, errno, step
** Lets a process created with opts.start = false go on from the start
** barrier: the stage installs the seccomp filters and execs the command.
** A failure then comes back as spawn's do ("exec /bin/x: No such file
** or directory", errno, "exec"), the process reaped; a process that
** ended before (killed meanwhile) as nil, "start: No such process",
** ESRCH. Raises when the process is not waiting to start (it was
** started already, or was spawned without start = false). */
static int l_start(lua_State *L) {
  process *p = checkproc(L);
  if (!created(p))
    return luaL_error(L, "process:start: the process was started already");
  ssize_t w;
  do
    w = send(p->startfd, "s", 1, MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  close(p->startfd);
  p->startfd = -1;
  lx_reports r;
  if (w == 1)
    lx_spawn_reports(p->errfd, false, &r);
  close(p->errfd);
  p->errfd = -1;
  if (w == 1 && r.understood && !r.failed.err) {
    lua_pushboolean(L, 1);
    return 1;
  }
  siginfo_t info;
  reap(p, &info);
  lx_process_unmask(p);
  if (w != 1)
    return lx_fail(L, "start", ESRCH);
  return lx_spawn_pushfailure(L, &r);
}

/* }====== */

/* {====== wait, and its terminal relay ====== */

/* What wait relays: the pty master to our stdout and our stdin to it,
** signals to the container, until its PID 1 ends. */
typedef struct waiting {
  process *p;
  lx_relay_fd *sig, *in, *pid;
  bool exited;
} waiting;

static void master_data(lx_relay *r, lx_relay_fd *f, const char *buf,
                        size_t n) {
  (void)r, (void)f;
  lx_relay_write(1, buf, n, true);  /* a closed stdout only loses output */
}

static void input_data(lx_relay *r, lx_relay_fd *f, const char *buf,
                       size_t n) {
  (void)f;
  waiting *w = r->ctx;
  lx_relay_write(w->p->master, buf, n, true);
}

/* end of input: the terminal's EOF character, as a person would type */
static void input_end(lx_relay *r, lx_relay_fd *f) {
  waiting *w = r->ctx;
  struct termios t;
  char eof = tcgetattr(w->p->master, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
  lx_relay_write(w->p->master, &eof, 1, true);
  (void)f;
  w->in = NULL;
}

/* a resize reaches the container before the input that follows it: the
** signalfd has the first slot */
static void signal_ready(lx_relay *r, lx_relay_fd *f) {
  waiting *w = r->ctx;
  struct signalfd_siginfo si;
  while (read(f->fd, &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGWINCH) {
      struct winsize ws;
      if (ioctl(0, TIOCGWINSZ, &ws) == 0)
        ioctl(w->p->master, TIOCSWINSZ, &ws);
    } else {
      syscall(SYS_pidfd_send_signal, w->p->pidfd, (int)si.ssi_signo, NULL, 0);
    }
  }
}

/* PID 1 is gone, so is its namespace: what the terminal still holds is
** the last output, drained for as long as it comes within a second. */
static void pid_ready(lx_relay *r, lx_relay_fd *f) {
  waiting *w = r->ctx;
  w->exited = true;
  lx_relay_remove(f);
  lx_relay_remove(w->sig);
  lx_relay_remove(w->in);
  r->timeout = 1000;
}

/* process:wait([{relay=, input=, raw=}]) -> "exit", code | "signal", sig
** Waits for the process to end, forwarding the signals blocked at spawn.
** With `relay`, copies the pty master to stdout and (with `input`) stdin to
** the master, in raw mode on a terminal when `raw`, following SIGWINCH.
** Raises when the process was waited for already, or was never started. */
static int l_wait(lua_State *L) {
  process *p = checkproc(L);
  bool relay = false, input = false, raw = false;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const known[] = {"relay", "input", "raw", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "process:wait", known);
    relay = lx_opt_bool(L, 2, "relay", "process:wait");
    input = lx_opt_bool(L, 2, "input", "process:wait");
    raw = lx_opt_bool(L, 2, "raw", "process:wait");
  }
  if (p->reaped || p->pidfd < 0)
    return luaL_error(L, "process:wait: the process was already waited for");
  if (created(p))
    return luaL_error(L, "process:wait: the process was not started");
  relay = relay && p->master >= 0;

  sigset_t set, prev;
  sigemptyset(&set);
  if (p->masked)
    lx_forward_set(&set);
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

  waiting w = {.p = p};
  lx_relay r;
  lx_relay_init(&r, &w);
  w.sig = lx_relay_event(&r, sfd, signal_ready, NULL);
  if (relay)
    lx_relay_stream(&r, p->master, master_data, NULL, NULL);
  if (relay && input)
    w.in = lx_relay_stream(&r, 0, input_data, input_end, NULL);
  w.pid = lx_relay_event(&r, p->pidfd, pid_ready, NULL);
  while (lx_relay_run(&r) < 0 && !w.exited)
    ;  /* poll itself failed: wait on, the process is still ours */
  if (restore_tty)
    tcsetattr(0, TCSADRAIN, &saved);
  siginfo_t info;
  bool ok = reap(p, &info);
  int err = errno;
  if (sfd >= 0)
    close(sfd);
  sigprocmask(SIG_SETMASK, &prev, NULL);
  lx_process_unmask(p);
  if (!ok)
    return lx_fail(L, "wait", err);
  if (info.si_code == CLD_EXITED)
    lua_pushliteral(L, "exit");
  else
    lua_pushliteral(L, "signal");
  lua_pushinteger(L, info.si_status);
  return 2;
}

/* }====== */

/* {====== kill, close ====== */

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

/* process:close(): releases the handle's fds and signal mask; a started
** process goes on. A process created and never started is killed and
** reaped (its PID 1 taking its pid namespace along). Idempotent; also
** __gc and __close. */
static int l_close(lua_State *L) {
  process *p = checkproc(L);
  if (created(p) && !p->reaped && p->pidfd >= 0) {
    syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
    siginfo_t info;
    reap(p, &info);
  }
  int *fds[] = {&p->pidfd, &p->master, &p->errfd, &p->startfd};
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
    if (*fds[i] >= 0) {
      close(*fds[i]);
      *fds[i] = -1;
    }
  lx_process_unmask(p);
  return 0;
}

/* }====== */

static int l_index(lua_State *L) {
  process *p = checkproc(L);
  const char *k = luaL_checkstring(L, 2);
  int fd = strcmp(k, "pidfd") == 0 ? p->pidfd
         : strcmp(k, "master") == 0 ? p->master : -2;
  if (strcmp(k, "pid") == 0) {
    lua_pushinteger(L, p->pid);
  } else if (fd == -1) {
    lua_pushnil(L);
  } else if (fd >= 0) {
    lua_pushinteger(L, fd);
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
  {"start", l_start},
  {"wait", l_wait},
  {"kill", l_kill},
  {"close", l_close},
  {"__gc", l_close},
  {"__close", l_close},
  {"__index", l_index},
  {"__tostring", l_tostring},
  {NULL, NULL},
};

void lx_open_process(lua_State *L) {
  luaL_newmetatable(L, LX_PROCESS);
  luaL_setfuncs(L, process_methods, 0);
  lua_pop(L, 1);
}
