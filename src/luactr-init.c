/*
** luactr-init.c -- the tiny init that `--init` puts in front of a command.
**
**   luactr-init PID
**
** PID 1 of a pid namespace has two duties nobody else has: it reaps the
** orphans the kernel hands it, and it receives only the signals it
** handles. A shell or a server rarely does either, so, like tini, this
** loop does both for the child PID and leaves with the child's status
** (128+N when a signal N ended it).
**
** core.spawn forks the command first and then execs this program in the
** container's PID 1 from an fd opened before pivot_root, with every signal
** still blocked: exec keeps the child, the mask and any pending SIGCHLD.
** It is linked statically, as a container's root need not hold a libc.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2)
    return 125;
  pid_t child = (pid_t)atoi(argv[1]);
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0)
      continue;
    if (sig != SIGCHLD) {
      kill(child, sig);
      continue;
    }
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0)
        break;
      if (pid == child)
        return WIFEXITED(status) ? WEXITSTATUS(status)
                                 : 128 + WTERMSIG(status);
    }
  }
}
