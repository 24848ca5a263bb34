/* pytest-ipv6compat: the pod interface, made over rtnetlink: shared by umlsetup (uml_setup.c, a User-mode
 * Linux cell) and podsetup (pod_setup.c, a container cell), which both include this file (after uml_setup.c's
 * die() and numeric()).
 *
 * make_pod(ADDRESSES): a veth pair, pod0 and its peer pod0p, in the calling process's network namespace (both
 * ends stay there: nothing connects it to any other namespace, so no packet can leave), both up; each address
 * of ADDRESSES (comma-separated ADDRESS/PREFIX, IPv4 or IPv6) given to pod0 (IPv6 without duplicate address
 * detection, so that it can be bound at once), and a default route on pod0 for each family with an address.
 */
#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#define POD_IF "pod0"
#define PEER_IF "pod0p"

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

static void add_address(int fd, int index, const char *text)
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
    for (char *save = NULL, *word = strtok_r(copy, ",", &save); word; word = strtok_r(NULL, ",", &save)) {
        add_address(fd, index, word);
        families |= strchr(word, ':') ? 2 : 1;
    }
    link_up(fd, PEER_IF);
    link_up(fd, POD_IF);
    if (families & 1)
        default_route(fd, index, AF_INET);
    if (families & 2)
        default_route(fd, index, AF_INET6);
    close(fd);
}
