/*
** spawn.h -- what the four files of core.spawn share; nothing else
** includes it.
**
**   spawn-parse.c  the spec and opts tables -> a `spec` (every check)
**   spawn-child.c  the cloned child: the start sequence up to the
**                  stage's exec, async-signal-safe only
**   spawn.c        the parent: core.spawn, the clone, the child's reports
**   process.c      the luactr.process handle: start, wait, kill, resize
**
** The parent parses everything into a `spec` before the clone; the child
** only reads it (it is the parent's memory, copied by the clone), and
** says what failed as an lx_report on the error pipe (luactr-stage.h).
*/
#ifndef LUACTR_SPAWN_H
#define LUACTR_SPAWN_H

#include <signal.h>

#include "luactr.h"
#include "luactr-stage.h"

#define MAX_JOIN 8
#define MAX_CGROUPS 16

/* {====== the spec, parsed in the parent ====== */

typedef struct spec {
  const char **argv, **envp;     /* NULL-terminated */
  const char **stage_argv;       /* LX_STAGE_ARGS slots, then argv */
  const char *cwd;
  uid_t uid;
  gid_t gid;
  gid_t *groups;
  int ngroups;
  mode_t umask;
  bool terminal, no_new_privs;
  lx_caps caps;                  /* process.capabilities (caps.set if any) */
  lx_seccomp seccomp;            /* linux.seccomp, compiled (seccomp.set) */
  const char *seccomp_cache;     /* the folder of compiled seccomp filters */
  unsigned short rows, cols;     /* console size, 0 when not given */
  const char *root;
  bool root_ro;
  const char *hostname, *domainname;
  int nsflags;                   /* namespaces to create */
  const char *uidmap, *gidmap;   /* user namespace: the maps the parent */
  size_t uidmaplen, gidmaplen;   /* writes, "inside outside count" lines */
  bool idmap_root;               /* root: an idmapped mount (opts) */
  int syncfd;                    /* user namespace: the child waits here */
  int njoin;                     /* namespaces to join, by path */
  struct { int type; const char *path; } join[MAX_JOIN];
  unsigned long rootprop;
  lx_mount *mounts;
  int nmounts;
  bool dev_tmpfs;                /* /dev is ours to fill */
  lx_device *devices;            /* linux.devices, made after /dev */
  int ndevices;
  const char **masked, **ropaths;
  int nmasked, nro;
  /* from opts, not the OCI spec */
  bool init;                     /* the stage as PID 1, the command its child */
  bool stdin_null, forward, pdeath;
  bool make_cwd;                 /* a missing working directory is made */
  bool start;                    /* false: wait at the start barrier */
  int stdio[3];                  /* fds to become 0, 1, 2, or -1 */
  const char *cgroups[MAX_CGROUPS];  /* cgroup folders to join */
  int ncgroups;
  int cgfds[MAX_CGROUPS];        /* their cgroup.procs, opened by spawn */
  pid_t target;                  /* join mode: the running container's PID 1 */
  long long target_start;        /* its start time (/proc stat), -1: unchecked */
  int targetfd;                  /* its pidfd, opened by spawn */
  /* set up by spawn */
  int errfd, sockfd;
  int stagefd;                   /* the sealed copy of luactr-stage */
  int filterfd;                  /* the seccomp filters for it, or -1 */
  int startfd;                   /* the start barrier's read end, or -1 */
  int barrier;                   /* --init: ends when PID 1 is the stage */
  sigset_t childmask;            /* the mask the command starts with */
} spec;

/* Checks the spec (stack index 1) and the opts (2, may be nil) and
** copies what the child needs into `s`; what it points to is anchored
** on the stack above them, which it leaves there. Raises on anything
** malformed, unknown or that spawn cannot honour. */
void lx_spawn_parse(lua_State *L, spec *s);

/* }====== */

/* {====== the child ====== */

/* The cloned child: runs the start sequence of `s` (or, join mode, enters
** the running container) and execs the stage; reports a failing step on
** s->errfd and exits 125. Never returns. */
void __attribute__((noreturn)) lx_spawn_child(spec *s);

/* }====== */

/* {====== the child's reports, read by the parent ====== */

/* What the error pipe said so far. */
typedef struct lx_reports {
  lx_report failed;   /* the first failure (failed.err != 0) */
  pid_t joined;       /* join mode: the command's process, or -1 */
  bool created;       /* the stage waits at the start barrier */
  bool understood;    /* false: something that is not a report came */
} lx_reports;

/* Reads reports from `fd` until it closes (the command was exec'd, or a
** step failed), or, with `upto_created`, until the stage says it waits
** at the start barrier. */
void lx_spawn_reports(int fd, bool upto_created, lx_reports *r);

/* Pushes spawn's failure for reports `r` that say one: nil, "step detail:
** strerror", errno, step; or nil, message, EPROTO when nothing
** understandable came. Returns the number of values pushed. */
int lx_spawn_pushfailure(lua_State *L, const lx_reports *r);

/* }====== */

/* {====== the process handle ====== */

typedef struct process {
  pid_t pid;
  int pidfd;
  int master;        /* pty master, or -1 */
  int errfd;         /* created, not started: the error pipe, else -1 */
  int startfd;       /* created, not started: the barrier's end, else -1 */
  bool reaped;
  bool masked;       /* forwarded signals blocked since spawn */
  sigset_t oldmask;  /* the caller's mask, restored by wait or close */
} process;

/* Pushes a new handle with no process yet (pid -1, every fd -1). */
process *lx_process_new(lua_State *L);

/* Gives the caller its signal mask back (the forwarded ones were blocked
** since spawn). Idempotent. */
void lx_process_unmask(process *p);

/* The signals `luactr run` forwards to the container. */
void lx_forward_set(sigset_t *set);

/* Sets the luactr.process metatable up. */
void lx_open_process(lua_State *L);

/* }====== */

#endif
