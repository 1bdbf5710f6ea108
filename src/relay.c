/*
** relay.c -- one poll loop that moves bytes between fds (relay.h says
** how it is used). Plain C: the monitor links it too.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "relay.h"

void lx_relay_init(lx_relay *r, void *ctx) {
  memset(r, 0, sizeof *r);
  for (int i = 0; i < LX_RELAY_MAX; i++)
    r->fd[i].fd = -1;
  r->timeout = -1;
  r->ctx = ctx;
}

static lx_relay_fd *add(lx_relay *r, int fd, void *ctx) {
  if (fd < 0)
    return NULL;
  for (int i = 0; i < LX_RELAY_MAX; i++) {
    lx_relay_fd *f = &r->fd[i];
    if (f->fd < 0) {
      *f = (lx_relay_fd){.fd = fd, .ctx = ctx, .serial = ++r->serial};
      return f;
    }
  }
  return NULL;
}

lx_relay_fd *lx_relay_stream(lx_relay *r, int fd,
                             void (*data)(lx_relay *, lx_relay_fd *,
                                          const char *, size_t),
                             void (*end)(lx_relay *, lx_relay_fd *),
                             void *ctx) {
  lx_relay_fd *f = add(r, fd, ctx);
  if (f) {
    f->data = data;
    f->end = end;
  }
  return f;
}

lx_relay_fd *lx_relay_event(lx_relay *r, int fd,
                            void (*ready)(lx_relay *, lx_relay_fd *),
                            void *ctx) {
  lx_relay_fd *f = add(r, fd, ctx);
  if (f)
    f->ready = ready;
  return f;
}

void lx_relay_remove(lx_relay_fd *f) {
  if (f)
    f->fd = -1;
}

/* What stream `f` has now: one read, handed to data() or, at its end,
** to end(), which frees the slot. */
static void take(lx_relay *r, lx_relay_fd *f) {
  char buf[LX_RELAY_BUF];
  ssize_t n = read(f->fd, buf, sizeof buf);
  if (n > 0) {
    if (f->data)
      f->data(r, f, buf, (size_t)n);
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  unsigned serial = f->serial;
  if (f->end)
    f->end(r, f);
  if (f->serial == serial)
    f->fd = -1;
}

int lx_relay_run(lx_relay *r) {
  r->stop = false;
  while (!r->stop) {
    struct pollfd pf[LX_RELAY_MAX];
    unsigned serial[LX_RELAY_MAX];
    int slot[LX_RELAY_MAX], n = 0;
    for (int i = 0; i < LX_RELAY_MAX; i++) {
      lx_relay_fd *f = &r->fd[i];
      if (f->fd >= 0 && !f->paused) {
        pf[n] = (struct pollfd){.fd = f->fd, .events = POLLIN};
        serial[n] = f->serial;
        slot[n++] = i;
      }
    }
    if (n == 0)
      return 0;
    int k = poll(pf, (nfds_t)n, r->timeout);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      return -1;
    if (k == 0) {
      if (!r->idle)
        return 0;
      r->idle(r);
      continue;
    }
    for (int j = 0; j < n && !r->stop; j++) {
      lx_relay_fd *f = &r->fd[slot[j]];
      if (!pf[j].revents || f->fd < 0 || f->serial != serial[j])
        continue;  /* quiet, or removed (or replaced) by a hook meanwhile */
      if (f->ready)
        f->ready(r, f);
      else
        take(r, f);
    }
  }
  return 0;
}

bool lx_relay_write(int fd, const void *buf, size_t n, bool wait) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno == EAGAIN && wait) {
      struct pollfd pf = {.fd = fd, .events = POLLOUT};
      poll(&pf, 1, -1);
      continue;
    }
    if (w <= 0)
      return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}
