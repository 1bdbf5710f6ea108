/*
** spawn-child.c -- the cloned child of core.spawn: the start sequence,
** from the clone to the stage's exec.
**
** It runs in a copy of the parent's memory with every signal blocked
** and makes only async-signal-safe calls: no malloc, no stdio, no Lua.
** Two ways in (lx_spawn_child):
**
**   create_main  a new container: cgroups, the user namespace's sync,
**                namespaces to join, the root and its mounts, /dev,
**                hostname, loopback, pivot_root, masks, the console;
**                then (finish) stdio, the working directory, the user,
**                capabilities, no fd of the host's, no_new_privs
**   join_main    exec into a running container: its cgroup and
**                namespaces through its pidfd, then finish
**
** and one way out: the exec of the stage (luactr-stage.c), which waits
** at the start barrier when there is one, installs the seccomp filters
** and execs the command. A failing step is sent to the parent as
** (errno, "step detail") on the error pipe, and the child exits 125.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <grp.h>
#include <termios.h>
#include <unistd.h>

#include "spawn.h"

/* {====== the child (async-signal-safe only) ====== */

/* Sends (errno, "step detail") to the parent and exits. */
static void __attribute__((noreturn))
die(const spec *s, const char *step, const char *detail) {
  lx_report r;
  lx_buf b;
  r.err = errno;
  lx_buf_init(&b);
  lx_buf_cat(&b, step);
  if (detail) {
    lx_buf_cat(&b, " ");
    lx_buf_cat(&b, detail);
  }
  r.len = (int)(b.n < sizeof r.msg ? b.n : sizeof r.msg - 1);
  memcpy(r.msg, b.s, (size_t)r.len);
  r.msg[r.len] = '\0';
  ssize_t w;
  do
    w = write(s->errfd, &r, offsetof(lx_report, msg) + (size_t)r.len + 1);
  while (w < 0 && errno == EINTR);
  _exit(125);
}

/* One of the default device nodes in the container's /dev (`dev`). In a
** user namespace the kernel refuses mknod (and a node on a filesystem
** mounted there would not open anyway), so the host's own node is bind
** mounted onto an empty file instead, as crun does. */
static void make_device(const spec *s, int rootfd, int dev, const char *name,
                        dev_t rdev) {
  if (!(s->nsflags & CLONE_NEWUSER)) {
    if (mknodat(dev, name, S_IFCHR | 0666, rdev) < 0 && errno != EEXIST)
      die(s, "mknod /dev/", name);
    return;
  }
  lx_buf path;
  lx_buf_init(&path);
  lx_buf_cat(&path, "/dev/");
  lx_buf_cat(&path, name);
  lx_mount m;
  memset(&m, 0, sizeof m);
  m.dest = m.source = path.s;  /* the host's /dev/NAME onto the container's */
  m.bind = true;
  m.flags = MS_BIND;
  if (lx_mount_at(&m, rootfd, path.s) < 0)
    die(s, "bind", path.s);
}

static void setup_devices(const spec *s, int rootfd) {
  static const struct { const char *name; unsigned maj, min; } devs[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
    {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
  };
  static const struct { const char *name, *to; } links[] = {
    {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
    {"ptmx", "pts/ptmx"}, {"core", "/proc/kcore"},
  };
  int dev = lx_open_in_root(rootfd, "/dev", false, false);
  if (dev < 0)
    die(s, "open", "/dev");
  for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
    make_device(s, rootfd, dev, devs[i].name,
                makedev(devs[i].maj, devs[i].min));
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    if (symlinkat(links[i].to, dev, links[i].name) < 0 && errno != EEXIST)
      die(s, "symlink /dev/", links[i].name);
  close(dev);
}

static void loopback_up(const spec *s) {
  struct ifreq ifr;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die(s, "socket", "lo");
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    die(s, "ioctl SIOCGIFFLAGS", "lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
    die(s, "ioctl SIOCSIFFLAGS", "lo");
  close(fd);
}

/* Moves into the new root: the old root is detached, never unmounted in a
** way the host could see (everything is private by now). */
static void enter_root(const spec *s, int rootfd) {
  if (fchdir(rootfd) < 0)
    die(s, "chdir", s->root);
  if (syscall(SYS_pivot_root, ".", ".") < 0)
    die(s, "pivot_root", s->root);
  /* the old root is stacked on "." now: lazily detach it */
  if (umount2(".", MNT_DETACH) < 0)
    die(s, "umount", "old root");
  if (chdir("/") < 0)
    die(s, "chdir", "/");
}

/* Opens a pseudo-terminal in the container's own devpts, sends the master
** to the parent and returns the slave. */
static int open_console(const spec *s) {
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    die(s, "open", "/dev/ptmx");
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
    die(s, "unlockpt", "/dev/ptmx");
  if (s->rows && s->cols) {
    struct winsize ws = {.ws_row = s->rows, .ws_col = s->cols};
    if (ioctl(master, TIOCSWINSZ, &ws) < 0)
      die(s, "ioctl TIOCSWINSZ", "/dev/ptmx");
  }
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0)
    die(s, "open", "pty slave");
  if (s->dev_tmpfs) {
    /* /dev/console is the container's terminal, as in runc and Docker */
    unsigned n;
    lx_buf p;
    if (ioctl(master, TIOCGPTN, &n) < 0)
      die(s, "ioctl TIOCGPTN", "/dev/ptmx");
    lx_buf_init(&p);
    lx_buf_cat(&p, "/dev/pts/");
    lx_buf_catint(&p, (long)n);
    int c = open("/dev/console", O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                 0600);
    if (c < 0)
      die(s, "create", "/dev/console");
    close(c);
    if (mount(p.s, "/dev/console", NULL, MS_BIND, NULL) < 0)
      die(s, "bind /dev/console", p.s);
  }
  if (lx_send_fd(s->sockfd, master) != 1)
    die(s, "send", "pty master");
  close(master);
  return slave;
}

/* Closes every fd of ours but 0, 1, 2 and the `n` in `keep` (-1: none).
** Async-signal-safe. */
static int close_others(const int *keep, int n) {
  int k[8], m = 0;
  for (int i = 0; i < n && m < 8; i++)
    if (keep[i] > 2)
      k[m++] = keep[i];
  for (int i = 1; i < m; i++)  /* sorted, for the gaps between them */
    for (int j = i; j > 0 && k[j - 1] > k[j]; j--) {
      int t = k[j];
      k[j] = k[j - 1];
      k[j - 1] = t;
    }
  unsigned from = 3;
  for (int i = 0; i < m; i++) {
    if ((unsigned)k[i] > from &&
        syscall(SYS_close_range, from, (unsigned)k[i] - 1, 0) < 0)
      return -1;
    from = (unsigned)k[i] + 1;
  }
  return (int)syscall(SYS_close_range, from, ~0U, 0);
}

/* The seccomp filters' fd stays open across the stage's exec. */
static void keep_filters(const spec *s) {
  if (s->filterfd >= 0 && fcntl(s->filterfd, F_SETFD, 0) < 0)
    die(s, "fcntl", "seccomp filters");
}

/* Execs luactr-stage from its sealed copy (see luactr-stage.c), in
** `mode`, with `flags`; it finds and execs the command, in a new process
** in join mode. The process's exe is that copy from here on: no file of
** the host's is reachable through /proc/PID/exe, even by a command whose
** first line is "#!/proc/self/exe". */
static void __attribute__((noreturn))
exec_stage(const spec *s, const char *mode, const char *flags) {
  lx_buf errfd, filterfd;
  lx_buf_init(&errfd);
  lx_buf_init(&filterfd);
  lx_buf_catint(&errfd, s->errfd);
  if (s->filterfd >= 0)
    lx_buf_catint(&filterfd, s->filterfd);
  else
    lx_buf_cat(&filterfd, "-");
  /* The command is searched along the PATH of its own environment, and
  ** only there: no PATH, no search (the Lua layer always writes one). */
  const char *path = "";
  if (!strchr(s->argv[0], '/'))
    for (int i = 0; s->envp[i]; i++)
      if (strncmp(s->envp[i], "PATH=", 5) == 0)
        path = s->envp[i] + 5;
  lx_buf startfd;
  lx_buf_init(&startfd);
  if (s->startfd >= 0)
    lx_buf_catint(&startfd, s->startfd);
  else
    lx_buf_cat(&startfd, "-");
  const char **argv = s->stage_argv;
  argv[0] = "luactr-stage";
  argv[1] = mode;
  argv[2] = errfd.s;
  argv[3] = filterfd.s;
  argv[4] = *flags ? flags : "-";
  argv[5] = startfd.s;
  argv[6] = path;
  /* the error pipe must reach the stage, which says why an exec failed;
  ** it closes it on the command's exec */
  if (fcntl(s->errfd, F_SETFD, 0) < 0)
    die(s, "fcntl", "error pipe");
  if (s->startfd >= 0 && fcntl(s->startfd, F_SETFD, 0) < 0)
    die(s, "fcntl", "start barrier");
  keep_filters(s);
  syscall(SYS_execveat, s->stagefd, "", argv, s->envp, AT_EMPTY_PATH);
  die(s, "exec", "luactr-stage");
}

/* --init: PID 1 becomes the stage's init, the parent of `child` (the
** command, forked already), as "luactr-init PID" (what ps shows), with the
** seccomp filters on fd 3 when there are any and `barrier`, which the
** command waits on, on fd 4: the init closes it once its filters are in
** (its error pipe closes on this exec; the command's exec alone ends it). */
static void __attribute__((noreturn))
exec_init(const spec *s, pid_t child, int barrier) {
  /* out of the way of fds 3 and 4 first, then into them (dup2 clears
  ** close-on-exec on the copy) */
  int stage = fcntl(s->stagefd, F_DUPFD_CLOEXEC, 5);
  int filters = s->filterfd < 0 ? -1 : fcntl(s->filterfd, F_DUPFD_CLOEXEC, 5);
  int wait = fcntl(barrier, F_DUPFD_CLOEXEC, 5);
  if (stage < 0 || wait < 0 || (s->filterfd >= 0 && filters < 0))
    die(s, "fcntl", "luactr-init");
  close(LX_INIT_FILTERS_FD);
  if (filters >= 0 && dup2(filters, LX_INIT_FILTERS_FD) < 0)
    die(s, "dup2", "seccomp filters");
  if (dup2(wait, LX_INIT_BARRIER_FD) < 0)
    die(s, "dup2", "init barrier");
  lx_buf pid;
  lx_buf_init(&pid);
  lx_buf_catint(&pid, (long)child);
  const char *argv[] = {"luactr-init", pid.s, NULL};
  const char *envp[] = {NULL};
  syscall(SYS_execveat, stage, "", argv, envp, AT_EMPTY_PATH);
  die(s, "exec", "luactr-init");
}

/* Becomes the spec's user with the spec's capabilities, in the order the
** kernel needs (as runc and crun do): a filter without no_new_privs must
** be installed while CAP_SYS_ADMIN is still held; the bounding set is
** dropped while the process is still fully privileged; keep-caps carries
** the permitted set across setuid to a non-root user, and capset then
** trims the sets to the spec's, ambient last. */
static void become_user(const spec *s) {
  if (s->seccomp.set && !s->no_new_privs && lx_seccomp_load(&s->seccomp) < 0)
    die(s, "seccomp", NULL);
  if (s->caps.set && lx_caps_drop_bounding(&s->caps) < 0)
    die(s, "prctl", "capability bounding set");
  if (s->caps.set && s->uid != 0 && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
    die(s, "prctl", "keep capabilities");
  if (setgroups((size_t)s->ngroups, s->groups) < 0)
    die(s, "setgroups", NULL);
  if (setgid(s->gid) < 0)
    die(s, "setgid", NULL);
  if (setuid(s->uid) < 0)
    die(s, "setuid", NULL);
  if (s->caps.set && lx_caps_set(&s->caps) < 0)
    die(s, "capset", NULL);
  /* a change of user or group clears the parent-death signal: arm it
  ** again */
  if (s->pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    die(s, "prctl", "pdeathsig");
}

/* no_new_privs, the last step before the stage's exec; the stage installs
** the seccomp filters next (see exec_stage), so that they need only allow
** what the command itself does. (Without no_new_privs the filters are in
** place already: become_user installed them while it could.) */
static void lock_down(const spec *s) {
  if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    die(s, "prctl", "no_new_privs");
}

/* After chdir: is the working directory beneath our root? A link in the
** container to /proc/self/fd/N, N a folder of the host's, would have taken
** it out (CVE-2024-21626); we hold no such fd by now, and this proves it
** (the kernel's getcwd says "(unreachable)" for a folder outside). */
static void check_cwd(const spec *s) {
  char cwd[PATH_MAX];
  if (syscall(SYS_getcwd, cwd, sizeof cwd) < 0)
    die(s, "getcwd", s->cwd);
  if (cwd[0] != '/') {
    lx_buf b;
    lx_buf_init(&b);
    lx_buf_cat(&b, s->cwd);
    lx_buf_cat(&b, " leads outside the container");
    errno = EPERM;
    die(s, "chdir", b.s);
  }
}

/* Who finishes: the container's PID 1 (a session leader), the command
** under --init (PID 1's child), or a process that joins a running
** container (exec), which leaves session and terminal to the command's
** process that the stage clones. */
typedef enum { AS_LEADER, UNDER_INIT, JOINING } role;

/* The part after pivot_root (or the join) that the command's own process
** does; it ends in the stage's exec. */
static void __attribute__((noreturn))
finish(const spec *s, int slave, role who) {
  /* Under --init, PID 1 is a clone of luactr until it has exec'd the
  ** stage: nothing of the command may run before, or /proc/1/exe would
  ** be the host's interpreter for it to open. The barrier's other end
  ** closes on that exec. */
  if (who == UNDER_INIT) {
    char c;
    ssize_t n;
    do
      n = read(s->barrier, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 0)
      die(s, "wait for", "the init");
    close(s->barrier);
  }
  if (who == AS_LEADER && setsid() < 0)
    die(s, "setsid", NULL);
  if (slave >= 0) {
    if (who == AS_LEADER) {
      if (ioctl(slave, TIOCSCTTY, 0) < 0)
        die(s, "ioctl TIOCSCTTY", "console");
    } else if (who == UNDER_INIT) {
      /* its own process group, in the terminal's foreground */
      if (setpgid(0, 0) < 0 || tcsetpgrp(slave, getpid()) < 0)
        die(s, "tcsetpgrp", "console");
    }
    for (int fd = 0; fd < 3; fd++)
      if (dup2(slave, fd) < 0)
        die(s, "dup2", "console");
    if (slave > 2)
      close(slave);
  } else if (s->stdio[1] >= 0) {
    /* pipes a monitor holds the other ends of (luactr.runtime.monitor); no
    ** stdin pipe: /dev/null */
    int in = s->stdio[0] >= 0 ? s->stdio[0]
                              : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0 || dup2(in, 0) < 0 || dup2(s->stdio[1], 1) < 0 ||
        dup2(s->stdio[2], 2) < 0)
      die(s, "dup2", "stdio");
  } else if (s->stdin_null) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || dup2(fd, 0) < 0)
      die(s, "open", "/dev/null");
    close(fd);
  }
  /* the working directory is made (as root) when it is missing and the
  ** caller asks (opts.make_cwd: Docker's rule for run, the Lua layer's
  ** to decide); entering it waits for the final user */
  if (s->make_cwd && strcmp(s->cwd, "/") != 0) {
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd = root < 0 ? -1 : lx_open_in_root(root, s->cwd, true, false);
    if (fd < 0)
      die(s, "mkdir", s->cwd);
    close(fd);
    close(root);
  }
  become_user(s);
  /* Only 0, 1 and 2 reach the command, and what the stage needs, which it
  ** closes: no fd of the host's is left for the chdir to go through. */
  int keep[] = {s->errfd, s->stagefd, s->filterfd, s->startfd};
  if (close_others(keep, 4) < 0)
    die(s, "close_range", NULL);
  if (chdir(s->cwd) < 0)
    die(s, "chdir", s->cwd);
  check_cwd(s);
  umask(s->umask);
  sigprocmask(SIG_SETMASK, &s->childmask, NULL);
  lock_down(s);
  if (who != JOINING)
    exec_stage(s, "exec", "");
  /* the command's process: a session of its own, the terminal its
  ** controlling one, and killed with luactr when asked */
  char flags[4] = "s", *f = flags + 1;
  if (s->terminal)
    *f++ = 't';
  if (s->pdeath)
    *f++ = 'p';
  *f = '\0';
  exec_stage(s, "join", flags);
}

/* In a new user namespace: waits for the parent to write our maps (and,
** with idmap_root, to send the idmapped root as a mount fd). Returns the
** root's mount fd, or -1 when there is none. */
static int enter_userns(const spec *s) {
  int tree;
  ssize_t n = lx_recv_fd(s->syncfd, &tree);
  if (n <= 0) {
    if (n == 0)
      errno = EPIPE;  /* the parent gave up */
    die(s, "wait for", "the id maps");
  }
  close(s->syncfd);
  if (s->idmap_root && tree < 0) {
    errno = EPROTO;
    die(s, "receive", "the idmapped root");
  }
  return tree;
}

/* Becomes the user namespace's root. Until then our ids are still the
** host's root, unmapped here: whatever we created would fail (EOVERFLOW)
** and files host root owns would still be ours -- which lets us reach
** the root filesystem through the store's private folders first. */
static void become_ns_root(const spec *s) {
  /* host root's supplementary groups would still open what they own */
  if (setresgid(0, 0, 0) < 0)
    die(s, "setresgid", "0");
  if (setgroups(0, NULL) < 0)
    die(s, "setgroups", NULL);
  if (setresuid(0, 0, 0) < 0)
    die(s, "setresuid", "0");
  /* a change of user clears the parent-death signal: arm it again */
  if (s->pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    die(s, "prctl", "pdeathsig");
}

static void __attribute__((noreturn)) create_main(spec *s) {
  /* A build step must not outlive its builder: killed with it, the pid
  ** namespace goes and takes every process of the step along. */
  if (s->pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    die(s, "prctl", "pdeathsig");
  /* Into the container's cgroups before anything runs ("0" is the writer
  ** itself, in v1 and v2 alike), and only then a cgroup namespace, so
  ** that the container sees its own cgroup as "/". */
  for (int i = 0; i < s->ncgroups; i++)
    if (write(s->cgfds[i], "0", 1) != 1)
      die(s, "join cgroup", s->cgroups[i]);
  if (s->ncgroups && (s->nsflags & CLONE_NEWCGROUP) &&
      unshare(CLONE_NEWCGROUP) < 0)
    die(s, "unshare", "cgroup namespace");
  int tree = (s->nsflags & CLONE_NEWUSER) ? enter_userns(s) : -1;
  /* Ignored signals survive exec: give the command default ones. */
  for (int sig = 1; sig < _NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      signal(sig, SIG_DFL);
  umask(0);
  for (int i = 0; i < s->njoin; i++) {
    int fd = open(s->join[i].path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, s->join[i].type) < 0)
      die(s, "setns", s->join[i].path);
    close(fd);
  }
  /* Nothing we mount may propagate back to the host. */
  if (mount(NULL, "/", NULL, s->rootprop, NULL) < 0)
    die(s, "make-private", "/");
  if (tree >= 0) {
    /* the idmapped copy of the root the parent made, in place of the
    ** plain rbind */
    if (move_mount(tree, "", AT_FDCWD, s->root, MOVE_MOUNT_F_EMPTY_PATH) < 0)
      die(s, "attach idmapped root", s->root);
    close(tree);
  } else if (mount(s->root, s->root, NULL, MS_BIND | MS_REC, NULL) < 0) {
    die(s, "bind", s->root);
  }
  int rootfd = open(s->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0)
    die(s, "open", s->root);
  if (s->nsflags & CLONE_NEWUSER)
    become_ns_root(s);
  for (int i = 0; i < s->nmounts; i++)
    if (lx_mount_at(&s->mounts[i], rootfd, s->mounts[i].dest) < 0)
      die(s, "mount", s->mounts[i].dest);
  if (s->dev_tmpfs)
    setup_devices(s, rootfd);
  const char *failed;
  if (lx_devices_make(s->devices, s->ndevices, rootfd, &failed) < 0)
    die(s, "mknod", failed);
  if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
    die(s, "sethostname", s->hostname);
  if (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0)
    die(s, "setdomainname", s->domainname);
  if (s->nsflags & CLONE_NEWNET)
    loopback_up(s);
  enter_root(s, rootfd);
  close(rootfd);
  if (s->root_ro && lx_remount_bind("/", MS_RDONLY) < 0)
    die(s, "remount read-only", "/");
  for (int i = 0; i < s->nmasked; i++)
    if (lx_mask_path(s->masked[i]) < 0)
      die(s, "mask", s->masked[i]);
  for (int i = 0; i < s->nro; i++)
    if (lx_readonly_path(s->ropaths[i]) < 0)
      die(s, "readonly", s->ropaths[i]);
  int slave = s->terminal ? open_console(s) : -1;
  if (!s->init)
    finish(s, slave, AS_LEADER);
  /* --init: this process stays as PID 1, the command is its child */
  if (setsid() < 0)
    die(s, "setsid", NULL);
  if (slave >= 0 && ioctl(slave, TIOCSCTTY, 0) < 0)
    die(s, "ioctl TIOCSCTTY", "console");
  int barrier[2];
  if (pipe2(barrier, O_CLOEXEC) < 0)
    die(s, "pipe", "init");
  pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid < 0)
    die(s, "fork", "init");
  if (pid == 0) {
    close(barrier[1]);
    s->barrier = barrier[0];
    finish(s, slave, UNDER_INIT);
  }
  close(barrier[0]);
  /* Become the stage's init: exec keeps the child and the blocked mask,
  ** and leaves no copy of luactr's memory (or command line) behind. The
  ** init runs as the command's user, confined as it is (Docker's init
  ** does too), so it can signal the command and do nothing more. */
  become_user(s);
  int keep[] = {s->stagefd, s->filterfd, barrier[1]};
  if (close_others(keep, 3) < 0)
    die(s, "close_range", NULL);
  lock_down(s);
  exec_init(s, pid, barrier[1]);
}

/* Join mode (exec): a process that enters a running container instead of
** making one. It joins the cgroup, then every namespace at once through
** the pidfd, the pid namespace as its children's only: it stays in the
** host's, where no process of the container can see it, ptrace it or
** read its /proc files (runc's nsexec orders it so). From there on it is
** what finish() makes of any container process: user, capabilities,
** no_new_privs, no fd of the host's, the working directory; then the
** stage clones the command's process into the container's pid namespace,
** with nothing of the host's left and the seccomp filters installed.
** No mount, no pivot_root, no /dev: setns into the mount namespace makes
** the container's root our "/" and our working directory. */
static void __attribute__((noreturn)) join_main(spec *s) {
  /* Not dumpable until the exec, all the same: it holds host fds and
  ** every capability (runc's CVE-2016-9962). */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
    die(s, "prctl", "dumpable");
  if (s->pdeath && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    die(s, "prctl", "pdeathsig");
  /* the cgroup first, as the container's own PID 1 did: written from the
  ** host's cgroup namespace, where the recorded folders are */
  for (int i = 0; i < s->ncgroups; i++)
    if (write(s->cgfds[i], "0", 1) != 1)
      die(s, "join cgroup", s->cgroups[i]);
  for (int sig = 1; sig < _NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      signal(sig, SIG_DFL);
  if (s->nsflags && setns(s->targetfd, s->nsflags) < 0)
    die(s, "setns", "container namespaces");
  close(s->targetfd);
  /* the pty comes from the container's own devpts (its /dev/ptmx) */
  int slave = s->terminal ? open_console(s) : -1;
  finish(s, slave, JOINING);
}

void lx_spawn_child(spec *s) {
  if (s->target)
    join_main(s);
  create_main(s);
}

/* }====== */
