/*
** luactr-monitor.c -- the small native process that stays with a detached
** container: it owns the container's stdio, writes its log, serves attach
** clients on a unix socket and records how the container ended.
**
**   luactr-monitor dir=D sock=S pidfd=N (out=N err=N | master=N) [in=N]
**                  [ready=N] [log_max=BYTES] [log_files=N] [wait_attach=1]
**                  lua=PATH code=LUA
**   luactr-monitor dir=D wait=MS lua=PATH code=LUA
**
** The process that spawned the container execs this program (see
** lua/luactr/runtime/monitor.lua): exec keeps children, so the monitor is
** the container's parent and waits for it through the pidfd it inherits,
** and keeps nothing of the Lua heap. It is linked statically: its private
** memory is its own few pages.
**
** The log is JSON lines in D/log.json, one object per line of output:
** {"time":"2026-11-28T06:00:00.123456789Z","stream":"stdout","log":"hi\n"}
** rotated by size to log.json.1 ... log.json.(log_files-1).
**
** The attach protocol, both ways, is frames: a type byte, a 32-bit
** big-endian length, the payload. To clients: 1 stdout, 2 stderr (a
** terminal's output is all 1), 3 exit (payload: the 32-bit status).
** From clients: 0 input, 1 resize (16-bit rows, 16-bit columns),
** 2 end of input. A client too slow to take a frame is dropped: the log
** has everything, and the container never waits for a client.
**
** When the container ends, the monitor drains its output, writes
** D/exit.json atomically ({"how":, "code":, "finished":}: how it ended,
** nothing of what follows) and execs Lua (`lua -e CODE`, with
** LUACTR_MONITOR_EVENT=exited and LUACTR_MONITOR_EXIT="how code ran" in
** its environment, `ran` the milliseconds the run lasted). What follows
** is Lua's to decide (luactr.runtime.monitor: the restart policy and its
** back-off, the cgroup, --rm); this program knows no policy.
**
** The second form is the back-off before a restart, which Lua execs when
** it decided one: it waits MS milliseconds, or less when a `stop` is done
** meanwhile (it leaves D/stopping empty), and execs Lua again with
** LUACTR_MONITOR_EVENT=waited. Waiting here costs this program's few
** pages, not a Lua heap, for as long as a minute.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relay.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define MAX_CLIENTS 16
#define LINE_MAX_BYTES 8192

enum { F_INPUT = 0, F_RESIZE = 1, F_EOF = 2 };      /* from clients */
enum { F_STDOUT = 1, F_STDERR = 2, F_EXIT = 3 };    /* to clients */

/* {====== options ====== */

static struct {
  const char *dir, *sock, *lua, *code;
  int pidfd, out, err, master, in, ready;
  long long log_max, wait;
  int log_files;
  bool wait_attach;
} o = {.pidfd = -1, .out = -1, .err = -1, .master = -1, .in = -1,
       .ready = -1, .log_files = 1, .wait = -1};

static int dirfd_ = -1;

/* The value of argument `a` when it is "key=value", else NULL. argv is
** left as it is: `ps` shows what luactr passed. */
static const char *val(const char *a, const char *key) {
  size_t n = strlen(key);
  return strncmp(a, key, n) == 0 && a[n] == '=' ? a + n + 1 : NULL;
}

/* Parses key=value arguments; false on an unknown key, or when one the
** form needs (see the top) is missing. */
static bool parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if ((v = val(a, "dir"))) o.dir = v;
    else if ((v = val(a, "sock"))) o.sock = v;
    else if ((v = val(a, "lua"))) o.lua = v;
    else if ((v = val(a, "code"))) o.code = v;
    else if ((v = val(a, "pidfd"))) o.pidfd = atoi(v);
    else if ((v = val(a, "out"))) o.out = atoi(v);
    else if ((v = val(a, "err"))) o.err = atoi(v);
    else if ((v = val(a, "master"))) o.master = atoi(v);
    else if ((v = val(a, "in"))) o.in = atoi(v);
    else if ((v = val(a, "ready"))) o.ready = atoi(v);
    else if ((v = val(a, "log_max"))) o.log_max = atoll(v);
    else if ((v = val(a, "log_files"))) o.log_files = atoi(v);
    else if ((v = val(a, "wait"))) o.wait = atoll(v);
    else if ((v = val(a, "wait_attach"))) o.wait_attach = atoi(v) != 0;
    else return false;
  }
  if (!(o.dir && o.lua && o.code))
    return false;
  if (o.wait >= 0)  /* the back-off */
    return true;
  return o.sock && o.pidfd >= 0 &&
         (o.master >= 0 || (o.out >= 0 && o.err >= 0)) && o.log_files >= 1;
}

/* }====== */

/* {====== the log ====== */

static int logfd = -1;
static long long log_size;
static char obuf[16384];
static size_t on;
struct line {
  char s[LINE_MAX_BYTES];
  size_t n;
};
static struct line line[2];

static void log_open(void) {
  logfd = openat(dirfd_, "log.json",
                 O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat st;
  log_size = (logfd >= 0 && fstat(logfd, &st) == 0) ? st.st_size : 0;
}

static void out_flush(void) {
  size_t done = 0;
  while (logfd >= 0 && done < on) {
    ssize_t w = write(logfd, obuf + done, on - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;  /* a full disk loses log lines, never the container */
    done += (size_t)w;
  }
  log_size += (long long)on;
  on = 0;
}

static void out_put(const char *s, size_t n) {
  if (on + n > sizeof obuf)
    out_flush();
  memcpy(obuf + on, s, n);
  on += n;
}

/* log.json -> log.json.1 -> ... -> log.json.(files-1); the oldest goes. */
static void log_rotate(void) {
  char from[32], to[32];
  close(logfd);
  if (o.log_files == 1) {
    unlinkat(dirfd_, "log.json", 0);
  } else {
    for (int i = o.log_files - 1; i >= 1; i--) {
      snprintf(to, sizeof to, "log.json.%d", i);
      if (i == 1)
        snprintf(from, sizeof from, "log.json");
      else
        snprintf(from, sizeof from, "log.json.%d", i - 1);
      renameat(dirfd_, from, dirfd_, to);
    }
  }
  log_open();
}

static void now_iso(char *buf, size_t size) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, ts.tv_nsec);
}

/* One JSON line for `n` bytes of one stream (a line, or a piece of a
** line too long to wait for). */
static void log_record(int stream, const char *s, size_t n) {
  char t[48];
  now_iso(t, sizeof t);
  out_put("{\"time\":\"", 9);
  out_put(t, strlen(t));
  const char *mid = stream == 1 ? "\",\"stream\":\"stdout\",\"log\":\""
                                : "\",\"stream\":\"stderr\",\"log\":\"";
  out_put(mid, strlen(mid));
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char e[8];
    if (c == '"' || c == '\\') {
      e[0] = '\\';
      e[1] = (char)c;
      out_put(e, 2);
    } else if (c == '\n') {
      out_put("\\n", 2);
    } else if (c == '\t') {
      out_put("\\t", 2);
    } else if (c < 0x20 || c == 0x7f) {
      snprintf(e, sizeof e, "\\u%04x", c);
      out_put(e, 6);
    } else {
      out_put((const char *)&s[i], 1);
    }
  }
  out_put("\"}\n", 3);
  out_flush();
  if (o.log_max > 0 && log_size >= o.log_max)
    log_rotate();
}

/* Output of stream 1 or 2: whole lines are logged as they complete. */
static void log_data(int stream, const char *s, size_t n) {
  struct line *l = &line[stream - 1];
  while (n > 0) {
    const char *nl = memchr(s, '\n', n);
    size_t take = nl ? (size_t)(nl - s) + 1 : n;
    if (l->n + take > sizeof l->s) {
      take = sizeof l->s - l->n;
      nl = NULL;
    }
    memcpy(l->s + l->n, s, take);
    l->n += take;
    s += take;
    n -= take;
    if (nl || l->n == sizeof l->s) {
      log_record(stream, l->s, l->n);
      l->n = 0;
    }
  }
}

static void log_finish(void) {
  for (int st = 1; st <= 2; st++)
    if (line[st - 1].n) {
      log_record(st, line[st - 1].s, line[st - 1].n);
      line[st - 1].n = 0;
    }
}

/* }====== */

/* {====== attach clients ====== */

static struct client {
  int fd;              /* -1: a free entry */
  lx_relay_fd *slot;   /* the relay's */
  unsigned char hdr[5];
  int got;             /* header bytes read */
  uint32_t left;       /* payload bytes still to come */
  unsigned char rs[4]; /* a resize payload */
  int rsn;
} clients[MAX_CLIENTS];
static int nclients;
static lx_relay relay;

static void drop(struct client *c) {
  lx_relay_remove(c->slot);
  close(c->fd);
  c->fd = -1;
  nclients--;
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static void broadcast(int type, const char *s, size_t n) {
  unsigned char hdr[5];
  hdr[0] = (unsigned char)type;
  put32(hdr + 1, (uint32_t)n);
  struct iovec iov[2] = {{hdr, 5}, {(void *)s, n}};
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (clients[i].fd < 0)
      continue;
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w = sendmsg(clients[i].fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w != (ssize_t)(n + 5))
      drop(&clients[i]);
  }
}

static int input_fd(void) {
  return o.master >= 0 ? o.master : o.in;
}

/* a container not reading its input loses it: it is never waited for */
static void to_input(const unsigned char *s, size_t n) {
  if (input_fd() >= 0)
    lx_relay_write(input_fd(), s, n, false);
}

/* What client `f->ctx` sent: frames of input, resizes, end of input. */
static void client_data(lx_relay *r, lx_relay_fd *f, const char *data,
                        size_t n) {
  (void)r;
  struct client *c = f->ctx;
  const unsigned char *buf = (const unsigned char *)data;
  for (size_t i = 0; i < n;) {
    if (c->got < 5) {
      c->hdr[c->got++] = buf[i++];
      if (c->got == 5) {
        c->left = (uint32_t)c->hdr[1] << 24 | (uint32_t)c->hdr[2] << 16 |
                  (uint32_t)c->hdr[3] << 8 | c->hdr[4];
        c->rsn = 0;
        if (c->hdr[0] == F_EOF && o.in >= 0) {
          close(o.in);
          o.in = -1;
        }
        if (c->left == 0)
          c->got = 0;
      }
      continue;
    }
    size_t take = n - i < c->left ? n - i : c->left;
    if (c->hdr[0] == F_INPUT) {
      to_input(buf + i, take);
    } else if (c->hdr[0] == F_RESIZE) {
      for (size_t k = 0; k < take && c->rsn < 4; k++)
        c->rs[c->rsn++] = buf[i + k];
      if (c->rsn == 4 && o.master >= 0) {
        struct winsize ws = {.ws_row = (unsigned short)(c->rs[0] << 8 | c->rs[1]),
                             .ws_col = (unsigned short)(c->rs[2] << 8 | c->rs[3])};
        ioctl(o.master, TIOCSWINSZ, &ws);
      }
    }
    i += take;
    c->left -= (uint32_t)take;
    if (c->left == 0)
      c->got = 0;
  }
}

static void client_end(lx_relay *r, lx_relay_fd *f) {
  (void)r;
  drop(f->ctx);
}

static int listen_on(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path)
    return -1;
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  unlink(path);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* }====== */

/* {====== the container's end ====== */

/* Writes D/exit.json: how the container ended (`how` "exit" or
** "signal", `code` its status or signal) and when. Best effort: on a
** full store the write fails, and Lua records the end from what
** hand_over passes on (luactr.runtime.monitor). */
static void write_exit(const char *how, int code) {
  char t[48], buf[160];
  now_iso(t, sizeof t);
  int n = snprintf(buf, sizeof buf,
                   "{\"how\":\"%s\",\"code\":%d,\"finished\":\"%s\"}\n",
                   how, code, t);
  int fd = openat(dirfd_, "exit.json.tmp",
                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0)
    return;
  bool ok = write(fd, buf, (size_t)n) == n && fsync(fd) == 0;
  close(fd);
  if (ok)
    renameat(dirfd_, "exit.json.tmp", dirfd_, "exit.json");
}

/* Execs Lua for what follows (see the top): LUACTR_MONITOR_EVENT says
** which, `summary` ("how code ran", or NULL) goes in LUACTR_MONITOR_EXIT.
** Never returns: when Lua cannot be run, nobody is left to record the
** rest, and a later command finds the runner gone (its state says so). */
static void __attribute__((noreturn)) hand_over(const char *event,
                                                const char *summary) {
  setenv("LUACTR_MONITOR_EVENT", event, 1);
  if (summary)
    setenv("LUACTR_MONITOR_EXIT", summary, 1);
  char *argv[] = {(char *)"lua", (char *)"-e", (char *)o.code, NULL};
  syscall(SYS_close_range, 3U, ~0U, 0U);
  execv(o.lua, argv);
  _exit(125);
}

/* Milliseconds from `a` to `b`. */
static long long ms_between(const struct timespec *a,
                            const struct timespec *b) {
  return (long long)(b->tv_sec - a->tv_sec) * 1000 +
         (b->tv_nsec - a->tv_nsec) / 1000000;
}

/* }====== */

/* {====== the back-off ====== */

/* Is a stop done? It leaves D/stopping empty (a stop still at work
** writes its pid there, luactr.runtime.containers.mark_stopping): what
** a stop that is at work, or was killed, means is Lua's to judge, once
** the time is up. */
static bool stop_done(void) {
  struct stat st;
  return fstatat(dirfd_, "stopping", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         S_ISREG(st.st_mode) && st.st_size == 0;
}

/* The second form (see the top): waits o.wait ms, looking every 50 ms
** for a stop that is done, then hands over. */
static void __attribute__((noreturn)) back_off(void) {
  struct timespec from, now;
  clock_gettime(CLOCK_MONOTONIC, &from);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long left = o.wait - ms_between(&from, &now);
    if (left <= 0 || stop_done())
      break;
    struct timespec ts = {0, (left < 50 ? left : 50) * 1000000L};
    nanosleep(&ts, NULL);
  }
  hand_over("waited", NULL);
}

/* }====== */

/* {====== the relay: the container's output, its end, clients ====== */

static bool reading;     /* output is read: not held for a first client */
static bool exited;      /* the container ended (si says how) */
static siginfo_t si;
static int sfd[2] = {-1, -1};     /* stdout and stderr, or the terminal */
static lx_relay_fd *streams[2];

/* The end, once the container is gone and its output drained. */
static void done_if_drained(lx_relay *r) {
  if (exited && sfd[0] < 0 && sfd[1] < 0)
    r->stop = true;
}

/* Waiting for the first client (run -it) lasts 10 s at most, also past
** the end (its output and status are for that client): a caller killed
** before it attached must not stall us. After the end, output still
** buffered is drained for 2 s at most: a process the container left
** holding a pipe must not keep us either. */
static void set_timeout(lx_relay *r) {
  r->timeout = !reading ? 10000 : exited ? 2000 : -1;
}

static void start_reading(lx_relay *r) {
  reading = true;
  for (int s = 0; s < 2; s++)
    if (streams[s])
      streams[s]->paused = false;
  set_timeout(r);
}

static void idle(lx_relay *r) {
  if (!reading)
    start_reading(r);
  else if (exited)
    r->stop = true;
}

static void stream_data(lx_relay *r, lx_relay_fd *f, const char *buf,
                        size_t n) {
  (void)r;
  int stream = f == streams[0] ? 1 : 2;
  log_data(stream, buf, n);
  broadcast(stream, buf, n);
}

/* EOF, or EIO once a terminal's last slave closed */
static void stream_end(lx_relay *r, lx_relay_fd *f) {
  int s = f == streams[0] ? 0 : 1;
  close(sfd[s]);
  if (sfd[s] == o.master)
    o.master = -1;
  sfd[s] = -1;
  streams[s] = NULL;
  done_if_drained(r);
}

static void pid_ready(lx_relay *r, lx_relay_fd *f) {
  memset(&si, 0, sizeof si);
  if (waitid((idtype_t)P_PIDFD, (id_t)o.pidfd, &si, WEXITED) != 0)
    return;
  exited = true;
  lx_relay_remove(f);
  set_timeout(r);
  done_if_drained(r);
}

static void accept_ready(lx_relay *r, lx_relay_fd *f) {
  int c = accept4(f->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (c < 0)
    return;
  struct client *e = NULL;
  for (int i = 0; i < MAX_CLIENTS && !e; i++)
    if (clients[i].fd < 0)
      e = &clients[i];
  if (e)
    *e = (struct client){.fd = c};
  if (!e || !(e->slot = lx_relay_stream(r, c, client_data, client_end, e))) {
    close(c);
    if (e)
      e->fd = -1;
    return;
  }
  nclients++;
  start_reading(r);
}

/* }====== */

int main(int argc, char **argv) {
  if (!parse_args(argc, argv))
    return 125;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  /* the terminal or pipe luactr ran from must not stay open here */
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    for (int fd = 0; fd < 3; fd++)
      if (fd != o.ready)
        dup2(null, fd);
    if (null > 2)
      close(null);
  }
  if (chdir("/") < 0)  /* holding no folder of the caller's busy */
    return 125;
  dirfd_ = open(o.dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd_ < 0)
    return 125;
  if (o.wait >= 0)
    back_off();
  log_open();
  int lfd = listen_on(o.sock);
  int fds[] = {o.out, o.err, o.master, o.in, o.pidfd, o.ready};
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
    if (fds[i] >= 0)
      fcntl(fds[i], F_SETFD, FD_CLOEXEC);
  if (o.in >= 0)
    fcntl(o.in, F_SETFL, O_NONBLOCK);
  if (o.ready >= 0) {
    /* luactr run -d returns once this is said */
    ssize_t w = write(o.ready, lfd >= 0 ? "ok\n" : "no socket\n",
                      lfd >= 0 ? 3 : 10);
    (void)w;
    close(o.ready);
    o.ready = -1;
  }
  struct timespec began;
  clock_gettime(CLOCK_MONOTONIC, &began);

  /* the streams: stdout and stderr pipes, or the terminal as stdout */
  sfd[0] = o.master >= 0 ? o.master : o.out;
  sfd[1] = o.master >= 0 ? -1 : o.err;
  reading = !o.wait_attach;
  for (int i = 0; i < MAX_CLIENTS; i++)
    clients[i].fd = -1;
  lx_relay_init(&relay, NULL);
  lx_relay_event(&relay, o.pidfd, pid_ready, NULL);
  lx_relay_event(&relay, lfd, accept_ready, NULL);
  for (int s = 0; s < 2; s++)
    if ((streams[s] = lx_relay_stream(&relay, sfd[s], stream_data, stream_end,
                                      NULL)))
      streams[s]->paused = !reading;
  relay.idle = idle;
  set_timeout(&relay);
  while (lx_relay_run(&relay) < 0 && !exited)
    ;
  log_finish();

  const char *how = si.si_code == CLD_EXITED ? "exit" : "signal";
  int code = si.si_status;
  int status = si.si_code == CLD_EXITED ? code : 128 + code;
  write_exit(how, code);
  unsigned char st[4];
  put32(st, (uint32_t)status);
  broadcast(F_EXIT, (const char *)st, 4);
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (clients[i].fd >= 0)
      drop(&clients[i]);
  if (lfd >= 0)
    close(lfd);
  unlink(o.sock);
  struct timespec ended;
  clock_gettime(CLOCK_MONOTONIC, &ended);
  char summary[48];
  snprintf(summary, sizeof summary, "%s %d %lld", how, code,
           ms_between(&began, &ended));
  hand_over("exited", summary);
}
