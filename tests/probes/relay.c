/*
** tests/probes/relay.c -- drives src/relay.c directly (spawn_spec.lua
** builds it with the relay and checks what it prints).
**
**   a  a stream with "hello" and then its end
**   b  an event that, when it fires, removes c (readable in that same
**      round, after b): c must never be called for
**   c  a stream with "lost"
** then the relay is quiet: its poll times out, and the idle hook stops
** it. Last, lx_relay_write without waiting gives up on a full pipe.
*/
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../src/relay.h"

static lx_relay_fd *c_slot;

static void say(const char *what, const char *buf, size_t n) {
  printf("%s%.*s\n", what, (int)n, buf);
}

static void a_data(lx_relay *r, lx_relay_fd *f, const char *buf, size_t n) {
  (void)r, (void)f;
  say("a:", buf, n);
}

static void a_end(lx_relay *r, lx_relay_fd *f) {
  (void)r, (void)f;
  say("a:end", "", 0);
}

static void b_ready(lx_relay *r, lx_relay_fd *f) {
  (void)r;
  char c;
  if (read(f->fd, &c, 1) == 1)
    say("b:ready", "", 0);
  lx_relay_remove(c_slot);
}

static void c_data(lx_relay *r, lx_relay_fd *f, const char *buf, size_t n) {
  (void)r, (void)f;
  say("c:", buf, n);
}

static void idle(lx_relay *r) {
  say("idle", "", 0);
  r->stop = true;
}

int main(void) {
  int a[2], b[2], c[2];
  if (pipe(a) < 0 || pipe(b) < 0 || pipe(c) < 0)
    return 1;
  if (write(a[1], "hello", 5) != 5 || write(b[1], "x", 1) != 1 ||
      write(c[1], "lost", 4) != 4)
    return 1;
  close(a[1]);
  lx_relay r;
  lx_relay_init(&r, NULL);
  lx_relay_stream(&r, a[0], a_data, a_end, NULL);
  lx_relay_event(&r, b[0], b_ready, NULL);
  c_slot = lx_relay_stream(&r, c[0], c_data, NULL, NULL);
  r.timeout = 100;
  r.idle = idle;
  if (lx_relay_run(&r) != 0)
    return 1;
  fflush(stdout);
  fcntl(c[1], F_SETFL, O_NONBLOCK);
  static char big[1 << 20];
  printf("write without waiting to a full pipe: %s\n",
         lx_relay_write(c[1], big, sizeof big, false) ? "all" : "gave up");
  return 0;
}
