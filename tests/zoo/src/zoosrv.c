/*
 * zoosrv: one small static server that plays every non-nginx target of the zoo.
 *
 * Usage: zoosrv ACTION...   (actions run in order; then it serves until killed)
 *
 *   tcp4=ADDR:PORT[:MODE]      TCP listener on an IPv4 address
 *   tcp6=ADDR:PORT[:MODE]      TCP listener on an IPv6 address, IPV6_V6ONLY=1 (e.g. tcp6=:::8080 for [::])
 *   tcpdual=ADDR:PORT[:MODE]   TCP listener on an IPv6 address, IPV6_V6ONLY=0 (serves IPv4 too)
 *   udp4= / udp6= / udpdual=   the same for UDP; every datagram is echoed back (mode silent: dropped)
 *       MODE: http (default; 200 for / and /healthz, 404 otherwise, 400 at once for a first byte that
 *       cannot start a request line, e.g. a TLS ClientHello), banner (sends "+OK\r\n",
 *       discards input), silent (accepts, never writes), close (accepts and closes at once)
 *   fallback                   later IPv6 listeners become 0.0.0.0 when socket(AF_INET6) fails with errno 97
 *   optional6                  later IPv6 listeners that fail are logged and skipped (as redis does)
 *   sleep=SECONDS              keep serving for SECONDS before the next action
 *   close=PORT                 close every listener (TCP and UDP) on PORT and keep running
 *   until-connected            keep serving until a TCP connection has been accepted (a client saw it listen)
 *   exit=CODE                  exit with CODE
 *   print=TEXT                 write TEXT to stdout unbuffered; \n \r \t \\ \xHH are decoded, no newline added
 *   spam=BYTES                 write BYTES of log lines to stdout
 *   resolve=HOST               getaddrinfo(HOST); exit 1 with a message if it does not resolve
 *   tcp-env=VAR:PORT           TCP listener on the address in $VAR (e.g. POD_IP) written "$VAR:PORT" and split
 *                              at the first colon, as a naive config does: an IPv6 address does not parse (exit 1)
 *   tcp-env-bracketed=VAR:PORT the same written "[$VAR]:PORT" for an IPv6 address, which parses: it listens
 *   require4                   exit 1 unless an interface has an IPv4 address besides loopback (as services that
 *                              pick "the" IPv4 address of the host do)
 *
 * Every failure to set up prints one line naming the action and errno, then exits 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { HTTP, BANNER, SILENT, CLOSE };
enum kind { LISTEN_TCP, LISTEN_UDP, CLIENT };

#define MAXFD 512
struct slot {
    int fd;
    enum kind kind;
    enum mode mode;
    char buf[2048];
    size_t len;
};
static struct slot slots[MAXFD];
static int nslots;
static int fallback, optional6;
static long accepted; /* TCP connections accepted so far */

static void die(const char *action, const char *what) {
    fprintf(stderr, "zoosrv: %s: %s failed (%d: %s)\n", action, what, errno, strerror(errno));
    exit(1);
}

static void add_slot(int fd, enum kind kind, enum mode mode) {
    if (nslots == MAXFD) {
        close(fd);
        return;
    }
    slots[nslots] = (struct slot){.fd = fd, .kind = kind, .mode = mode, .len = 0};
    nslots++;
}

static void drop_slot(int i) {
    close(slots[i].fd);
    slots[i] = slots[nslots - 1];
    nslots--;
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void answer_http(struct slot *s) {
    char method[16] = "", path[256] = "";
    const char *status = "404 Not Found", *body = "no such path\n";
    if (s->buf[0] < 'A' || s->buf[0] > 'Z') {
        status = "400 Bad Request";
        body = "not an HTTP request\n";
    } else if (sscanf(s->buf, "%15s %255s", method, path) == 2 && strcmp(method, "GET") == 0 &&
        (strcmp(path, "/") == 0 || strcmp(path, "/healthz") == 0)) {
        status = "200 OK";
        body = "zoosrv ok\n";
    }
    char out[512];
    int n = snprintf(out, sizeof out, "HTTP/1.0 %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", status,
                     strlen(body), body);
    write_all(s->fd, out, (size_t)n);
}

/* Serve every listener and client until `until` (a monotonic time; < 0 = for ever). */
static void serve(double until) {
    for (;;) {
        int timeout = -1;
        if (until >= 0) {
            double left = until - now();
            if (left <= 0)
                return;
            timeout = (int)(left * 1000) + 1;
        }
        struct pollfd pfd[MAXFD];
        for (int i = 0; i < nslots; i++)
            pfd[i] = (struct pollfd){.fd = slots[i].fd, .events = POLLIN};
        int n = nslots;
        int r = poll(pfd, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR)
            die("serve", "poll");
        if (r <= 0)
            continue;
        for (int i = n - 1; i >= 0; i--) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            struct slot *s = &slots[i];
            if (s->kind == LISTEN_TCP) {
                int c = accept(s->fd, NULL, NULL);
                if (c < 0)
                    continue;
                accepted++;
                if (s->mode == CLOSE) {
                    close(c);
                } else {
                    if (s->mode == BANNER)
                        write_all(c, "+OK\r\n", 5);
                    add_slot(c, CLIENT, s->mode);
                }
            } else if (s->kind == LISTEN_UDP) {
                char d[2048];
                struct sockaddr_storage from;
                socklen_t fl = sizeof from;
                ssize_t got = recvfrom(s->fd, d, sizeof d, 0, (struct sockaddr *)&from, &fl);
                if (got >= 0 && s->mode != SILENT)
                    sendto(s->fd, d, (size_t)got, 0, (struct sockaddr *)&from, fl);
            } else {
                char tmp[1024];
                ssize_t got = read(s->fd, tmp, sizeof tmp);
                if (got <= 0) {
                    drop_slot(i);
                    continue;
                }
                if (s->mode != HTTP)
                    continue; /* banner and silent discard what they are sent */
                size_t take = (size_t)got;
                if (take > sizeof s->buf - 1 - s->len)
                    take = sizeof s->buf - 1 - s->len;
                memcpy(s->buf + s->len, tmp, take);
                s->len += take;
                s->buf[s->len] = 0;
                /* A request ends at its blank line; one that does not start like a request line (a TLS
                   ClientHello, say) is answered 400 at once rather than waited for. */
                if (strstr(s->buf, "\r\n\r\n") || strstr(s->buf, "\n\n") || s->len == sizeof s->buf - 1 ||
                    s->buf[0] < 'A' || s->buf[0] > 'Z') {
                    answer_http(s);
                    drop_slot(i);
                }
            }
        }
    }
}

static enum mode parse_mode(const char *action, const char *m) {
    if (!m || strcmp(m, "http") == 0)
        return HTTP;
    if (strcmp(m, "banner") == 0)
        return BANNER;
    if (strcmp(m, "silent") == 0)
        return SILENT;
    if (strcmp(m, "close") == 0)
        return CLOSE;
    fprintf(stderr, "zoosrv: %s: unknown mode %s\n", action, m);
    exit(2);
}

/* ADDR:PORT[:MODE], where ADDR may itself hold colons (IPv6): split from the right. */
static void listen_on(const char *action, const char *kind, char *spec) {
    int udp = strncmp(kind, "udp", 3) == 0;
    int v4 = strcmp(kind + 3, "4") == 0, dual = strcmp(kind + 3, "dual") == 0;
    char *mode = NULL, *last = strrchr(spec, ':');
    if (!last) {
        fprintf(stderr, "zoosrv: %s: want ADDR:PORT[:MODE]\n", action);
        exit(2);
    }
    if (!strchr("0123456789", last[1])) { /* a mode follows the port */
        mode = last + 1;
        *last = 0;
        last = strrchr(spec, ':');
        if (!last) {
            fprintf(stderr, "zoosrv: %s: want ADDR:PORT[:MODE]\n", action);
            exit(2);
        }
    }
    *last = 0;
    int port = atoi(last + 1);
    const char *addr = spec;
    enum mode md = parse_mode(action, mode);
    int type = udp ? SOCK_DGRAM : SOCK_STREAM;
    int fd;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    if (!v4) {
        fd = socket(AF_INET6, type, 0);
        if (fd < 0 && errno == EAFNOSUPPORT && fallback) {
            fprintf(stderr, "zoosrv: %s: no IPv6 (%s), falling back to 0.0.0.0:%d\n", action, strerror(errno), port);
            addr = "0.0.0.0";
            v4 = 1;
        } else if (fd < 0 && optional6) {
            fprintf(stderr, "zoosrv: # Failed listening on %s (%s): %s, skipped\n", action, kind, strerror(errno));
            return;
        } else if (fd < 0) {
            die(action, "socket(AF_INET6)");
        } else {
            int on = dual ? 0 : 1;
            if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0)
                die(action, "setsockopt(IPV6_V6ONLY)");
            struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
            a6->sin6_family = AF_INET6;
            a6->sin6_port = htons((uint16_t)port);
            if (inet_pton(AF_INET6, addr, &a6->sin6_addr) != 1) {
                fprintf(stderr, "zoosrv: %s: bad IPv6 address %s\n", action, addr);
                exit(2);
            }
            sl = sizeof *a6;
        }
    }
    if (v4) {
        fd = socket(AF_INET, type, 0);
        if (fd < 0)
            die(action, "socket(AF_INET)");
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, addr, &a4->sin_addr) != 1) {
            fprintf(stderr, "zoosrv: %s: bad IPv4 address %s\n", action, addr);
            exit(2);
        }
        sl = sizeof *a4;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
        if (optional6 && !v4) {
            fprintf(stderr, "zoosrv: # Failed listening on %s (%s): %s, skipped\n", action, kind, strerror(errno));
            close(fd);
            return;
        }
        die(action, "bind");
    }
    if (!udp && listen(fd, 64) < 0)
        die(action, "listen");
    add_slot(fd, udp ? LISTEN_UDP : LISTEN_TCP, md);
    fprintf(stderr, "zoosrv: listening: %s\n", action);
}

static void close_port(const char *action, int port) {
    int closed = 0;
    for (int i = 0; i < nslots;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int mine = slots[i].kind != CLIENT && getsockname(slots[i].fd, (struct sockaddr *)&ss, &len) == 0 &&
                   ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                 : ((struct sockaddr_in6 *)&ss)->sin6_port) == port;
        if (mine) {
            drop_slot(i);
            closed++;
        } else
            i++;
    }
    fprintf(stderr, "zoosrv: %s: closed %d listener(s)\n", action, closed);
}

static void print_decoded(const char *t) {
    char out[4096];
    size_t n = 0;
    for (; *t && n < sizeof out; t++) {
        if (*t != '\\' || !t[1]) {
            out[n++] = *t;
            continue;
        }
        t++;
        if (*t == 'n')
            out[n++] = '\n';
        else if (*t == 'r')
            out[n++] = '\r';
        else if (*t == 't')
            out[n++] = '\t';
        else if (*t == 'x' && t[1] && t[2]) {
            char hex[3] = {t[1], t[2], 0};
            out[n++] = (char)strtol(hex, NULL, 16);
            t += 2;
        } else
            out[n++] = *t;
    }
    write_all(1, out, n);
}

static void spam(long long bytes) {
    static char block[65536];
    const char *line = "zoosrv: a log line that says nothing much, written to make the log large\n";
    size_t ll = strlen(line), fill = 0;
    while (fill + ll <= sizeof block) {
        memcpy(block + fill, line, ll);
        fill += ll;
    }
    while (bytes > 0) {
        size_t n = bytes < (long long)fill ? (size_t)bytes : fill;
        write_all(1, block, n);
        bytes -= (long long)n;
    }
}

/* tcp-env / tcp-env-bracketed: listen on the address in an environment variable. */
static void listen_env(const char *action, const char *val, int bracketed) {
    char var[128], text[256], spec[300];
    const char *colon = strrchr(val, ':');
    if (!colon || (size_t)(colon - val) >= sizeof var) {
        fprintf(stderr, "zoosrv: %s: want VAR:PORT\n", action);
        exit(2);
    }
    snprintf(var, sizeof var, "%.*s", (int)(colon - val), val);
    const char *addr = getenv(var);
    if (!addr || !*addr) {
        fprintf(stderr, "zoosrv: %s: $%s is not set\n", action, var);
        exit(1);
    }
    int six = strchr(addr, ':') != NULL;
    snprintf(text, sizeof text, bracketed && six ? "[%s]:%s" : "%s:%s", addr, colon + 1);
    fprintf(stderr, "zoosrv: listening on %s\n", text);
    if (text[0] == '[') { /* [ADDR]:PORT */
        char *end = strchr(text, ']');
        snprintf(spec, sizeof spec, "%.*s:%s", (int)(end - text - 1), text + 1, end + 2);
        listen_on(action, "tcp6", spec);
        return;
    }
    char *first = strchr(text, ':'); /* HOST:PORT, split where a naive parser splits */
    *first = 0;
    struct in_addr probe;
    if (inet_pton(AF_INET, text, &probe) != 1) {
        fprintf(stderr, "zoosrv: %s: invalid listen address %s (port %s)\n", action, text, first + 1);
        exit(1);
    }
    snprintf(spec, sizeof spec, "%s:%s", text, first + 1);
    listen_on(action, "tcp4", spec);
}

static void require4(void) {
    struct ifaddrs *all = NULL;
    if (getifaddrs(&all) != 0)
        die("require4", "getifaddrs");
    for (struct ifaddrs *i = all; i; i = i->ifa_next) {
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
            ((const unsigned char *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr)[0] != 127) {
            char host[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, host, sizeof host);
            fprintf(stderr, "zoosrv: using IPv4 address %s of %s\n", host, i->ifa_name);
            freeifaddrs(all);
            return;
        }
    }
    freeifaddrs(all);
    fprintf(stderr, "zoosrv: require4: no IPv4 address besides loopback; refusing to start\n");
    exit(1);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    for (int i = 1; i < argc; i++) {
        char *action = argv[i], copy[512];
        snprintf(copy, sizeof copy, "%s", action);
        char *eq = strchr(copy, '=');
        char *val = eq ? eq + 1 : NULL;
        if (eq)
            *eq = 0;
        const char *key = copy;
        if (strcmp(key, "fallback") == 0)
            fallback = 1;
        else if (strcmp(key, "optional6") == 0)
            optional6 = 1;
        else if (val && (strncmp(key, "tcp", 3) == 0 || strncmp(key, "udp", 3) == 0) &&
                 (strcmp(key + 3, "4") == 0 || strcmp(key + 3, "6") == 0 || strcmp(key + 3, "dual") == 0))
            listen_on(action, key, val);
        else if (val && strcmp(key, "tcp-env") == 0)
            listen_env(action, val, 0);
        else if (val && strcmp(key, "tcp-env-bracketed") == 0)
            listen_env(action, val, 1);
        else if (!val && strcmp(key, "require4") == 0)
            require4();
        else if (val && strcmp(key, "sleep") == 0)
            serve(now() + atof(val));
        else if (!val && strcmp(key, "until-connected") == 0)
            while (!accepted)
                serve(now() + 0.05);
        else if (val && strcmp(key, "close") == 0)
            close_port(action, atoi(val));
        else if (val && strcmp(key, "exit") == 0) {
            fprintf(stderr, "zoosrv: exiting with code %s\n", val);
            exit(atoi(val));
        } else if (val && strcmp(key, "print") == 0)
            print_decoded(argv[i] + 6);
        else if (val && strcmp(key, "spam") == 0)
            spam(atoll(val));
        else if (val && strcmp(key, "resolve") == 0) {
            struct addrinfo *res = NULL, hints = {.ai_socktype = SOCK_STREAM};
            int rc = getaddrinfo(val, "80", &hints, &res);
            if (rc != 0) {
                fprintf(stderr, "zoosrv: cannot resolve upstream host %s: %s\n", val, gai_strerror(rc));
                exit(1);
            }
            char host[INET6_ADDRSTRLEN] = "?";
            getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof host, NULL, 0, NI_NUMERICHOST);
            fprintf(stderr, "zoosrv: upstream %s is %s\n", val, host);
            freeaddrinfo(res);
        } else {
            fprintf(stderr, "zoosrv: unknown action %s\n", action);
            exit(2);
        }
    }
    serve(-1);
    return 0;
}
