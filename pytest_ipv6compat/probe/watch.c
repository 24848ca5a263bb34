/*
 * pytest-ipv6compat watcher: the part of the probe that observes a running target.
 *
 * It runs inside the target's network namespace on a channel of its own (for the
 * Docker API backend: an exec session, whose output the target cannot write to),
 * waits until the set of listening sockets is non-empty and unchanged for SETTLE
 * seconds, reports each socket with the families it serves, probes each family
 * over its loopback, and then keeps reading the set (every POLL_MS) for the hold
 * window: HOLD seconds after it settled, restarted by every change (so the set the
 * verdict names stood unchanged for HOLD seconds), but never past HOLD_STRETCH x HOLD
 * after it settled unless nothing listens. Every change is reported as it is seen;
 * a listener that appeared is probed once the window ends, if it is still there.
 * While nothing listens the window does not end: the run's timeout decides. Then it
 * says "ready". It is linked statically (with OpenSSL for the https probe) and uses
 * nothing from the target's image.
 *
 *   watch SETTLE HOLD PROBE HTTP_PATH STATUS [POD_IPS]
 *     PROBE   tcp | http | https | none     (UDP sockets always get the udp probe)
 *     STATUS  accepted HTTP statuses, e.g. "2xx,3xx" or "200,204"
 *     POD_IPS the cell's pod addresses, comma-separated (at most one per family; "-" or absent: none):
 *             each listener is also probed over each pod address of a family it serves
 *
 * Output, one record per line, fields separated by single spaces (the last field
 * may contain spaces):
 *   listener PROTO FAMILY ADDRESS PORT V6ONLY        V6ONLY: 1, 0, or - (IPv4)
 *   reach PROTO FAMILY ADDRESS PORT VIA RESULT OK DETAIL
 *           VIA: inet|inet6 (the loopback used); RESULT: accepted, refused,
 *           no-loopback, timeout, errno-N, not-probed; OK: 1 or 0
 *   pod PROTO FAMILY ADDRESS PORT VIA RESULT OK DETAIL
 *           the same over the pod address of family VIA (a peer's view), for every pod address:
 *           RESULT not-probed when the listener serves no VIA ("serves no inet") or is bound to
 *           neither that address nor a wildcard serving its family
 *   settled SECONDS                                  since the watcher started
 *   opened PROTO FAMILY ADDRESS PORT V6ONLY SECONDS  after settled: a listener appeared (at SECONDS
 *   closed PROTO FAMILY ADDRESS PORT V6ONLY SECONDS    since the watcher started) or closed
 *   unsteady SECONDS      the window hit its bound while the set still changed: the final set
 *                         had stood unchanged for only SECONDS (less than HOLD)
 *   ready                 the window is over; the set is the listener records plus the opened,
 *                         less the closed, in order, and each of them has its reach records
 * Records come in this order: listener..., settled, then reach, opened and closed records
 * in any order (a reach names a listener in the set at that point; a closed listener's reach
 * records no longer count), then unsteady, then ready.
 * Listening sockets are read with sock_diag (NETLINK_SOCK_DIAG), which also says
 * whether an IPv6 socket is v6only: /proc/net/tcp6 cannot tell `[::]` (IPv6 only)
 * from `*` (IPv6 and IPv4). UDP sockets count when bound and not connected.
 *
 * Every line on stdout is sealed (see "The sealed channel" below), among the channel's own
 * records (start, alive every 0.2 s, tamper, end): write records with printf/puts on stdout
 * and nothing else, and any record kind is sealed without more work. A record must not carry
 * a newline taken from the target (a response line, say): each line is sealed on its own.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#define MAX_SOCKS 256
#define CONNECT_MS 2000
#define RESPONSE_MS 3000
#define UDP_MS 300
#define POLL_MS 10
#define HOLD_STRETCH 3 /* the hold window, restarted by changes, ends by HOLD_STRETCH x HOLD after settled */

struct sock {
    int proto;  /* IPPROTO_TCP or IPPROTO_UDP */
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int port;
    int v6only; /* -1 for AF_INET */
};

struct sockset {
    int n;
    struct sock s[MAX_SOCKS];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double seconds) {
    if (seconds <= 0)
        return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------ the sealed channel
 *
 * The watcher runs in the target's PID namespace, often as the target's user, so the
 * target can find it in /proc. Two things keep the target from writing or altering
 * the report:
 *
 * 1. The watcher is not dumpable, so /proc/PID/{fd,mem,environ} and ptrace need
 *    CAP_SYS_PTRACE, which engines do not give a container by default (and the run
 *    settings cannot add). The probe ships this program setgid to a group of its own
 *    (report.WATCH_GROUP): an exec that changes the effective group leaves the process
 *    non-dumpable from execve on, with no window before main(). Where the setgid bit
 *    does not take (a nosuid volume, no_new_privs, a target whose group is that group),
 *    prctl() below closes the window within microseconds of the start; the start
 *    record says which ("start exec" or "start prctl").
 * 2. Every line is sealed with a per-cell key the plugin passes in IPV6COMPAT_KEY
 *    (64 hex digits; the environment, unlike the command line, needs the same ptrace
 *    access as the fd):
 *        SEQ MAC RECORD
 *    SEQ counts from 0 without gaps; MAC is the first 16 bytes, in hex, of
 *    HMAC-SHA256(key, "SEQ RECORD"). So a record cannot be made, altered, replayed,
 *    dropped or reordered without the key. The channel's own records:
 *        start exec|prctl           first, once the key is read
 *        alive                      every HEARTBEAT_MS: the watcher is not stopped
 *        tamper WHAT                a signal the watcher caught (SIGCONT after a stop ...)
 *        end                        last, when the watcher exits by itself
 *    A stream that ends without "end" was cut short (the watcher was killed).
 */
#define HEARTBEAT_MS 200
#define KEY_BYTES 32
#define MAC_BYTES 16

static unsigned char seal_key[KEY_BYTES];
static unsigned long seal_seq;
static int seal_closed;
static char seal_line[4096];
static size_t seal_len;
static volatile sig_atomic_t seal_signal;

static int write_all(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(1, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n, len -= (size_t)n;
    }
    return 0;
}

/* Seal one record (without its newline) and write it in one write(). */
static int seal_one(const char *record, size_t len) {
    if (seal_closed)
        return 0;
    char out[sizeof seal_line + 128];
    int head = snprintf(out, sizeof out, "%lu ", seal_seq);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char text[sizeof seal_line + 32];
    int tlen = snprintf(text, sizeof text, "%lu %.*s", seal_seq, (int)len, record);
    HMAC(EVP_sha256(), seal_key, KEY_BYTES, (unsigned char *)text, (size_t)tlen, mac, &mac_len);
    for (int i = 0; i < MAC_BYTES; i++)
        head += snprintf(out + head, sizeof out - (size_t)head, "%02x", mac[i]);
    head += snprintf(out + head, sizeof out - (size_t)head, " %.*s\n", (int)len, record);
    seal_seq++;
    if (len == 3 && !memcmp(record, "end", 3))
        seal_closed = 1;
    return write_all(out, (size_t)head);
}

/* stdout's write function (under stdout's lock): seals each complete line. */
static ssize_t seal_write(void *cookie, const char *buf, size_t size) {
    (void)cookie;
    for (size_t i = 0; i < size; i++) {
        if (buf[i] == '\n' || seal_len == sizeof seal_line - 1) {
            if (seal_one(seal_line, seal_len) < 0)
                return -1;
            seal_len = 0;
            if (buf[i] == '\n')
                continue;
        }
        seal_line[seal_len++] = buf[i];
    }
    return (ssize_t)size;
}

static void seal_end(void) {
    puts("end");
    fflush(stdout);
}

static void seal_caught(int sig) { seal_signal = sig; }

static void *seal_heartbeat(void *arg) {
    (void)arg;
    for (;;) {
        sleep_s(HEARTBEAT_MS / 1000.0);
        int sig = seal_signal;
        if (sig == SIGCONT)
            puts("tamper the watcher was stopped and continued (SIGSTOP or SIGTSTP, then SIGCONT)");
        else if (sig)
            printf("tamper the watcher was sent signal %d (%s)\n", sig, strsignal(sig));
        else
            puts("alive");
        fflush(stdout);
        if (sig)
            exit(3);
    }
    return NULL;
}

/* First thing in main: protect the process, read the key, seal stdout, start the heartbeat. */
static void seal_start(void) {
    const char *how = prctl(PR_GET_DUMPABLE) == 0 ? "exec" : "prctl";
    prctl(PR_SET_DUMPABLE, 0);
    /* Signals the target may send: caught and reported by the heartbeat (SIGKILL and SIGSTOP cannot be). */
    int caught[] = {SIGCONT, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = seal_caught;
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++)
        sigaction(caught[i], &sa, NULL);
    /* Before anything of OpenSSL runs: never read a configuration file, which is the target image's
     * (/usr/lib/ssl/openssl.cnf, or OPENSSL_CONF) and could load modules into the watcher. */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
    char *hex = getenv("IPV6COMPAT_KEY");
    int ok = hex && strlen(hex) == 2 * KEY_BYTES;
    for (int i = 0; ok && i < KEY_BYTES; i++) {
        unsigned v;
        ok = sscanf(hex + 2 * i, "%2x", &v) == 1;
        seal_key[i] = (unsigned char)v;
    }
    if (hex)
        memset(hex, 0, strlen(hex));
    unsetenv("IPV6COMPAT_KEY");
    if (!ok) {
        fprintf(stderr, "watch: IPV6COMPAT_KEY must hold the cell's key (64 hex digits)\n");
        exit(2);
    }
    cookie_io_functions_t io = {.write = seal_write};
    FILE *sealed = fopencookie(NULL, "w", io);
    if (!sealed) {
        fprintf(stderr, "watch: cannot seal stdout: %s\n", strerror(errno));
        exit(2);
    }
    stdout = sealed;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("start %s\n", how);
    atexit(seal_end);
    pthread_t beat;
    if (pthread_create(&beat, NULL, seal_heartbeat, NULL) != 0) {
        printf("error cannot start the heartbeat: %s\n", strerror(errno));
        exit(1);
    }
}

static int cmp_sock(const void *a, const void *b) {
    const struct sock *x = a, *y = b;
    if (x->proto != y->proto)
        return x->proto - y->proto;
    if (x->family != y->family)
        return x->family - y->family;
    int c = memcmp(x->addr, y->addr, 16);
    if (c)
        return c;
    if (x->port != y->port)
        return x->port - y->port;
    return x->v6only - y->v6only;
}

/* Append the sockets of one (protocol, family) to set; 0 on success, -1 on error. */
static int dump(int proto, int family, struct sockset *set) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -1;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.nlh.nlmsg_len = sizeof req;
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.r.sdiag_family = (unsigned char)family;
    req.r.sdiag_protocol = (unsigned char)proto;
    req.r.idiag_states = proto == IPPROTO_TCP ? (1u << TCP_LISTEN) : 0xffffffffu;
    if (send(fd, &req, sizeof req, 0) < 0) {
        close(fd);
        return -1;
    }
    static char buf[32768];
    int rc = 0;
    for (;;) {
        ssize_t len = recv(fd, buf, sizeof buf, 0);
        if (len < 0) {
            if (errno == EINTR)
                continue;
            rc = -1;
            break;
        }
        if (len == 0)
            break;
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        for (; NLMSG_OK(h, (unsigned)len); h = NLMSG_NEXT(h, len)) {
            /* A failed dump is an error, never "no sockets". The kernel says it in NLMSG_ERROR (a
             * request it refused) or in NLMSG_DONE's payload (a dump that failed): ENOENT there is a
             * kernel without this protocol's diag module (udp_diag), whose sockets would all be invisible. */
            if (h->nlmsg_type == NLMSG_DONE) {
                int err = h->nlmsg_len >= NLMSG_LENGTH(sizeof err) ? *(int *)NLMSG_DATA(h) : 0;
                rc = err < 0 ? -1 : 0;
                errno = err < 0 ? -err : errno;
                goto out;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                rc = e->error == 0 ? 0 : -1;
                errno = -e->error;
                goto out;
            }
            struct inet_diag_msg *m = NLMSG_DATA(h);
            if (m->id.idiag_sport == 0)
                continue;
            if (proto == IPPROTO_UDP && m->id.idiag_dport != 0)
                continue; /* a connected UDP socket is a client, not a service */
            if (set->n >= MAX_SOCKS)
                continue;
            struct sock *s = &set->s[set->n++];
            memset(s, 0, sizeof *s);
            s->proto = proto;
            s->family = m->idiag_family;
            memcpy(s->addr, m->id.idiag_src, m->idiag_family == AF_INET ? 4 : 16);
            s->port = ntohs(m->id.idiag_sport);
            s->v6only = -1;
            if (m->idiag_family == AF_INET6) {
                s->v6only = 0;
                int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
                for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen))
                    if (a->rta_type == INET_DIAG_SKV6ONLY)
                        s->v6only = *(unsigned char *)RTA_DATA(a) ? 1 : 0;
            }
        }
    }
out:
    close(fd);
    return rc;
}

static int snapshot(struct sockset *set) {
    set->n = 0;
    int protos[] = {IPPROTO_TCP, IPPROTO_UDP};
    int families[] = {AF_INET, AF_INET6};
    for (int p = 0; p < 2; p++)
        for (int f = 0; f < 2; f++)
            if (dump(protos[p], families[f], set) < 0)
                return -1;
    qsort(set->s, (size_t)set->n, sizeof set->s[0], cmp_sock);
    /* The same socket can appear twice in one dump while the kernel rehashes it. */
    int w = 0;
    for (int i = 0; i < set->n; i++)
        if (w == 0 || cmp_sock(&set->s[w - 1], &set->s[i]) != 0)
            set->s[w++] = set->s[i];
    set->n = w;
    return 0;
}

static int same(const struct sockset *a, const struct sockset *b) {
    return a->n == b->n && memcmp(a->s, b->s, sizeof a->s[0] * (size_t)a->n) == 0;
}

/* Sockets in use in this namespace (TCP and UDP, both families): a cheap change detector. */
static long inuse(void) {
    long total = 0;
    const char *files[] = {"/proc/net/sockstat", "/proc/net/sockstat6"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "re");
        if (!f)
            continue;
        char line[256];
        while (fgets(line, sizeof line, f)) {
            char name[32];
            long count;
            if (sscanf(line, "%31s inuse %ld", name, &count) == 2 &&
                (!strcmp(name, "TCP:") || !strcmp(name, "TCP6:") || !strcmp(name, "UDP:") || !strcmp(name, "UDP6:")))
                total += count;
        }
        fclose(f);
    }
    return total;
}

static const char *proto_name(int proto) { return proto == IPPROTO_TCP ? "tcp" : "udp"; }
static const char *family_name(int family) { return family == AF_INET ? "inet" : "inet6"; }

static void addr_text(const struct sock *s, char *out, size_t size) {
    inet_ntop(s->family, s->addr, out, (socklen_t)size);
}

/* The loopback address that reaches s over family via, or 0 if none does. */
static int loopback_for(const struct sock *s, int via, unsigned char out[16]) {
    static const unsigned char any6[16] = {0}, lo6[16] = {[15] = 1};
    static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
    memset(out, 0, 16);
    if (s->family == AF_INET) {
        if (via != AF_INET)
            return 0;
        if (s->addr[0] == 0 && s->addr[1] == 0 && s->addr[2] == 0 && s->addr[3] == 0) {
            out[0] = 127, out[3] = 1;
            return 1;
        }
        if (s->addr[0] == 127) {
            memcpy(out, s->addr, 4);
            return 1;
        }
        return 0;
    }
    int wildcard = memcmp(s->addr, any6, 16) == 0;
    if (via == AF_INET6) {
        if (wildcard || memcmp(s->addr, lo6, 16) == 0) {
            memcpy(out, lo6, 16);
            return 1;
        }
        return 0;
    }
    if (wildcard && !s->v6only) {
        out[0] = 127, out[3] = 1;
        return 1;
    }
    if (memcmp(s->addr, mapped, 12) == 0 && s->addr[12] == 127) {
        memcpy(out, s->addr + 12, 4);
        return 1;
    }
    return 0;
}

/* The cell's pod addresses (POD_IPS), by family. */
static unsigned char pod4[4], pod6[16];
static int has_pod4, has_pod6;

/* The pod address that reaches s over family via, or 0 if none does (no such pod address, or s is
 * bound to neither it nor a wildcard that serves that family). */
static int pod_for(const struct sock *s, int via, unsigned char out[16]) {
    static const unsigned char any6[16] = {0};
    static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
    memset(out, 0, 16);
    if (via == AF_INET && has_pod4) {
        int any4 = s->family == AF_INET && !memcmp(s->addr, any6, 4);
        int mine = s->family == AF_INET && !memcmp(s->addr, pod4, 4);
        int dual = s->family == AF_INET6 && !memcmp(s->addr, any6, 16) && !s->v6only;
        int mapped_mine = s->family == AF_INET6 && !memcmp(s->addr, mapped, 12) && !memcmp(s->addr + 12, pod4, 4);
        if (any4 || mine || dual || mapped_mine) {
            memcpy(out, pod4, 4);
            return 1;
        }
    }
    if (via == AF_INET6 && has_pod6 && s->family == AF_INET6 &&
        (!memcmp(s->addr, any6, 16) || !memcmp(s->addr, pod6, 16))) {
        memcpy(out, pod6, 16);
        return 1;
    }
    return 0;
}

static void parse_pod(const char *list) {
    char copy[256];
    snprintf(copy, sizeof copy, "%s", list);
    for (char *save = NULL, *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (inet_pton(AF_INET, w, pod4) == 1)
            has_pod4 = 1;
        else if (inet_pton(AF_INET6, w, pod6) == 1)
            has_pod6 = 1;
    }
}

/* The families a socket serves: bit 1 IPv4, bit 2 IPv6. */
static int serves(const struct sock *s) {
    static const unsigned char any6[16] = {0}, mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (s->family == AF_INET)
        return 1;
    if (memcmp(s->addr, mapped, 12) == 0)
        return 1;
    if (memcmp(s->addr, any6, 16) == 0 && !s->v6only)
        return 3;
    return 2;
}

static int wait_fd(int fd, short events, int ms) {
    struct pollfd p = {fd, events, 0};
    double end = now() + ms / 1000.0;
    for (;;) {
        int left = (int)((end - now()) * 1000);
        if (left < 0)
            left = 0;
        int r = poll(&p, 1, left);
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

/* Connect with a timeout; returns the fd (>= 0), or -errno, or -ETIMEDOUT. */
static int connect_to(int type, int via, const unsigned char addr[16], int port) {
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (via == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((unsigned short)port);
        memcpy(&a->sin_addr, addr, 4);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((unsigned short)port);
        memcpy(&a->sin6_addr, addr, 16);
        len = sizeof *a;
    }
    int fd = socket(via, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&ss, len) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (wait_fd(fd, POLLOUT, CONNECT_MS) <= 0) {
        close(fd);
        return -ETIMEDOUT;
    }
    int err = 0;
    socklen_t elen = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err) {
        close(fd);
        return -err;
    }
    return fd;
}

/* Read the first line of a response within RESPONSE_MS into line; its length, or -1. */
static int first_line(int fd, char *line, size_t size) {
    size_t got = 0;
    double end = now() + RESPONSE_MS / 1000.0;
    while (got + 1 < size) {
        int left = (int)((end - now()) * 1000);
        if (left <= 0 || wait_fd(fd, POLLIN, left) <= 0)
            break;
        ssize_t n = read(fd, line + got, size - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(line, '\n', got))
            break;
    }
    line[got] = 0;
    char *eol = strpbrk(line, "\r\n");
    if (eol)
        *eol = 0;
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
            *c = '?';
    return got ? (int)strlen(line) : -1;
}

static int status_ok(const char *line, const char *accepted) {
    int code;
    if (sscanf(line, "HTTP/%*d.%*d %d", &code) != 1 && sscanf(line, "HTTP/%*d %d", &code) != 1)
        return 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", accepted);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (strlen(tok) == 3 && tok[1] == 'x' && tok[2] == 'x' && code / 100 == tok[0] - '0')
            return 1;
        if (atoi(tok) == code)
            return 1;
    }
    return 0;
}

/* HTTPS: TLS without certificate checks (the probe asks whether the service speaks
 * TLS and HTTP on that family, not whom to trust), then the request. */
static int https_line(int fd, const char *request, char *line, size_t size) {
    static SSL_CTX *ctx;
    if (!ctx) {
        OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
            return -1;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval tv = {RESPONSE_MS / 1000, (RESPONSE_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return -1;
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    int n = -1;
    if (SSL_connect(ssl) != 1) {
        snprintf(line, size, "(accepted, TLS handshake failed)");
        n = -2;
    } else if (SSL_write(ssl, request, (int)strlen(request)) > 0) {
        size_t got = 0;
        while (got + 1 < size) {
            int r = SSL_read(ssl, line + got, (int)(size - 1 - got));
            if (r <= 0)
                break;
            got += (size_t)r;
            if (memchr(line, '\n', got))
                break;
        }
        line[got] = 0;
        char *eol = strpbrk(line, "\r\n");
        if (eol)
            *eol = 0;
        n = got ? (int)strlen(line) : -1;
    }
    SSL_free(ssl);
    return n;
}

struct result {
    char what[32];
    int ok;
    char detail[256];
};

static void probe_one(const struct sock *s, int via, int pod, const char *kind, const char *path, const char *status,
                      struct result *r) {
    unsigned char addr[16];
    memset(r, 0, sizeof *r);
    if (!(pod ? pod_for(s, via, addr) : loopback_for(s, via, addr))) {
        snprintf(r->what, sizeof r->what, "not-probed");
        snprintf(r->detail, sizeof r->detail, pod ? "not bound to the pod address or a wildcard"
                                                  : "not a loopback or wildcard address");
        return;
    }
    if (s->proto == IPPROTO_UDP) {
        int fd = connect_to(SOCK_DGRAM, via, addr, s->port);
        if (fd < 0) {
            snprintf(r->what, sizeof r->what, fd == -EADDRNOTAVAIL ? "no-loopback" : "errno-%d", -fd);
            snprintf(r->detail, sizeof r->detail, "%s", strerror(-fd));
            return;
        }
        ssize_t sent = send(fd, "", 0, 0); /* an empty datagram: delivered or refused, nothing else */
        if (sent < 0) {
            snprintf(r->what, sizeof r->what, "errno-%d", errno);
            snprintf(r->detail, sizeof r->detail, "%s", strerror(errno));
        } else if (wait_fd(fd, POLLIN, UDP_MS) > 0) {
            char buf[64];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n < 0 && errno == ECONNREFUSED) {
                snprintf(r->what, sizeof r->what, "refused");
                snprintf(r->detail, sizeof r->detail, "port unreachable");
            } else {
                snprintf(r->what, sizeof r->what, "accepted");
                snprintf(r->detail, sizeof r->detail, "replied");
                r->ok = 1;
            }
        } else {
            snprintf(r->what, sizeof r->what, "accepted");
            snprintf(r->detail, sizeof r->detail, "delivered, no reply");
            r->ok = 1;
        }
        close(fd);
        return;
    }
    if (!strcmp(kind, "none")) {
        snprintf(r->what, sizeof r->what, "not-probed");
        snprintf(r->detail, sizeof r->detail, "probe none");
        return;
    }
    int fd = connect_to(SOCK_STREAM, via, addr, s->port);
    if (fd < 0) {
        if (fd == -ECONNREFUSED)
            snprintf(r->what, sizeof r->what, "refused");
        else if (fd == -EADDRNOTAVAIL || fd == -ENETUNREACH)
            snprintf(r->what, sizeof r->what, "no-loopback");
        else if (fd == -ETIMEDOUT)
            snprintf(r->what, sizeof r->what, "timeout");
        else
            snprintf(r->what, sizeof r->what, "errno-%d", -fd);
        snprintf(r->detail, sizeof r->detail, "%s", strerror(-fd));
        return;
    }
    snprintf(r->what, sizeof r->what, "accepted");
    if (!strcmp(kind, "tcp")) {
        snprintf(r->detail, sizeof r->detail, "connection accepted");
        r->ok = 1;
        close(fd);
        return;
    }
    char request[1200], line[200];
    snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: ipv6compat\r\n\r\n", path);
    int n;
    if (!strcmp(kind, "https")) {
        n = https_line(fd, request, line, sizeof line);
        if (n == -2) {
            close(fd);
            snprintf(r->detail, sizeof r->detail, "%s", line);
            return;
        }
    } else {
        ssize_t w = write(fd, request, strlen(request));
        n = w < 0 ? -1 : first_line(fd, line, sizeof line);
    }
    close(fd);
    if (n < 0) {
        snprintf(r->detail, sizeof r->detail, "(accepted, no response)");
        return;
    }
    snprintf(r->detail, sizeof r->detail, "%s", line);
    r->ok = status_ok(line, status);
}

/* PROTO FAMILY ADDRESS PORT V6ONLY: the words a listener record and a change record share. */
static void sock_words(const struct sock *s, char *out, size_t size) {
    char a[INET6_ADDRSTRLEN];
    addr_text(s, a, sizeof a);
    if (s->v6only < 0)
        snprintf(out, size, "%s %s %s %d -", proto_name(s->proto), family_name(s->family), a, s->port);
    else
        snprintf(out, size, "%s %s %s %d %d", proto_name(s->proto), family_name(s->family), a, s->port, s->v6only);
}

/* A reach record for each family s serves. */
static void probe_sock(const struct sock *s, const char *kind, const char *path, const char *status) {
    int fams = serves(s);
    int vias[] = {AF_INET, AF_INET6};
    for (int v = 0; v < 2; v++) {
        struct result r;
        char a[INET6_ADDRSTRLEN];
        addr_text(s, a, sizeof a);
        if (fams & (1 << v)) {
            probe_one(s, vias[v], 0, kind, path, status, &r);
            printf("reach %s %s %s %d %s %s %d %s\n", proto_name(s->proto), family_name(s->family), a, s->port,
                   family_name(vias[v]), r.what, r.ok, r.detail);
        }
        if (!(vias[v] == AF_INET ? has_pod4 : has_pod6))
            continue;
        if (fams & (1 << v)) {
            probe_one(s, vias[v], 1, kind, path, status, &r);
        } else { /* a peer of this family cannot reach it at all: said, so that a pod address is never left out */
            memset(&r, 0, sizeof r);
            snprintf(r.what, sizeof r.what, "not-probed");
            snprintf(r.detail, sizeof r.detail, "serves no %s", family_name(vias[v]));
        }
        printf("pod %s %s %s %d %s %s %d %s\n", proto_name(s->proto), family_name(s->family), a, s->port,
               family_name(vias[v]), r.what, r.ok, r.detail);
    }
}

static int has_sock(const struct sockset *set, const struct sock *s) {
    return bsearch(s, set->s, (size_t)set->n, sizeof set->s[0], cmp_sock) != NULL;
}

static void drop_sock(struct sockset *set, const struct sock *s) {
    struct sock *found = bsearch(s, set->s, (size_t)set->n, sizeof set->s[0], cmp_sock);
    if (!found)
        return;
    memmove(found, found + 1, (size_t)(set->s + set->n - (found + 1)) * sizeof *found);
    set->n--;
}

/*
 * The hold window, from settled_at with the set held (already reported and probed): read the set
 * every POLL_MS and report each change; the window ends HOLD after the last change, bounded by
 * HOLD_STRETCH x HOLD after settled_at (but at least SETTLE after the last change), and never
 * while nothing listens. Then probe what appeared and is still there. 0, or -1 on a sock_diag error.
 */
static int hold_window(struct sockset *held, double started, double settled_at, double settle, double hold,
                       const char *kind, const char *path, const char *status) {
    static struct sockset cur, probed;
    probed = *held;
    double bound = settled_at + HOLD_STRETCH * hold, end = settled_at + hold, last_change = settled_at;
    int looked = 0; /* the set is read at least once after the probes: they may outlast the window */
    for (;;) {
        double t = now();
        if (held->n > 0 && t >= end && looked)
            break;
        double nap = POLL_MS / 1000.0;
        if (held->n > 0 && end - t < nap)
            nap = end - t;
        sleep_s(looked ? nap : 0);
        if (snapshot(&cur) < 0) {
            printf("error sock_diag: %s\n", strerror(errno));
            return -1;
        }
        looked = 1;
        if (same(&cur, held))
            continue;
        double at = now();
        char w[128];
        for (int i = 0; i < held->n; i++)
            if (!has_sock(&cur, &held->s[i])) {
                sock_words(&held->s[i], w, sizeof w);
                printf("closed %s %.3f\n", w, at - started);
                drop_sock(&probed, &held->s[i]); /* if it comes back, it is probed again */
            }
        for (int i = 0; i < cur.n; i++)
            if (!has_sock(held, &cur.s[i])) {
                sock_words(&cur.s[i], w, sizeof w);
                printf("opened %s %.3f\n", w, at - started);
            }
        *held = cur;
        last_change = at;
        double want = at + hold < bound ? at + hold : bound;
        if (want < at + settle)
            want = at + settle;
        if (want > end)
            end = want;
    }
    for (int i = 0; i < held->n; i++)
        if (!has_sock(&probed, &held->s[i]))
            probe_sock(&held->s[i], kind, path, status);
    double steady = now() - last_change;
    if (last_change > settled_at && steady < hold)
        printf("unsteady %.3f\n", steady);
    return 0;
}

int main(int argc, char **argv) {
    seal_start();
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: watch SETTLE HOLD PROBE HTTP_PATH STATUS [POD_IPS]\n");
        return 2;
    }
    if (argc == 7)
        parse_pod(argv[6]);
    double settle = atof(argv[1]), hold = atof(argv[2]);
    const char *kind = argv[3], *path = argv[4], *status = argv[5];
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    double started = now();
    static struct sockset prev, cur;
    long seen = -1;
    int polls = 0, have_prev = 0;
    double settled_at = 0;
    for (;;) {
        long n = inuse();
        if (have_prev || n != seen || polls % 20 == 0) {
            seen = n;
            if (snapshot(&cur) < 0) {
                printf("error sock_diag: %s\n", strerror(errno));
                return 1;
            }
            if (have_prev && cur.n > 0 && same(&cur, &prev)) {
                settled_at = now();
                break;
            }
            prev = cur;
            have_prev = cur.n > 0;
            if (have_prev) {
                sleep_s(settle);
                continue;
            }
        }
        polls++;
        sleep_s(POLL_MS / 1000.0);
    }
    for (int i = 0; i < cur.n; i++) {
        char a[INET6_ADDRSTRLEN];
        addr_text(&cur.s[i], a, sizeof a);
        if (cur.s[i].v6only < 0)
            printf("listener %s %s %s %d -\n", proto_name(cur.s[i].proto), family_name(cur.s[i].family), a,
                   cur.s[i].port);
        else
            printf("listener %s %s %s %d %d\n", proto_name(cur.s[i].proto), family_name(cur.s[i].family), a,
                   cur.s[i].port, cur.s[i].v6only);
    }
    printf("settled %.3f\n", settled_at - started);
    for (int i = 0; i < cur.n; i++)
        probe_sock(&cur.s[i], kind, path, status);
    if (hold_window(&cur, started, settled_at, settle, hold, kind, path, status) < 0)
        return 1;
    printf("ready\n");
    return 0;
}
