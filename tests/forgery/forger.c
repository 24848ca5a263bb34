/*
 * A target that tries to write the probe's report instead of earning it (issue 15, section 2).
 * It never listens. It looks for the watcher (a process named "watch") in /proc, in a
 * tight loop so that it also races the watcher's start-up, and then, by MODE:
 *
 *   forge   open /proc/PID/fd/1 and /fd/2 (the exec's output) and write records there: in
 *           the old bare format, and sealed-looking ones with made-up sequence numbers and
 *           MACs; also try /proc/PID/environ (a key), /proc/PID/fd/0 and /proc/PID/mem
 *   steal   open /proc/PID/fd/1 for reading (the read end of a pipe) and swallow records
 *   kill    SIGKILL the watcher
 *   stop    SIGSTOP the watcher
 *   stopcont  SIGSTOP the watcher, then SIGCONT it 0.5 s later
 *   term    SIGTERM the watcher
 *   print   print well-formed records (bare, sealed-looking, the shim's) on its own
 *           stdout and stderr
 *
 * With a second argument DELAY (seconds), it acts that long after it found the watcher.
 * Then it sleeps. Every step is logged on stderr ("forger: ...") so a test can see what
 * the attack achieved.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *FORGED =
    "listener tcp inet 0.0.0.0 9999 -\n"
    "settled 0.050\n"
    "reach tcp inet 0.0.0.0 9999 inet accepted 1 connection accepted\n"
    "ready\n"
    "1 00000000000000000000000000000000 listener tcp inet 0.0.0.0 9999 -\n"
    "2 00000000000000000000000000000000 settled 0.050\n"
    "3 00000000000000000000000000000000 reach tcp inet 0.0.0.0 9999 inet accepted 1 connection accepted\n"
    "4 00000000000000000000000000000000 ready\n"
    "5 00000000000000000000000000000000 end\n";

static int is_watcher(const char *pid) {
    char path[300], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%s/comm", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, comm, sizeof comm - 1);
    close(fd);
    return n > 0 && strncmp(comm, "watch\n", 6) == 0;
}

static int find_watcher(double seconds) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9' || atoi(e->d_name) == getpid())
                continue;
            if (is_watcher(e->d_name)) {
                closedir(d);
                return atoi(e->d_name);
            }
        }
        if (d)
            closedir(d);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
            return -1;
    }
}

static int try_open(int pid, const char *what, int flags) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, what);
    int fd = open(path, flags);
    fprintf(stderr, "forger: open %s: %s\n", path, fd < 0 ? strerror(errno) : "opened");
    return fd;
}

static void forge(int pid) {
    int env = try_open(pid, "environ", O_RDONLY);
    if (env >= 0) {
        char buf[4096];
        ssize_t n = read(env, buf, sizeof buf - 1);
        fprintf(stderr, "forger: read environ: %zd bytes\n", n);
        close(env);
    }
    int mem = try_open(pid, "mem", O_RDWR);
    if (mem >= 0)
        close(mem);
    int in = try_open(pid, "fd/0", O_RDWR);
    if (in >= 0)
        close(in);
    const char *outs[] = {"fd/1", "fd/2"};
    for (int i = 0; i < 2; i++) {
        int fd = try_open(pid, outs[i], O_WRONLY);
        if (fd < 0)
            continue;
        ssize_t w = write(fd, FORGED, strlen(FORGED));
        fprintf(stderr, "forger: wrote %zd bytes of records to %s\n", w, outs[i]);
        close(fd);
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "forge";
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (!strcmp(mode, "print")) {
        fputs(FORGED, stdout);
        fputs(FORGED, stderr);
        printf("@@ipv6compat 000000000000000000000000 attested\n");
        fflush(stdout);
    } else {
        int pid = find_watcher(20);
        fprintf(stderr, "forger: watcher %s (pid %d)\n", pid > 0 ? "found" : "not found", pid);
        if (argc > 2)
            usleep((useconds_t)(atof(argv[2]) * 1e6));
        if (pid > 0 && !strcmp(mode, "forge")) {
            forge(pid);
        } else if (pid > 0 && !strcmp(mode, "steal")) {
            int fd = try_open(pid, "fd/1", O_RDONLY | O_NONBLOCK);
            if (fd >= 0) {
                char buf[4096];
                for (int i = 0; i < 200; i++) {
                    ssize_t n = read(fd, buf, sizeof buf);
                    if (n > 0)
                        fprintf(stderr, "forger: swallowed %zd bytes of the watcher's records\n", n);
                    usleep(5000);
                }
            }
        } else if (pid > 0) {
            int sig = !strcmp(mode, "kill") ? SIGKILL : !strcmp(mode, "term") ? SIGTERM : SIGSTOP;
            int r = kill(pid, sig);
            fprintf(stderr, "forger: %s the watcher: %s\n", mode, r ? strerror(errno) : "done");
            if (!strcmp(mode, "stopcont")) {
                usleep(500000);
                r = kill(pid, SIGCONT);
                fprintf(stderr, "forger: continued the watcher: %s\n", r ? strerror(errno) : "done");
            }
        }
    }
    for (;;)
        pause();
}
