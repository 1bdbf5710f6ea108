/*
** attach.c -- the client side of a detached container's attach socket.
**
** core.attach connects the caller's stdio to the monitor of a container
** (src/luactr-monitor.c has the protocol: frames of a type byte, a 32-bit
** big-endian length and the payload). It relays until the container ends
** (the monitor sends its status) or the detach keys are typed, in raw
** mode on a terminal, following SIGWINCH.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
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

enum { F_INPUT = 0, F_RESIZE = 1, F_EOF = 2 };      /* to the monitor */
enum { F_STDOUT = 1, F_STDERR = 2, F_EXIT = 3 };    /* from it */

static bool write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

static bool send_frame(int sock, int type, const void *s, size_t n) {
  unsigned char h[5] = {(unsigned char)type, (unsigned char)(n >> 24),
                        (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                        (unsigned char)n};
  return write_all(sock, h, 5) && (n == 0 || write_all(sock, s, n));
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
      write_all(r->hdr[0] == F_STDOUT ? 1 : 2, buf + i, take);
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

  reader r = {0};
  bool in_open = input, detached = false, closed = false;
  size_t matched = 0;
  while (!r.exited && !detached && !closed) {
    struct pollfd p[3] = {{.fd = sock, .events = POLLIN},
                          {.fd = in_open ? 0 : -1, .events = POLLIN},
                          {.fd = sfd, .events = POLLIN}};
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (p[0].revents) {
      unsigned char buf[16384];
      ssize_t n = read(sock, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        closed = true;
      else
        on_output(&r, buf, (size_t)n);
    }
    if (p[1].revents) {
      unsigned char buf[4096], out[4096 + 16];
      ssize_t n = read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        in_open = false;
        send_frame(sock, F_EOF, NULL, 0);
        continue;
      }
      /* the detach keys are held back while they may be typed; a
      ** sequence broken off is sent on as it was */
      size_t k = 0;
      for (ssize_t i = 0; i < n && !detached; i++) {
        if (nkeys > 0 && buf[i] == (unsigned char)keys[matched]) {
          if (++matched == nkeys)
            detached = true;
          continue;
        }
        if (matched > 0) {
          memcpy(out + k, keys, matched);
          k += matched;
          matched = 0;
          if (nkeys > 0 && buf[i] == (unsigned char)keys[0]) {
            matched = 1;
            continue;
          }
        }
        out[k++] = buf[i];
        if (k >= 4096) {
          send_frame(sock, F_INPUT, out, k);
          k = 0;
        }
      }
      if (k > 0)
        send_frame(sock, F_INPUT, out, k);
    }
    if (sfd >= 0 && p[2].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si)
        ;
      send_size(sock);
    }
  }
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
  if (r.exited) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, r.status);
    return 2;
  }
  if (detached)
    lua_pushliteral(L, "detached");
  else
    lua_pushliteral(L, "closed");
  return 1;
}

void lx_open_attach(lua_State *L) {
  lua_pushcfunction(L, l_attach);
  lua_setfield(L, -2, "attach");
}
