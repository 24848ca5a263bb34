/* pytest-ipv6compat: the pod interface, made over rtnetlink: shared by umlsetup (uml_setup.c, a User-mode
 * Linux cell) and podsetup (pod_setup.c, a container cell), which both include this file (after uml_setup.c's
 * die() and numeric()).
 *
 * make_pod(ADDRESSES): a veth pair, pod0 and its peer pod0p, in the calling process's network namespace (both
 * ends stay there: nothing connects it to any other namespace, so no packet can leave), both up; each address
 * of ADDRESSES (comma-separated ADDRESS/PREFIX, IPv4 or IPv6) given to pod0 (IPv6 without duplicate address
 * detection, so that it can be bound at once), and a default route on pod0 for each family with an address.
 *
 * With an IPv6 address, pod0's link-local address is fe80::2/64, also without duplicate address detection,
 * and the kernel makes none of its own on either end (address generation mode "none"): the kernel's own
 * would finish detection a second or two later and add its routes then, while the shim reads the tables
 * (a reader of /proc/net/ipv6_route can then see one route twice; CI saw "inet6 default routes = pod0 pod0").
 * make_pod() returns once the namespace is settled: each IPv6 address of pod0 has its local route and both
 * ends have their multicast route (the kernel adds both from a work queue, after the request returns).
 */
#include <arpa/inet.h>
#include <time.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#define POD_IF "pod0"
#define PEER_IF "pod0p"
#define POD_LINK_LOCAL "fe80::2/64"
#define SETTLE_SECONDS 10

struct request {
    struct nlmsghdr head;
    char body[1024];
};

static struct rtattr *attr(struct request *req, unsigned short type, const void *data, size_t len)
{
    struct rtattr *a = (struct rtattr *)((char *)req + NLMSG_ALIGN(req->head.nlmsg_len));
    size_t size = RTA_LENGTH(len);
    if (NLMSG_ALIGN(req->head.nlmsg_len) + RTA_ALIGN(size) > sizeof *req)
        die("make the pod interface: netlink request too long");
    a->rta_type = type;
    a->rta_len = (unsigned short)size;
    if (len)
        memcpy(RTA_DATA(a), data, len);
    req->head.nlmsg_len = (unsigned)(NLMSG_ALIGN(req->head.nlmsg_len) + RTA_ALIGN(size));
    return a;
}

static void close_nest(struct request *req, struct rtattr *nest)
{
    nest->rta_len = (unsigned short)((char *)req + req->head.nlmsg_len - (char *)nest);
}

static void start(struct request *req, unsigned short type, unsigned short flags, const void *msg, size_t len)
{
    memset(req, 0, sizeof *req);
    req->head.nlmsg_len = (unsigned)NLMSG_LENGTH(len);
    req->head.nlmsg_type = type;
    req->head.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | NLM_F_ACK | flags);
    memcpy(NLMSG_DATA(&req->head), msg, len);
}

/* Send one request and read its acknowledgement; the error it carries, or 0. */
static int talk(int fd, struct request *req, const char *what)
{
    static unsigned seq;
    char answer[4096];
    req->head.nlmsg_seq = ++seq;
    if (send(fd, req, req->head.nlmsg_len, 0) < 0)
        die("%s: %s", what, strerror(errno));
    for (;;) {
        ssize_t n = recv(fd, answer, sizeof answer, 0);
        if (n < 0)
            die("%s: %s", what, strerror(errno));
        for (struct nlmsghdr *h = (struct nlmsghdr *)answer; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR)
                continue;
            return -((struct nlmsgerr *)NLMSG_DATA(h))->error;
        }
    }
}

static void must(int fd, struct request *req, const char *what)
{
    int error = talk(fd, req, what);
    if (error)
        die("%s: %s", what, strerror(error));
}

static void make_pair(int fd)
{
    struct request req;
    struct ifinfomsg link = {.ifi_family = AF_UNSPEC};
    start(&req, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &link, sizeof link);
    attr(&req, IFLA_IFNAME, POD_IF, sizeof POD_IF);
    struct rtattr *info = attr(&req, IFLA_LINKINFO, NULL, 0);
    attr(&req, IFLA_INFO_KIND, "veth", 4);
    struct rtattr *data = attr(&req, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = attr(&req, VETH_INFO_PEER, &link, sizeof link);
    attr(&req, IFLA_IFNAME, PEER_IF, sizeof PEER_IF);
    close_nest(&req, peer);
    close_nest(&req, data);
    close_nest(&req, info);
    must(fd, &req, "make the pod interface " POD_IF " (a veth pair)");
}

static void link_up(int fd, const char *name)
{
    struct request req;
    char what[128];
    struct ifinfomsg link = {.ifi_family = AF_UNSPEC, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    link.ifi_index = (int)if_nametoindex(name);
    snprintf(what, sizeof what, "bring %s up", name);
    if (link.ifi_index == 0)
        die("%s: %s", what, strerror(errno));
    start(&req, RTM_NEWLINK, 0, &link, sizeof link);
    must(fd, &req, what);
}

/* Give pod0 the address TEXT (ADDRESS/PREFIX); its family, and an IPv6 address's bytes in V6. */
static int add_address(int fd, int index, const char *text, unsigned char v6[16])
{
    char copy[128], what[192];
    unsigned char bytes[16];
    snprintf(what, sizeof what, "give " POD_IF " the address %s", text);
    if (snprintf(copy, sizeof copy, "%s", text) >= (int)sizeof copy)
        die("%s: too long", what);
    char *slash = strchr(copy, '/');
    unsigned long prefix = 0;
    if (slash == NULL || !numeric(slash + 1, &prefix))
        die("%s: not ADDRESS/PREFIX", what);
    *slash = '\0';
    int family = strchr(copy, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, copy, bytes) != 1 || prefix > (family == AF_INET6 ? 128U : 32U))
        die("%s: not an address", what);
    struct request req;
    struct ifaddrmsg msg = {
        .ifa_family = (unsigned char)family,
        .ifa_prefixlen = (unsigned char)prefix,
        .ifa_flags = family == AF_INET6 ? IFA_F_NODAD : 0,
        .ifa_index = (unsigned)index,
    };
    size_t len = family == AF_INET6 ? 16 : 4;
    start(&req, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &msg, sizeof msg);
    attr(&req, IFA_LOCAL, bytes, len);
    attr(&req, IFA_ADDRESS, bytes, len);
    must(fd, &req, what);
    if (family == AF_INET6)
        memcpy(v6, bytes, 16);
    return family;
}

/* No address of the kernel's own making on NAME (IPv6 address generation mode "none"), asked before it is up. */
static void no_generated_address(int fd, const char *name)
{
    struct request req;
    char what[128];
    struct ifinfomsg link = {.ifi_family = AF_UNSPEC, .ifi_index = (int)if_nametoindex(name)};
    unsigned char mode = IN6_ADDR_GEN_MODE_NONE;
    snprintf(what, sizeof what, "stop the kernel making an IPv6 address on %s", name);
    if (link.ifi_index == 0)
        die("%s: %s", what, strerror(errno));
    start(&req, RTM_NEWLINK, 0, &link, sizeof link);
    struct rtattr *spec = attr(&req, IFLA_AF_SPEC, NULL, 0);
    struct rtattr *inet6 = attr(&req, AF_INET6, NULL, 0);
    attr(&req, IFLA_INET6_ADDR_GEN_MODE, &mode, sizeof mode);
    close_nest(&req, inet6);
    close_nest(&req, spec);
    must(fd, &req, what);
}

/* The IPv6 routes the settled namespace has, from a dump: *locals counts the local routes of WANT (COUNT
 * addresses), *multicast the ff00::/8 routes of interfaces INDEX and PEER. */
static void ipv6_routes(int fd, const unsigned char (*want)[16], int count, int index, int peer, int *locals,
                        int *multicast)
{
    struct request req;
    struct rtmsg msg = {.rtm_family = AF_INET6};
    static char answer[32768];
    *locals = *multicast = 0;
    start(&req, RTM_GETROUTE, NLM_F_DUMP, &msg, sizeof msg);
    if (send(fd, &req, req.head.nlmsg_len, 0) < 0)
        die("read the IPv6 routes: %s", strerror(errno));
    for (;;) {
        ssize_t n = recv(fd, answer, sizeof answer, 0);
        if (n < 0)
            die("read the IPv6 routes: %s", strerror(errno));
        for (struct nlmsghdr *h = (struct nlmsghdr *)answer; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return;
            if (h->nlmsg_type == NLMSG_ERROR)
                die("read the IPv6 routes: %s", strerror(-((struct nlmsgerr *)NLMSG_DATA(h))->error));
            if (h->nlmsg_type != RTM_NEWROUTE)
                continue;
            struct rtmsg *r = NLMSG_DATA(h);
            const unsigned char *dst = NULL;
            int oif = 0;
            int left = (int)RTM_PAYLOAD(h);
            for (struct rtattr *a = RTM_RTA(r); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
                if (a->rta_type == RTA_DST && RTA_PAYLOAD(a) == 16)
                    dst = RTA_DATA(a);
                else if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) == sizeof oif)
                    memcpy(&oif, RTA_DATA(a), sizeof oif);
            }
            if (r->rtm_type == RTN_LOCAL && r->rtm_dst_len == 128 && dst)
                for (int i = 0; i < count; i++)
                    *locals += memcmp(dst, want[i], 16) == 0;
            if (r->rtm_dst_len == 8 && dst && dst[0] == 0xff && (oif == index || oif == peer))
                (*multicast)++;
        }
    }
}

/* Wait (bounded) until each of the COUNT IPv6 addresses WANT has its local route and pod0 and its peer have
 * their multicast routes: the kernel adds them from a work queue, after the requests that cause them return. */
static void wait_settled(int fd, const unsigned char (*want)[16], int count, int index)
{
    int peer = (int)if_nametoindex(PEER_IF), locals = 0, multicast = 0;
    struct timespec now, end, pause = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += SETTLE_SECONDS;
    for (;;) {
        ipv6_routes(fd, want, count, index, peer, &locals, &multicast);
        if (locals == count && multicast >= 2)
            return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
            die("wait for " POD_IF " to settle: after %d s, %d of %d local IPv6 routes and %d of 2 multicast routes",
                SETTLE_SECONDS, locals, count, multicast);
        nanosleep(&pause, NULL);
        if (pause.tv_nsec < 16000000)
            pause.tv_nsec *= 2;
    }
}

static void default_route(int fd, int index, int family)
{
    struct request req;
    struct rtmsg msg = {
        .rtm_family = (unsigned char)family,
        .rtm_table = RT_TABLE_MAIN,
        .rtm_protocol = RTPROT_BOOT,
        .rtm_scope = family == AF_INET ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE,
        .rtm_type = RTN_UNICAST,
    };
    start(&req, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &msg, sizeof msg);
    attr(&req, RTA_OIF, &index, sizeof index);
    must(fd, &req, family == AF_INET ? "add the IPv4 default route on " POD_IF : "add the IPv6 default route on " POD_IF);
}

/* The pod interface with ADDRESSES (see the head of this file); the first failure is one line and status 1. */
static void make_pod(const char *addresses)
{
    char copy[512];
    int families = 0;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        die("open a netlink socket: %s", strerror(errno));
    make_pair(fd);
    int index = (int)if_nametoindex(POD_IF);
    if (index == 0)
        die("find " POD_IF ": %s", strerror(errno));
    if (snprintf(copy, sizeof copy, "%s", addresses) >= (int)sizeof copy)
        die("give " POD_IF " the addresses %s: too long", addresses);
    unsigned char v6[9][16];
    int count = 0;
    for (char *save = NULL, *word = strtok_r(copy, ",", &save); word; word = strtok_r(NULL, ",", &save)) {
        if (count == 8)
            die("give " POD_IF " the addresses %s: too many", addresses);
        int family = add_address(fd, index, word, v6[count]);
        families |= family == AF_INET6 ? 2 : 1;
        count += family == AF_INET6;
    }
    if (families & 2) {
        no_generated_address(fd, POD_IF);
        no_generated_address(fd, PEER_IF);
        add_address(fd, index, POD_LINK_LOCAL, v6[count++]);
    }
    link_up(fd, PEER_IF);
    link_up(fd, POD_IF);
    if (families & 1)
        default_route(fd, index, AF_INET);
    if (families & 2) {
        default_route(fd, index, AF_INET6);
        wait_settled(fd, (const unsigned char (*)[16])v6, count, index);
    }
    close(fd);
}
