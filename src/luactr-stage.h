/*
** luactr-stage.h -- what spawn (spawn.c, spawn-child.c) and
** luactr-stage.c agree on.
**
** The stage is the program a container's process execs just before its
** command (see luactr-stage.c for why). spawn-child.c execs it from a
** sealed memfd with the argument vector
**
**   argv[0]  "luactr-stage"
**   argv[1]  the mode: "exec" or "join"
**   argv[2]  the error pipe's fd, or "-"
**   argv[3]  the seccomp filters' fd, or "-"
**   argv[4]  flags: "s" setsid, "t" take fd 0 as the controlling
**            terminal, "p" SIGKILL on the parent's death; "-" for none
**   argv[5]  the start barrier's fd, or "-": the stage says "created" on
**            the error pipe and waits there until a byte comes (start);
**            it exits at its end (the container was never started)
**   argv[6]  where to look for the command: the PATH of its environment
**            ("" when there is none: a name without a slash is then not
**            found)
**   argv[7]  the command's argv[0], then its arguments
**
** and the command's environment as its own; or, as the init of --init,
** with "luactr-init", the command's pid (its child), the seccomp
** filters on fd 3, if any, and on fd 4 the write end of the pipe the
** command waits on: the init closes it once its filters are in, so
** nothing of the command runs while PID 1 is unconfined. It reads nothing
** else: no libc, no file, no Lua. This header is plain C, with no libc
** in it.
*/
#ifndef LUACTR_STAGE_H
#define LUACTR_STAGE_H

#define LX_STAGE_ARGS 7  /* the stage's own arguments, before the command's */

/* What a failing step sends up the error pipe: errno and "step detail".
** A message is written whole, in one write (it is < PIPE_BUF), and only
** offsetof(lx_report, msg) + len + 1 of it is sent. */
typedef struct lx_report {
  int err;      /* the errno; 0 marks a message that is no failure:
                "pid N" (join mode) or "created" (the start barrier) */
  int len;      /* of msg, without its NUL */
  char msg[1024];
} lx_report;

/* --init: the init's fds (see above) */
#define LX_INIT_FILTERS_FD 3
#define LX_INIT_BARRIER_FD 4

/* The seccomp filters, as spawn.c writes them for the stage to install:
** a header, then each filter's instructions (struct sock_filter, 8 bytes
** each) one after the other. */
#define LX_FILTERS_MAGIC 0x4658534cU  /* "LSXF" */
#define LX_FILTERS_MAX 8
typedef struct lx_filters {
  unsigned magic;
  unsigned flags;               /* SECCOMP_FILTER_FLAG_* */
  unsigned n;                   /* filters, at most LX_FILTERS_MAX */
  unsigned len[LX_FILTERS_MAX]; /* instructions of each */
} lx_filters;

#endif
