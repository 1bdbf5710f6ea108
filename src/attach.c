/*
** attach.c -- the client side of a detached container's attach socket.
**
** core.attach connects the caller's stdio to the monitor of a container
** (src/luactr-monitor.c has the protocol: frames of a type byte, a 32-bit
** big-endian length and the payload). It relays until the container ends
** (the monitor sends its status) or the detach keys are typed, in raw
** mode on a terminal, following SIGWINCH, through the one relay
** (relay.c); the framing and the detach keys are its hooks here.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "luactr.h"
#include "relay.h"

enum { F_INPUT = 0, F_RESIZE = 1, F_EOF = 2 };      /* to the monitor */
enum { F_STDOUT = 1, F_STDERR = 2, F_EXIT = 3 };    /* from it */

static bool send_frame(int sock, int type, const void *s, size_t n) {
  unsigned char h[5] = {(unsigned char)type, (unsigned char)(n >> 24),
                        (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                        (unsigned char)n};
  return lx_relay_write(sock, h, 5, true) &&
         (n == 0 || lx_relay_write(sock, s, n, true));
}

static void send_size(int sock) {
  struct winsize ws;
  if (ioctl(0, TIOCGWINSZ, &ws) < 0 && ioctl(1, TIOCGWINSZ, &ws) < 0)
    return;
  unsigned char p[4] = {(unsigned char)(ws.ws_row >> 8), (unsigned char)ws.ws_row,
                        (unsigned char)(ws.ws_col >> 8), (unsigned char)ws.ws_col};
  send_frame(sock, F_RESIZE, p, 4);
}

/* The frames the monitor sends, parsed as they come. */
typedef struct reader {
  unsigned char hdr[5];
  int got;
  uint32_t left;
  unsigned char st[4];
  int stn;
  bool exited;
  int status;
} reader;

static void on_output(reader *r, const unsigned char *buf, size_t n) {
  for (size_t i = 0; i < n;) {
    if (r->got < 5) {
      r->hdr[r->got++] = buf[i++];
      if (r->got == 5) {
        r->left = (uint32_t)r->hdr[1] << 24 | (uint32_t)r->hdr[2] << 16 |
                  (uint32_t)r->hdr[3] << 8 | r->hdr[4];
        r->stn = 0;
        if (r->left == 0)
          r->got = 0;
      }
      continue;
    }
    size_t take = n - i < r->left ? n - i : r->left;
    if (r->hdr[0] == F_STDOUT || r->hdr[0] == F_STDERR) {
      lx_relay_write(r->hdr[0] == F_STDOUT ? 1 : 2, buf + i, take, true);
    } else if (r->hdr[0] == F_EXIT) {
      for (size_t k = 0; k < take && r->stn < 4; k++)
        r->st[r->stn++] = buf[i + k];
      if (r->stn == 4) {
        r->exited = true;
        r->status = (int)((uint32_t)r->st[0] << 24 | (uint32_t)r->st[1] << 16 |
                          (uint32_t)r->st[2] << 8 | r->st[3]);
      }
    }
    i += take;
    r->left -= (uint32_t)take;
    if (r->left == 0)
      r->got = 0;
  }
}

/* An attach under way: the relay's hooks share it. */
typedef struct attaching {
  int sock;
  reader r;
  const char *keys;     /* the detach keys */
  size_t nkeys, matched;  /* how many of them were typed last */
  bool detached, closed;
} attaching;

/* What the monitor sends: the container's output and, at last, its
** status. */
static void sock_data(lx_relay *rl, lx_relay_fd *f, const char *buf,
                      size_t n) {
  (void)f;
  attaching *a = rl->ctx;
  on_output(&a->r, (const unsigned char *)buf, n);
  if (a->r.exited)
    rl->stop = true;
}

static void sock_end(lx_relay *rl, lx_relay_fd *f) {
  (void)f;
  attaching *a = rl->ctx;
  a->closed = rl->stop = true;
}

/* Our input, framed for the monitor. The detach keys are held back while
** they may be typed; a sequence broken off is sent on as it was. */
static void input_data(lx_relay *rl, lx_relay_fd *f, const char *buf,
                       size_t n) {
  (void)f;
  attaching *a = rl->ctx;
  unsigned char out[4096];
  size_t k = 0;
  for (size_t i = 0; i < n && !a->detached; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (a->nkeys > 0 && c == (unsigned char)a->keys[a->matched]) {
      if (++a->matched == a->nkeys)
        a->detached = rl->stop = true;
      continue;
    }
    if (a->matched > 0) {
      if (k > 0)
        send_frame(a->sock, F_INPUT, out, k);
      k = 0;
      send_frame(a->sock, F_INPUT, a->keys, a->matched);
      a->matched = 0;
      if (a->nkeys > 0 && c == (unsigned char)a->keys[0]) {
        a->matched = 1;
        continue;
      }
    }
    out[k++] = c;
    if (k == sizeof out) {
      send_frame(a->sock, F_INPUT, out, k);
      k = 0;
    }
  }
  if (k > 0)
    send_frame(a->sock, F_INPUT, out, k);
}

static void input_end(lx_relay *rl, lx_relay_fd *f) {
  (void)f;
  attaching *a = rl->ctx;
  send_frame(a->sock, F_EOF, NULL, 0);
}

/* SIGWINCH: our size, for the container's terminal */
static void winch_ready(lx_relay *rl, lx_relay_fd *f) {
  attaching *a = rl->ctx;
  struct signalfd_siginfo si;
  while (read(f->fd, &si, sizeof si) == sizeof si)
    ;
  send_size(a->sock);
}

/* core.attach(path, [{input=, tty=, raw=, detach_keys=}])
** -> "exit", status | "detached" | "closed" | nil, err, errno
** input: relay stdin (its end closes the container's stdin); tty: the
** container has a terminal (its size follows ours); raw: put our terminal
** in raw mode meanwhile; detach_keys: the byte sequence that detaches
** ("\16\17", ctrl-p ctrl-q, by default; "" for none). "closed": the
** monitor went away without a status. */
static int l_attach(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bool input = false, tty = false, raw = false;
  size_t nkeys = 2;
  const char *keys = "\x10\x11";
  if (!lua_isnoneornil(L, 2)) {
    static const char *const known[] = {"input", "tty", "raw", "detach_keys",
                                        NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "attach", known);
    lua_getfield(L, 2, "input");
    input = lua_toboolean(L, -1);
    lua_getfield(L, 2, "tty");
    tty = lua_toboolean(L, -1);
    lua_getfield(L, 2, "raw");
    raw = lua_toboolean(L, -1);
    lua_pop(L, 3);
    if (lua_getfield(L, 2, "detach_keys") != LUA_TNIL)
      keys = luaL_checklstring(L, -1, &nkeys);  /* anchored by opts */
    lua_pop(L, 1);
  }
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path)
    return lx_fail(L, path, ENAMETOOLONG);
  strcpy(a.sun_path, path);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0)
    return lx_fail(L, "socket", errno);
  if (connect(sock, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = errno;
    close(sock);
    return lx_fail(L, path, e);
  }
  sigset_t set, prev;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  if (tty)
    sigaddset(&set, SIGWINCH);
  sigprocmask(SIG_BLOCK, &set, &prev);
  sigdelset(&set, SIGPIPE);
  int sfd = tty ? signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK) : -1;
  struct termios saved;
  bool restore = false;
  if (raw && isatty(0) && tcgetattr(0, &saved) == 0) {
    struct termios t = saved;
    cfmakeraw(&t);
    restore = tcsetattr(0, TCSADRAIN, &t) == 0;
  }
  if (tty)
    send_size(sock);

  attaching at = {.sock = sock, .keys = keys, .nkeys = nkeys};
  lx_relay rl;
  lx_relay_init(&rl, &at);
  lx_relay_stream(&rl, sock, sock_data, sock_end, NULL);
  if (input)
    lx_relay_stream(&rl, 0, input_data, input_end, NULL);
  lx_relay_event(&rl, sfd, winch_ready, NULL);
  lx_relay_run(&rl);
  if (restore)
    tcsetattr(0, TCSADRAIN, &saved);
  if (sfd >= 0)
    close(sfd);
  close(sock);
  /* a SIGPIPE of a reader gone away must not land once unblocked */
  sigset_t pipeset;
  sigemptyset(&pipeset);
  sigaddset(&pipeset, SIGPIPE);
  struct timespec zero = {0, 0};
  while (sigtimedwait(&pipeset, NULL, &zero) > 0)
    ;
  sigprocmask(SIG_SETMASK, &prev, NULL);
  if (at.r.exited) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, at.r.status);
    return 2;
  }
  if (at.detached)
    lua_pushliteral(L, "detached");
  else
    lua_pushliteral(L, "closed");
  return 1;
}

void lx_open_attach(lua_State *L) {
  lua_pushcfunction(L, l_attach);
  lua_setfield(L, -2, "attach");
}
