/*
** relay.h -- one poll loop that moves bytes between fds.
**
** Its three users: process:wait (the pty of `luactr run -t` to and from
** the caller's terminal, process.c), the attach client (attach.c) and the
** monitor of a detached container (luactr-monitor.c, a static program of
** its own: this is plain C, with no Lua in it). What differs between
** them stays with them, as hooks: the signalfd, the detach keys, the
** frames of the attach protocol, the log.
**
** A relay watches up to LX_RELAY_MAX fds, each one of two kinds:
**   a stream  the relay reads what comes (LX_RELAY_BUF at a time) and
**             hands it to data(); at the stream's end (EOF, or an error
**             other than EAGAIN and EINTR, such as a pty master's EIO
**             once its last slave closed) it calls end() and frees the
**             slot; the fd itself is the owner's to close
**   an event  the relay calls ready() when the fd is readable, and the
**             owner reads it (a signalfd, a pidfd, a listening socket)
** in the order of their slots. Hooks may add and remove slots as they
** go; a slot removed or reused during a round is not called for in it.
*/
#ifndef LUACTR_RELAY_H
#define LUACTR_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#define LX_RELAY_MAX 24
#define LX_RELAY_BUF 16384

typedef struct lx_relay lx_relay;
typedef struct lx_relay_fd lx_relay_fd;

struct lx_relay_fd {
  int fd;                /* -1: a free slot */
  bool paused;           /* kept, but not watched for now */
  void (*data)(lx_relay *r, lx_relay_fd *f, const char *buf, size_t n);
  void (*end)(lx_relay *r, lx_relay_fd *f);
  void (*ready)(lx_relay *r, lx_relay_fd *f);  /* an event, else NULL */
  void *ctx;             /* the owner's */
  unsigned serial;       /* which add made it */
};

struct lx_relay {
  lx_relay_fd fd[LX_RELAY_MAX];
  int timeout;           /* ms each poll waits at most, -1: no limit */
  void (*idle)(lx_relay *r);  /* a poll timed out; NULL: the relay ends */
  bool stop;             /* set by a hook: the relay ends after it */
  void *ctx;             /* the owner's */
  unsigned serial;
};

/* Empties `r`: no slot, no time limit, no idle hook. */
void lx_relay_init(lx_relay *r, void *ctx);

/* Watches stream `fd`: data() gets what it reads, end() its end (either
** may be NULL). Returns the slot, or NULL when every slot is taken. */
lx_relay_fd *lx_relay_stream(lx_relay *r, int fd,
                             void (*data)(lx_relay *, lx_relay_fd *,
                                          const char *, size_t),
                             void (*end)(lx_relay *, lx_relay_fd *),
                             void *ctx);

/* Watches event `fd`: ready() is called when it is readable. Returns the
** slot, or NULL when every slot is taken. */
lx_relay_fd *lx_relay_event(lx_relay *r, int fd,
                            void (*ready)(lx_relay *, lx_relay_fd *),
                            void *ctx);

/* Stops watching the slot's fd (it stays open). Idempotent; NULL is
** no slot. */
void lx_relay_remove(lx_relay_fd *f);

/* Polls and calls the hooks until one sets r->stop, no slot is watched,
** or a poll times out without an idle hook: 0. -1 with errno when poll
** fails (never for EINTR). */
int lx_relay_run(lx_relay *r);

/* Writes all `n` bytes of `buf` to `fd`; on a full non-blocking fd it
** waits for room when `wait`, else gives the rest up. false when the fd
** fails (a reader gone: EPIPE, with SIGPIPE ignored or blocked). */
bool lx_relay_write(int fd, const void *buf, size_t n, bool wait);

#endif
