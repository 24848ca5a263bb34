/* Raw-syscall probe for the ipv6-kernel-off seccomp profile (tests/test_seccomp.py).
 *
 * Built static by the tests (gcc -static, or musl-gcc -static). Two modes:
 *   probe checks      make each system call below once; print "@@name=ok" or "@@name=errno N"
 *   probe serve PORT  a tiny TCP server: IPv4 on 0.0.0.0:PORT, then IPv6 on [::]:PORT+1
 *                     (v6only) unless AF_INET6 fails with EAFNOSUPPORT; a worker thread
 *                     answers "hello" on each connection until the process is killed
 * Arguments go through syscall(2) as 64-bit values, so the upper bits of a family
 * reach the filter exactly as written here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

static void report(const char *name, long rc, int err)
{
    if (rc < 0)
        printf("@@%s=errno %d\n", name, err);
    else
        printf("@@%s=ok\n", name);
    fflush(stdout);
}

#define CHECK(name, ...)                          \
    do {                                          \
        errno = 0;                                \
        long rc_ = syscall(__VA_ARGS__);          \
        report(name, rc_, errno);                 \
        if (rc_ >= 0 && strncmp(name, "socket", 6) == 0 && strncmp(name, "socketpair", 10) != 0) \
            close((int)rc_);                      \
    } while (0)

/* ptrace(PTRACE_TRACEME) in a child, so a success does not leave this process traced. */
static void check_traceme(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        long rc = syscall(SYS_ptrace, 0L /* PTRACE_TRACEME */, 0L, 0L, 0L);
        _exit(rc < 0 ? errno : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    report("ptrace-traceme", WEXITSTATUS(status) ? -1 : 0, WEXITSTATUS(status));
}

static int checks(void)
{
    int pair[2];
    unsigned char uring_params[120];
    unsigned long clone3_args[11];
    unsigned char timex[208];

    CHECK("socket-inet", SYS_socket, 2L, (long)SOCK_STREAM, 0L);
    CHECK("socket-unix", SYS_socket, 1L, (long)SOCK_STREAM, 0L);
    CHECK("socket-inet6", SYS_socket, 10L, (long)SOCK_STREAM, 0L);
    CHECK("socket-inet6-dgram", SYS_socket, 10L, (long)SOCK_DGRAM, 0L);
    CHECK("socket-inet6-bit32", SYS_socket, 0x10000000aL, (long)SOCK_STREAM, 0L);
    CHECK("socket-inet6-high", SYS_socket, (long)0xffffffff0000000aUL, (long)SOCK_STREAM, 0L);
    CHECK("socket-inet6-bit63", SYS_socket, (long)0x800000000000000aUL, (long)SOCK_STREAM, 0L);
    CHECK("socket-inet-bit32", SYS_socket, 0x100000002L, (long)SOCK_STREAM, 0L);
    CHECK("socket-alg", SYS_socket, 38L, (long)SOCK_SEQPACKET, 0L);
    CHECK("socket-alg-bit32", SYS_socket, 0x100000026L, (long)SOCK_SEQPACKET, 0L);
    CHECK("socket-vsock", SYS_socket, 40L, (long)SOCK_STREAM, 0L);
    CHECK("socket-vsock-bit32", SYS_socket, 0x100000028L, (long)SOCK_STREAM, 0L);
    CHECK("socket-family-64", SYS_socket, 64L, (long)SOCK_STREAM, 0L);
    CHECK("socketpair-unix", SYS_socketpair, 1L, (long)SOCK_STREAM, 0L, (long)pair);
    CHECK("socketpair-inet6", SYS_socketpair, 10L, (long)SOCK_STREAM, 0L, (long)pair);
    CHECK("socketpair-inet6-bit32", SYS_socketpair, 0x10000000aL, (long)SOCK_STREAM, 0L, (long)pair);
    CHECK("socketpair-inet", SYS_socketpair, 2L, (long)SOCK_STREAM, 0L, (long)pair);
    memset(uring_params, 0, sizeof uring_params);
    CHECK("io_uring_setup", SYS_io_uring_setup, 1L, (long)uring_params);
    CHECK("unshare-newuser", SYS_unshare, 0x10000000L /* CLONE_NEWUSER */);
    CHECK("mount-tmpfs", SYS_mount, (long)"none", (long)"/nonexistent", (long)"tmpfs", 0L, 0L);
    CHECK("keyctl", SYS_keyctl, 0L /* KEYCTL_GET_KEYRING_ID */, -3L /* session keyring */, 0L);
    check_traceme();
    CHECK("get_mempolicy", SYS_get_mempolicy, 0L, 0L, 0L, 0L, 0L);
    memset(timex, 0, sizeof timex); /* modes = 0: read the clock state only */
    CHECK("adjtimex-read", SYS_adjtimex, (long)timex);
    memset(clone3_args, 0, sizeof clone3_args); /* size 0: EINVAL, never a new process */
    CHECK("clone3", SYS_clone3, (long)clone3_args, 0L);
    return 0;
}

static int epfd = -1;

static void *worker(void *unused)
{
    struct epoll_event ev;
    (void)unused;
    for (;;) {
        if (epoll_wait(epfd, &ev, 1, -1) != 1)
            continue;
        int conn = accept4(ev.data.fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn >= 0) {
            (void)!write(conn, "hello\n", 6);
            close(conn);
        }
    }
    return NULL;
}

static int listen_on(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        rc = bind(fd, (struct sockaddr *)&a6, sizeof a6);
    } else {
        struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
        rc = bind(fd, (struct sockaddr *)&a4, sizeof a4);
    }
    if (rc < 0 || listen(fd, 16) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    return fd;
}

static int serve(int port)
{
    pthread_t thread;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);
    int v4 = listen_on(AF_INET, port);
    if (v4 < 0) {
        printf("@@listen inet: errno %d\n", -v4);
        return 1;
    }
    printf("@@listen inet: ok\n");
    int v6 = listen_on(AF_INET6, port + 1);
    if (v6 == -EAFNOSUPPORT)
        printf("@@listen inet6: unavailable, errno %d\n", -v6);
    else if (v6 < 0) {
        printf("@@listen inet6: errno %d\n", -v6);
        return 1;
    } else
        printf("@@listen inet6: ok\n");
    fflush(stdout);
    if (pthread_create(&thread, NULL, worker, NULL) != 0) {
        printf("@@thread: failed\n");
        return 1;
    }
    printf("@@ready\n");
    fflush(stdout);
    pthread_join(thread, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "checks") == 0)
        return checks();
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(atoi(argv[2]));
    fprintf(stderr, "usage: probe checks | probe serve PORT\n");
    return 2;
}
