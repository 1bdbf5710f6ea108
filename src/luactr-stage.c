/*
** luactr-stage.c -- the last program before a container's command, and
** the container's init.
**
** The process that sets a container up is a clone of the luactr CLI:
** of the host's lua5.4. Were that process to exec the container's command
** itself, the container could reach the host's interpreter binary through
** /proc/PID/exe for as long as it had not exec'd -- and forever, for a
** command whose first line is "#!/proc/self/exe", which makes the kernel
** run the interpreter again, inside the container. A process there can
** keep that file open and, once nothing runs it, reopen it for writing
** and replace the host's binary (CVE-2019-5736). So the clone execs this
** program instead, from a sealed memfd copy that spawn makes of it: from
** then on /proc/PID/exe is that copy, which nobody can write, and no host
** file is in reach. It does the last steps, then execs the command:
**
**   exec  waits at the start barrier when there is one (core.spawn's
**         opts.start = false), installs the seccomp filters, then execs
**         the command, found along the PATH it is given as execvp would.
**   join  (luactr exec) the same in a new process. The one that ran so
**         far joined the container's namespaces while it was still in
**         the host's pid namespace, invisible from the container; the
**         command's process is cloned into the container's pid namespace
**         (setns made it the children's one) with everything host-side
**         gone and the filters in place, as luactr's own child
**         (CLONE_PARENT). CLONE_VFORK holds us until it has exec'd (or
**         failed), then "pid N" goes up the error pipe.
**   init  (--init) PID 1: installs the filters, lets the command go on
**         (it waits on a pipe whose other end is our fd 4), reaps the
**         orphans the kernel hands it, forwards every signal to the
**         command (its child, forked before this exec) and exits as the
**         command did, 128+N for a signal N, as tini does.
**
** See luactr-stage.h for the arguments. There is no libc here: a handful
** of system calls in inline assembly (x86_64, aarch64; elsewhere libc's
** syscall(2)). So the copy is a few KiB, it starts at once, and the only
** system calls it makes under the container's filter are the command's
** execve (join: clone, setsid, ioctl and prctl too; init: what its loop
** needs), and write and exit when something fails.
*/
#include "luactr-stage.h"

#if defined(__x86_64__) || defined(__aarch64__)

#include <asm/ioctls.h>
#include <asm/signal.h>
#include <asm/unistd.h>
#include <linux/errno.h>
#include <linux/fcntl.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/wait.h>

/* {====== system calls ====== */

#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8),
                     "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call stage_start\n"
        "  hlt\n");
#else
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc 0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                   : "memory");
  return x0;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  mov x0, sp\n"
        "  bl stage_start\n"
        "  brk #0\n");
#endif

#define SYS(n, a, b, c) sys6(__NR_##n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define PREAD __NR_pread64

#else  /* another architecture: libc's syscall(2), errors made -errno */

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  long r = syscall(n, a, b, c, d, e, f);
  return r < 0 ? -errno : r;
}

#define SYS(n, a, b, c) sys6(SYS_##n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define PREAD SYS_pread64
#define __NR_rt_sigtimedwait SYS_rt_sigtimedwait
#define __NR_wait4 SYS_wait4

#endif

/* }====== */

/* {====== strings, without libc ====== */

static unsigned long slen(const char *s) {
  unsigned long n = 0;
  while (s[n])
    n++;
  return n;
}

static int has_char(const char *s, char c) {
  for (; *s; s++)
    if (*s == c)
      return 1;
  return 0;
}

static int streq(const char *a, const char *b) {
  while (*a && *a == *b)
    a++, b++;
  return *a == *b;
}

/* "12" -> 12; "-" or anything else that is not a number -> -1 */
static long number(const char *s) {
  long v = 0;
  if (!*s)
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > 100000000)
      return -1;
    v = v * 10 + (*s - '0');
  }
  return v;
}

/* }====== */

/* {====== reports ====== */

static int errfd = -1;

static void put(lx_report *r, const char *s) {
  while (*s && r->len < (int)sizeof r->msg - 1)
    r->msg[r->len++] = *s++;
  r->msg[r->len] = '\0';
}

static void send(lx_report *r) {
  if (errfd < 0)
    return;
  long size = (long)((char *)r->msg - (char *)r) + r->len + 1;
  while (SYS(write, errfd, r, size) == -EINTR)
    ;
}

/* Says (err, "step detail") on the error pipe, and ends with `status`. */
static void __attribute__((noreturn))
fail(long err, const char *step, const char *detail, int status) {
  lx_report r;
  r.err = (int)-err;
  r.len = 0;
  put(&r, step);
  if (detail) {
    put(&r, " ");
    put(&r, detail);
  }
  send(&r);
  for (;;)
    SYS(exit_group, status, 0, 0);
}

/* }====== */

/* {====== the last steps ====== */

/* The filters the container is confined by (lx_filters and the
** instructions), read whole; at most LX_FILTERS_MAX of 4096 instructions
** each. */
static union {
  lx_filters h;
  char bytes[sizeof(lx_filters) + LX_FILTERS_MAX * 4096 * 8 + 1];
} filters;

static void install_filters(long fd) {
  long got = 0, r;
  do {
    /* pread: under --init, PID 1 and the command read the same file */
    r = sys6(PREAD, fd, (long)(filters.bytes + got),
             (long)sizeof filters.bytes - got, got, 0, 0);
    if (r > 0)
      got += r;
  } while (r > 0 || r == -EINTR);
  if (r < 0)
    fail(r, "read", "seccomp filters", 125);
  lx_filters *h = &filters.h;
  long want = (long)sizeof *h;
  if (got >= want && h->magic == LX_FILTERS_MAGIC && h->n <= LX_FILTERS_MAX)
    for (unsigned i = 0; i < h->n; i++)
      want += h->len[i] <= 4096 ? (long)h->len[i] * 8 : (long)sizeof filters;
  if (got < (long)sizeof *h || got != want)
    fail(-EPROTO, "read", "seccomp filters", 125);
  SYS(close, fd, 0, 0);
  char *insns = filters.bytes + sizeof *h;
  for (unsigned i = 0; i < h->n; i++) {
    struct sock_fprog prog = {.len = (unsigned short)h->len[i],
                              .filter = (struct sock_filter *)insns};
    r = SYS(seccomp, SECCOMP_SET_MODE_FILTER, h->flags, &prog);
    if (r < 0)
      fail(r, "seccomp", 0, 125);
    insns += h->len[i] * 8;
  }
}

/* Execs the command `argv` with `envp`: its name as it is when it has a
** slash, else each folder of `path` in turn, as execvp does (a folder
** that denies us is remembered, one that lacks it is skipped). */
static void __attribute__((noreturn))
exec_command(char **argv, char **envp, const char *path) {
  const char *prog = argv[0];
  if (has_char(prog, '/'))
    fail(SYS(execve, prog, argv, envp), "exec", prog, 127);
  unsigned long plen = slen(prog);
  long err = -ENOENT;
  int denied = 0;
  char full[4096];
  while (*path) {
    const char *end = path;
    while (*end && *end != ':')
      end++;
    unsigned long n = (unsigned long)(end - path);
    if (n + plen + 3 <= sizeof full) {
      unsigned long k = 0;
      if (n == 0)
        full[k++] = '.';
      for (unsigned long i = 0; i < n; i++)
        full[k++] = path[i];
      full[k++] = '/';
      for (unsigned long i = 0; i <= plen; i++)
        full[k++] = prog[i];
      err = SYS(execve, full, argv, envp);
      if (err == -EACCES)
        denied = 1;
      else if (err != -ENOENT && err != -ENOTDIR && err != -ELOOP)
        fail(err, "exec", prog, 127);
    }
    path = *end ? end + 1 : end;
  }
  fail(denied ? -EACCES : -ENOENT, "exec", prog, 127);
}

/* The start barrier (opts.start = false): says "created" on the error
** pipe, then waits for process:start's byte on `fd`. Its end instead (the
** handle closed, its owner gone) ends the process: the container was
** never started. */
static void wait_for_start(long fd) {
  lx_report r;
  r.err = 0;
  r.len = 0;
  put(&r, "created");
  send(&r);
  char c;
  long n;
  do
    n = SYS(read, fd, &c, 1);
  while (n == -EINTR);
  if (n != 1)
    for (;;)
      SYS(exit_group, 125, 0, 0);
  SYS(close, fd, 0, 0);
}

/* }====== */

/* {====== init ====== */

static void __attribute__((noreturn)) init_loop(long child) {
  unsigned long all = ~0UL;
  SYS(rt_sigprocmask, SIG_SETMASK, &all, 0);  /* as it was: every one */
  for (;;) {
    char info[128];
    long sig = sys6(__NR_rt_sigtimedwait, (long)&all, (long)info, 0,
                    (long)sizeof all, 0, 0);
    if (sig < 0)
      continue;
    if (sig != SIGCHLD) {
      SYS(kill, child, sig, 0);
      continue;
    }
    for (;;) {
      int status = 0;
      long pid = sys6(__NR_wait4, -1, (long)&status, WNOHANG, 0, 0, 0);
      if (pid <= 0)
        break;
      if (pid == child) {
        int code = (status & 0x7f) == 0 ? (status >> 8) & 0xff
                                        : 128 + (status & 0x7f);
        for (;;)
          SYS(exit_group, code, 0, 0);
      }
    }
  }
}

/* }====== */

static int stage(int argc, char **argv, char **envp) {
  if (argc == 2 && streq(argv[0], "luactr-init")) {
    /* its name, for ps and top, instead of the memfd's */
    SYS(prctl, PR_SET_NAME, "init", 0);
    if (SYS(fcntl, LX_INIT_FILTERS_FD, F_GETFD, 0) >= 0)
      install_filters(LX_INIT_FILTERS_FD);
    SYS(close, LX_INIT_BARRIER_FD, 0, 0);  /* the command may go on */
    init_loop(number(argv[1]));
  }
  if (argc < LX_STAGE_ARGS) {
    /* not started by luactr's spawn: by "#!/proc/self/exe", say */
    static const char msg[] = "luactr-stage: only luactr runs this\n";
    SYS(write, 2, msg, sizeof msg - 1);
    return 126;
  }
  const char *mode = argv[1], *flags = argv[4];
  errfd = (int)number(argv[2]);
  long filterfd = number(argv[3]);
  if (errfd >= 0)
    SYS(fcntl, errfd, F_SETFD, FD_CLOEXEC);  /* ends with the command's exec */
  long startfd = number(argv[5]);
  if (startfd >= 0)
    wait_for_start(startfd);
  if (filterfd >= 0)
    install_filters(filterfd);
  if (argc <= LX_STAGE_ARGS)
    fail(-EINVAL, "stage", "no command", 125);
  if (mode[0] == 'j') {
    long pid = SYS(clone, CLONE_PARENT | CLONE_VFORK, 0, 0);
    if (pid < 0)
      fail(pid, "clone", "exec", 125);
    if (pid > 0) {
      /* the child has exec'd (or said why not and ended) */
      lx_report r;
      r.err = 0;
      r.len = 0;
      char digits[24], *p = digits + sizeof digits - 1;
      *p = '\0';
      do
        *--p = (char)('0' + pid % 10);
      while ((pid /= 10) > 0);
      put(&r, "pid ");
      put(&r, p);
      send(&r);
      return 0;
    }
  }
  if (has_char(flags, 's')) {
    long r = SYS(setsid, 0, 0, 0);
    if (r < 0)
      fail(r, "setsid", 0, 125);
  }
  if (has_char(flags, 't')) {
    long r = SYS(ioctl, 0, TIOCSCTTY, 0);
    if (r < 0)
      fail(r, "ioctl TIOCSCTTY", "console", 125);
  }
  if (has_char(flags, 'p')) {
    long r = SYS(prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
    if (r < 0)
      fail(r, "prctl", "pdeathsig", 125);
  }
  exec_command(argv + LX_STAGE_ARGS, envp, argv[6]);
}

#if defined(__x86_64__) || defined(__aarch64__)
void __attribute__((noreturn, used)) stage_start(long *sp);
void __attribute__((noreturn, used)) stage_start(long *sp) {
  int argc = (int)sp[0];
  char **argv = (char **)(sp + 1);
  int status = stage(argc, argv, argv + argc + 1);
  for (;;)
    SYS(exit_group, status, 0, 0);
}
#else
int main(int argc, char **argv, char **envp) {
  return stage(argc, argv, envp);
}
#endif
