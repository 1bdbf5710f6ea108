/*
** probe.c -- one system call that a container should (or should not) be
** allowed, for tests/security_spec.lua. Built static, copied into a
** container's root.
**
**   probe WHAT [ARG]   prints "WHAT: ok" and exits 0, or
**                      "WHAT: <strerror>" and exits 1
**
** WHAT: clone3, clone-newuser (clone with CLONE_NEWUSER), shocker
** (open_by_handle_at), finit_module, keyctl, userns (unshare
** CLONE_NEWUSER), ptrace PID, vsock (an AF_VSOCK socket), personality
** PERSONA (hex), io_uring (io_uring_setup), tiocsti (push a character
** into the terminal on stdout, as if it had been typed there).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(const char *what, long rc) {
  if (rc < 0) {
    printf("%s: %s\n", what, strerror(errno));
    return 1;
  }
  printf("%s: ok\n", what);
  return 0;
}

static long try_clone3(void) {
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &ca, sizeof ca);
  if (pid == 0)
    _exit(0);
  if (pid > 0)
    waitpid((pid_t)pid, NULL, 0);
  return pid;
}

/* A child in a new user namespace, by clone(2) rather than clone3. */
static long try_clone_newuser(void) {
  long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0)
    _exit(0);
  if (pid > 0)
    waitpid((pid_t)pid, NULL, 0);
  return pid;
}

/* The "shocker" escape: a file handle opens a file by inode number,
** without a path, so it can name files outside the container's root. */
static long try_shocker(void) {
  struct {
    struct file_handle h;
    unsigned char bytes[128];
  } fh;
  int mount_id;
  fh.h.handle_bytes = sizeof fh.bytes;
  if (syscall(SYS_name_to_handle_at, AT_FDCWD, "/bin", &fh.h, &mount_id, 0) < 0)
    return -1;
  int root = open("/", O_RDONLY | O_DIRECTORY);
  if (root < 0)
    return -1;
  long fd = syscall(SYS_open_by_handle_at, root, &fh.h, O_RDONLY);
  close(root);
  return fd;
}

static long try_finit_module(void) {
  int fd = open("/bin/probe", O_RDONLY);
  if (fd < 0)
    return -1;
  /* not a module: a kernel that lets us try answers ENOEXEC */
  return syscall(SYS_finit_module, fd, "", 0);
}

static long try_ptrace(pid_t pid) {
  long rc = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
  if (rc == 0) {
    waitpid(pid, NULL, __WALL);
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
  }
  return rc;
}

static long try_io_uring(void) {
  unsigned char params[120];  /* struct io_uring_params */
  memset(params, 0, sizeof params);
  long fd = syscall(SYS_io_uring_setup, 1, params);
  if (fd >= 0)
    close((int)fd);
  return fd;
}

static long try_tiocsti(void) {
  char c = ' ';
  return ioctl(1, TIOCSTI, &c);
}

int main(int argc, char **argv) {
  if (argc < 2)
    return 2;
  const char *what = argv[1];
  const char *arg = argc > 2 ? argv[2] : "0";
  if (strcmp(what, "clone3") == 0)
    return report(what, try_clone3());
  if (strcmp(what, "clone-newuser") == 0)
    return report(what, try_clone_newuser());
  if (strcmp(what, "shocker") == 0)
    return report(what, try_shocker());
  if (strcmp(what, "finit_module") == 0)
    return report(what, try_finit_module());
  if (strcmp(what, "keyctl") == 0)  /* KEYCTL_JOIN_SESSION_KEYRING */
    return report(what, syscall(SYS_keyctl, 1, NULL, 0, 0, 0));
  if (strcmp(what, "userns") == 0)
    return report(what, unshare(CLONE_NEWUSER));
  if (strcmp(what, "ptrace") == 0)
    return report(what, try_ptrace((pid_t)atoi(arg)));
  if (strcmp(what, "vsock") == 0)
    return report(what, socket(40, SOCK_STREAM, 0));
  if (strcmp(what, "io_uring") == 0)
    return report(what, try_io_uring());
  if (strcmp(what, "tiocsti") == 0)
    return report(what, try_tiocsti());
  if (strcmp(what, "personality") == 0)
    return report(what, personality(strtoul(arg, NULL, 16)));
  return 2;
}
