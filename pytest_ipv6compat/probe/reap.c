/* reap: run a command as a child subreaper (host side of the oci backend, backends/oci_run.py).
 *
 *   reap PROGRAM [ARG...]
 *
 * `crun exec` (or `runc exec`) that meets a container as its target dies can leave a helper it forked into
 * the container's pid namespace orphaned; orphans go to the nearest child subreaper above them, else to this
 * host's PID 1, which may reap late, and the namespace's init cannot end (nor `crun run`) before every task of
 * the namespace is reaped. Run under reap, such an orphan is reaped here the moment it exits.
 *
 * stdin, stdout and stderr are the command's, untouched (reap writes only its own errors, on stderr). Exit
 * status: the command's (a signal death 128+N; 127 if it cannot be run, 125 if reap itself fails), once the
 * command AND every orphan adopted meanwhile have ended, or LINGER_S after the command if an orphan lingers
 * (it is then left to PID 1, as without reap, and named on stderr). The command gets SIGKILL if reap dies. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define LINGER_S 5 /* after the command has ended: how long adopted orphans may take to end */

static volatile sig_atomic_t expired;

static void on_signal(int sig) { expired |= sig == SIGALRM; }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: reap PROGRAM [ARG...]\n");
        return 125;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        fprintf(stderr, "reap: prctl(PR_SET_CHILD_SUBREAPER): %s\n", strerror(errno));
        return 125;
    }
    /* SIGCHLD and SIGALRM are taken only in sigsuspend, so neither can slip in between a check and the wait. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    sigset_t blocked, old;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGCHLD);
    sigaddset(&blocked, SIGALRM);
    sigprocmask(SIG_BLOCK, &blocked, &old);
    pid_t me = getpid(), child = fork();
    if (child < 0) {
        fprintf(stderr, "reap: fork: %s\n", strerror(errno));
        return 125;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != me) _exit(125); /* reap is already gone */
        execvp(argv[1], argv + 1);
        fprintf(stderr, "reap: cannot run %s: %s\n", argv[1], strerror(errno));
        _exit(127);
    }
    int code = -1, status;
    for (;;) {
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid == child) {
                code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
                alarm(LINGER_S);
            }
        }
        if (pid < 0) return code; /* ECHILD: the command and every orphan it left have been reaped */
        if (expired) {
            fprintf(stderr, "reap: an orphan of %s was alive %d s after it ended; left to PID 1\n", argv[1],
                    LINGER_S);
            return code;
        }
        sigsuspend(&old);
    }
}
