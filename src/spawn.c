/*
** spawn.c -- core.spawn: a container, from an OCI spec, natively.
**
** core.spawn(spec, opts) checks the spec and copies everything the child
** needs into a `spec` in the parent (spawn-parse.c), makes the sealed
** copy of luactr-stage and the seccomp filters, then clones a child into
** new namespaces. The child runs the whole start sequence (spawn-child.c)
** with no Lua in between and only async-signal-safe calls, then execs
** the stage, which installs the filters and execs the command: the
** process that the container could see is never backed by a host file
** (luactr-stage.c says why). A failing step is written to the error pipe
** as (errno, "step detail"); the command's execve closes the pipe, so
** the parent knows the outcome when its read ends.
**
** With opts.start = false the stage stops short of the command, at the
** start barrier (runc's exec fifo): it says "created" on the error pipe
** and waits on a socket whose other end the process handle holds, until
** process:start() (process.c) lets it go on. The container then exists
** whole -- namespaces, mounts, cgroups, user, capabilities, no_new_privs
** -- and nothing of its command has run: the caller can record its pid
** or move a network device into its namespace first.
**
** It returns a process handle (luactr.process, process.c).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"

/* {====== the parent ====== */

static int recv_fd(int sock) {
  int fd;
  return lx_recv_fd(sock, &fd) > 0 ? fd : -1;
}

static pid_t clone_child(int flags, int *pidfd) {
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = (uint64_t)flags | CLONE_PIDFD;
  ca.pidfd = (uint64_t)(uintptr_t)pidfd;
  ca.exit_signal = SIGCHLD;
  return (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
}

/* Opens a pidfd of the container's PID 1 for a join (it pins that very
** process: setns through it can never reach another one that took the
** pid later). The start time, when given, is checked once the pidfd is
** open, so the pidfd surely names the process the caller recorded.
** Returns the fd, or -1 with errno (ESRCH: it is gone). */
static int open_target(const spec *s) {
  int fd = (int)syscall(SYS_pidfd_open, s->target, 0);
  if (fd < 0)
    return -1;
  if (s->target_start >= 0 && lx_start_time(s->target) != s->target_start) {
    close(fd);
    errno = ESRCH;
    return -1;
  }
  return fd;
}

/* The sealed memfd copy of luactr-stage (the file "stage" beside this
** library) that the container's process execs before its command: see
** luactr-stage.c for why. Close-on-exec; -1 with errno, and *what set to
** the file that failed. */
static int stage_copy(char *path, const char **what) {
  Dl_info info;
  *what = "luactr-stage";
  if (!dladdr((void *)stage_copy, &info) || !info.dli_fname) {
    errno = ENOENT;
    return -1;
  }
  const char *slash = strrchr(info.dli_fname, '/');
  size_t dir = slash ? (size_t)(slash - info.dli_fname) + 1 : 0;
  if (dir + sizeof "stage" > PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(path, info.dli_fname, dir);
  memcpy(path + dir, "stage", sizeof "stage");
  *what = path;
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return -1;
  struct stat st;
  int fd = -1;
  if (fstat(in, &st) < 0)
    goto out;
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U  /* Linux 6.3: says the memfd may be exec'd */
#endif
  fd = memfd_create("luactr-stage", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL)
    fd = memfd_create("luactr-stage", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    goto out;
  for (off_t done = 0; done < st.st_size;) {
    ssize_t n = sendfile(fd, in, NULL, (size_t)(st.st_size - done));
    if (n <= 0) {
      if (n == 0)
        errno = EIO;  /* it shrank */
      goto fail;
    }
    done += n;
  }
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020  /* Linux 6.3: its mode's x bits stay */
#endif
  int seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
  if (fcntl(fd, F_ADD_SEALS, seals | F_SEAL_EXEC) < 0 &&
      (errno != EINVAL || fcntl(fd, F_ADD_SEALS, seals) < 0))
    goto fail;
  goto out;
fail:
  close(fd);
  fd = -1;
out:;
  int e = errno;
  close(in);
  errno = e;
  return fd;
}

/* The compiled seccomp filters, in the form the stage installs them
** (lx_filters in luactr-stage.h), in a sealed memfd. Close-on-exec; -1
** with errno. */
static int filter_copy(const lx_seccomp *f) {
  _Static_assert(LX_SECCOMP_MAX <= LX_FILTERS_MAX, "filters");
  int fd = memfd_create("luactr-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -1;
  lx_filters h;
  memset(&h, 0, sizeof h);
  h.magic = LX_FILTERS_MAGIC;
  h.flags = f->flags;
  h.n = (unsigned)f->n;
  struct iovec iov[1 + LX_SECCOMP_MAX];
  size_t total = sizeof h;
  iov[0] = (struct iovec){.iov_base = &h, .iov_len = sizeof h};
  for (int i = 0; i < f->n; i++) {
    h.len[i] = f->progs[i].len;
    iov[i + 1] = (struct iovec){
      .iov_base = f->progs[i].filter,
      .iov_len = f->progs[i].len * sizeof(struct sock_filter)};
    total += iov[i + 1].iov_len;
  }
  ssize_t n = writev(fd, iov, f->n + 1);  /* a memfd takes it whole */
  if (n != (ssize_t)total ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW |
                             F_SEAL_WRITE) < 0) {
    int e = n < 0 ? errno : n != (ssize_t)total ? EIO : errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

void lx_spawn_reports(int fd, bool upto_created, lx_reports *r) {
  char buf[3 * sizeof(lx_report)];
  size_t got = 0, at = 0;
  const size_t head = offsetof(lx_report, msg);
  r->failed.err = 0;
  r->joined = -1;
  r->created = false;
  r->understood = true;
  for (;;) {
    while (got - at >= head) {  /* the whole messages come first */
      lx_report m;
      memcpy(&m, buf + at, head);
      if (m.len < 0 || m.len >= (int)sizeof m.msg) {
        r->understood = false;
        return;
      }
      if (got - at < head + (size_t)m.len + 1)
        break;
      memcpy(m.msg, buf + at + head, (size_t)m.len);
      m.msg[m.len] = '\0';
      at += head + (size_t)m.len + 1;
      long pid;
      if (m.err != 0) {
        if (r->failed.err == 0)
          r->failed = m;  /* the first failure is the one to tell */
      } else if (strcmp(m.msg, "created") == 0) {
        r->created = true;
      } else if (sscanf(m.msg, "pid %ld", &pid) == 1 && pid > 0) {
        r->joined = (pid_t)pid;
      } else {
        r->understood = false;
        return;
      }
    }
    if (upto_created && r->created)
      return;  /* the stage waits: the pipe stays open until start */
    if (at > 0) {
      memmove(buf, buf + at, got - at);
      got -= at;
      at = 0;
    }
    ssize_t n = read(fd, buf + got, sizeof buf - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  if (got != at)
    r->understood = false;  /* a piece of a message */
}

int lx_spawn_pushfailure(lua_State *L, const lx_reports *r) {
  if (!r->understood || !r->failed.err) {
    lua_pushnil(L);
    lua_pushliteral(L, "spawn: child failed without a report");
    lua_pushinteger(L, EPROTO);
    return 3;
  }
  const char *msg = r->failed.msg, *sp = strchr(msg, ' ');
  luaL_pushfail(L);
  lua_pushfstring(L, "%s: %s", msg, strerror(r->failed.err));
  lua_pushinteger(L, r->failed.err);
  lua_pushlstring(L, msg, sp ? (size_t)(sp - msg) : strlen(msg));
  return 4;
}

/* The parent's part of a new user namespace: writes the child's uid and
** gid maps, makes the idmapped copy of its root when asked (only the
** host's root may: it needs CAP_SYS_ADMIN over the filesystem), and lets
** the child go on, sending that copy along. Returns NULL, or the step
** that failed with *err (and *detail) set. */
static const char *userns_start(const spec *s, pid_t pid, int syncfd,
                                const char **detail, int *err) {
  if (lx_ns_write_map(pid, "uid_map", s->uidmap, s->uidmaplen) < 0) {
    *err = errno;
    return "uid_map";
  }
  if (lx_ns_write_map(pid, "gid_map", s->gidmap, s->gidmaplen) < 0) {
    *err = errno;
    return "gid_map";
  }
  int tree = -1;
  if (s->idmap_root) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      *err = errno;
      *detail = "user namespace";
      return "open";
    }
    tree = lx_mount_idmapped(s->root, ns);
    *err = errno;
    close(ns);
    if (tree < 0) {
      *detail = s->root;
      return "idmap";
    }
  }
  ssize_t n = lx_send_fd(syncfd, tree);
  *err = errno;
  if (tree >= 0)
    close(tree);
  return n == 1 ? NULL : "sync";
}

/* Ends a child that will not run: SIGKILL when `kill` (it waits for us),
** then reaps it and gives the caller its signal mask back. */
static void abandon(process *p, bool kill) {
  if (kill && p->pidfd >= 0)
    syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
  if (p->pid > 0)
    waitpid(p->pid, NULL, 0);
  p->reaped = true;
  lx_process_unmask(p);
}

/* core.spawn(spec, [opts]) -> process | nil, err, errno, step
** Creates a container from OCI spec `spec` and starts its command.
** opts: init (true: the stage's init as PID 1, the command its child),
** stdin ("inherit" | "null"),
** forward_signals (block them from now until process:wait forwards),
** die_with_parent (SIGKILL the container when the caller dies),
** cgroups (folders whose cgroup.procs the container joins before it
** runs anything: one per v1 hierarchy, or the one v2 folder; spawn makes
** no cgroup, so a spec with linux.resources or linux.cgroupsPath is
** refused without them),
** make_cwd (make a missing process.cwd, as root, before entering it),
** start (false: create the container -- everything up to the command's
** exec -- and return a process that waits for process:start()),
** join (join mode, for exec: the pid of a running container's PID 1,
** whose namespaces the process enters instead of making new ones, with
** no mount, pivot_root or /dev of its own; the spec's namespaces say
** which; join_start: that process's start time, checked against the pid's
** reuse; a process gone fails as "join container: No such process"; no
** init, make_cwd nor start = false with it),
** stdio ({in, out, err}: fds that become the container's 0, 1 and 2,
** for a monitor that holds the other ends; in -1: /dev/null; not with a
** terminal nor stdin),
** seccomp_cache (a folder, absolute, where linux.seccomp's compiled
** filters are kept and looked up: see seccomp.compile).
** A step that fails comes back as nil, "step detail: strerror", errno,
** step ("exec" when the command could not be run).
** Every container's process execs the command through luactr-stage, the
** program "stage" beside this library (luactr-stage.c). */
static int l_spawn(lua_State *L) {
  spec s;
  lx_spawn_parse(L, &s);
  int errp[2] = {-1, -1}, sockp[2] = {-1, -1}, syncp[2] = {-1, -1};
  int startp[2] = {-1, -1};
  s.stagefd = s.filterfd = s.targetfd = s.barrier = s.startfd = -1;
  for (int i = 0; i < s.ncgroups; i++)
    s.cgfds[i] = -1;
  process *p = lx_process_new(L);
  int nret = 1;  /* the process, unless something fails */
  const char *what = NULL;  /* what failed before the clone */
  char stagepath[PATH_MAX];
  if ((s.stagefd = stage_copy(stagepath, &what)) < 0)
    goto failed;
  what = "seccomp filters";
  if (s.seccomp.set && s.no_new_privs && (s.filterfd = filter_copy(&s.seccomp)) < 0)
    goto failed;
  what = "pipe";
  if (pipe2(errp, O_CLOEXEC) < 0)
    goto failed;
  what = "socketpair";
  if (s.terminal &&
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockp) < 0)
    goto failed;
  /* a new user namespace: the child waits on syncp for its id maps */
  if ((s.nsflags & CLONE_NEWUSER) && !s.target &&
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, syncp) < 0)
    goto failed;
  /* the start barrier: the stage waits on startp until process:start */
  if (!s.start &&
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, startp) < 0)
    goto failed;
  what = "join container";
  if (s.target && (s.targetfd = open_target(&s)) < 0)
    goto failed;
  what = "open cgroup.procs";
  for (int i = 0; i < s.ncgroups; i++) {
    char path[PATH_MAX];
    errno = ENAMETOOLONG;
    if (!lx_path_join(path, s.cgroups[i], "cgroup.procs") ||
        (s.cgfds[i] = open(path, O_WRONLY | O_CLOEXEC)) < 0)
      goto failed;
  }
  s.errfd = errp[1];
  s.sockfd = sockp[1];
  s.syncfd = syncp[1];
  s.startfd = startp[0];
  /* Block every signal across the clone: the child must not run a Lua
  ** handler; it restores the caller's mask just before exec. */
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &p->oldmask);
  s.childmask = p->oldmask;
  /* the child unshares the cgroup namespace once it has joined; a join
  ** stays in our namespaces until it enters the container's */
  int flags = s.target ? 0 : s.nsflags & ~(s.ncgroups ? CLONE_NEWCGROUP : 0);
  pid_t pid = clone_child(flags, &p->pidfd);
  if (pid == 0) {
    int ours[] = {errp[0], sockp[0], syncp[0], startp[1]};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
      if (ours[i] >= 0)
        close(ours[i]);
    lx_spawn_child(&s);
  }
  int cloneerr = errno;
  if (s.forward && pid > 0) {
    sigset_t fw;
    lx_forward_set(&fw);
    sigset_t keep = p->oldmask;
    for (int sig = 1; sig < _NSIG; sig++)
      if (sigismember(&fw, sig))
        sigaddset(&keep, sig);
    sigprocmask(SIG_SETMASK, &keep, NULL);
    p->masked = true;
  } else {
    sigprocmask(SIG_SETMASK, &p->oldmask, NULL);
  }
  /* the child's ends */
  int *theirs[] = {&errp[1], &sockp[1], &syncp[1], &startp[0]};
  for (size_t i = 0; i < sizeof theirs / sizeof theirs[0]; i++)
    if (*theirs[i] >= 0) {
      close(*theirs[i]);
      *theirs[i] = -1;
    }
  if (pid < 0) {
    what = "clone";
    errno = cloneerr;
    goto failed;
  }
  p->pid = pid;
  if (syncp[0] >= 0) {
    int uerr = 0;
    const char *detail = "";
    const char *ustep = userns_start(&s, pid, syncp[0], &detail, &uerr);
    if (ustep) {
      abandon(p, true);  /* it waits for us: it ends having done nothing */
      luaL_pushfail(L);
      lua_pushfstring(L, "%s%s%s: %s", ustep, *detail ? " " : "", detail,
                      strerror(uerr));
      lua_pushinteger(L, uerr);
      lua_pushstring(L, ustep);
      nret = 4;
      goto done;
    }
  }
  lx_reports r;
  lx_spawn_reports(errp[0], !s.start, &r);
  if (s.target) {
    /* the first child (in our pid namespace) ends once the stage has
    ** cloned the command's process, which is our child too */
    waitpid(pid, NULL, 0);
    close(p->pidfd);
    p->pidfd = -1;
    p->pid = r.joined;
  }
  if (!r.understood || r.failed.err || (s.target && r.joined < 0) ||
      (!s.start && !r.created)) {
    abandon(p, false);  /* a step failed: reap what ran, report the step */
    nret = lx_spawn_pushfailure(L, &r);
    goto done;
  }
  if (s.target && (p->pidfd = (int)syscall(SYS_pidfd_open, r.joined, 0)) < 0) {
    int e = errno;
    abandon(p, false);  /* ours, not reaped: never seen */
    nret = lx_fail(L, "pidfd_open", e);
    goto done;
  }
  if (s.terminal && (p->master = recv_fd(sockp[0])) < 0) {
    abandon(p, true);
    nret = lx_failmsg(L, "spawn: no terminal from the container", EPROTO);
    goto done;
  }
  if (!s.start) {
    /* the handle holds the barrier and the rest of the reports */
    p->errfd = errp[0];
    p->startfd = startp[1];
    errp[0] = startp[1] = -1;
  }
  goto done;
failed:
  nret = lx_fail(L, what, errno);
done:;
  int fds[] = {errp[0], errp[1], sockp[0], sockp[1], syncp[0], syncp[1],
               startp[0], startp[1], s.stagefd, s.filterfd, s.targetfd};
  int e = errno;
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  for (int i = 0; i < s.ncgroups; i++)
    if (s.cgfds[i] >= 0)
      close(s.cgfds[i]);
  errno = e;
  return nret;  /* the process, or the failure above it */
}

/* }====== */

void lx_open_spawn(lua_State *L) {
  lx_open_process(L);
  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, -2, "spawn");
}
