/* pytest-ipv6compat: a container cell's pod address, made inside its own network namespace.
 *
 *   podsetup [--home] ADDRESSES USER PROGRAM [ARG ...]
 *
 * The container is started on `--network none` as root with CAP_NET_ADMIN added, running this
 * first. In order, stopping at the first failure with one line on stderr ("cannot ...: why")
 * and status 1:
 *   1. a veth pair, pod0 and its peer pod0p, is made in the cell's namespace (both ends stay
 *      there: nothing connects it to any other namespace, so no packet can leave) and brought up;
 *   2. each address of ADDRESSES (comma-separated ADDRESS/PREFIX, IPv4 or IPv6, "-" for none) is
 *      given to pod0 (IPv6 without duplicate address detection, so that it can be bound at once),
 *      and each family with an address gets a default route on pod0;
 *   3. the host name (the engine's) is added to /etc/hosts with each address (and taken off any
 *      other line: Podman maps it to a loopback address), POD_IP (the first
 *      address) and POD_IPS (all, comma-separated) are set, as Kubernetes' downward API gives them;
 *   4. CAP_NET_ADMIN leaves the effective, permitted, inheritable and ambient sets, and the
 *      identity USER names is taken as umlsetup --as does (uml_setup.c: the runtime's user
 *      lookup, the bounding set cut to the engine's defaults); with --home, HOME is the user's
 *      home from /etc/passwd (the engine set root's, since it started the container as root).
 *      USER "-" (neither the cell nor the image names one) keeps the root identity the engine
 *      gave, groups and HOME as they are (Podman gives that root no supplementary group at all,
 *      Docker group 0), and only cuts the bounding set;
 *   5. PROGRAM is exec'd (the shim).
 */
#define main umlsetup_main
#include "uml_setup.c" /* and with it pod_net.c: make_pod() */
#undef main

/* /etc/hosts without the host name on any other line (Podman maps it to 127.0.0.1 or the like): the
 * other names of such a line stay, a line left with no name goes. */
static size_t hosts_without(const char *host, char *out, size_t size)
{
    char line[1024];
    size_t used = 0;
    FILE *f = fopen("/etc/hosts", "re");
    if (f == NULL)
        die("read /etc/hosts: %s", strerror(errno));
    while (fgets(line, sizeof line, f)) {
        char kept[1024] = "", *save = NULL, *address;
        size_t k = 0;
        int names = 0, dropped = 0;
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || (address = strtok_r(line, " \t", &save)) == NULL) {
            k = (size_t)snprintf(kept, sizeof kept, "%s", line);
        } else {
            k = (size_t)snprintf(kept, sizeof kept, "%s", address);
            for (char *name = strtok_r(NULL, " \t", &save); name; name = strtok_r(NULL, " \t", &save)) {
                if (strcmp(name, host) == 0) {
                    dropped = 1;
                    continue;
                }
                names++;
                k += (size_t)snprintf(kept + k, sizeof kept - k, "%s%s", names == 1 ? "\t" : " ", name);
            }
            if (dropped && names == 0)
                continue;
        }
        if (used + k + 2 > size)
            die("rewrite /etc/hosts: too long");
        memcpy(out + used, kept, k);
        used += k;
        out[used++] = '\n';
    }
    fclose(f);
    return used;
}

/* The host name with each address in /etc/hosts, and POD_IP / POD_IPS in the environment. */
static void announce(const char *addresses)
{
    static char hosts[65536];
    char copy[512], ips[512] = "", host[256];
    size_t used = 0;
    if (gethostname(host, sizeof host) != 0)
        die("read the host name: %s", strerror(errno));
    host[sizeof host - 1] = '\0';
    /* With a read-only root (run setting read_only) the engine mounts /etc/hosts read-only too: the
     * name is then left as the engine wrote it (README, "The pod address"). */
    int writable = access("/etc/hosts", W_OK) == 0 || errno != EROFS;
    size_t size = writable ? hosts_without(host, hosts, sizeof hosts) : 0;
    snprintf(copy, sizeof copy, "%s", addresses);
    for (char *save = NULL, *word = strtok_r(copy, ",", &save); word; word = strtok_r(NULL, ",", &save)) {
        word[strcspn(word, "/")] = '\0';
        int n = snprintf(ips + used, sizeof ips - used, "%s%s", used ? "," : "", word);
        if (n < 0 || (size_t)n >= sizeof ips - used)
            die("set POD_IPS: too long");
        used += (size_t)n;
        n = snprintf(hosts + size, sizeof hosts - size, "%s\t%s\n", word, host);
        if (n < 0 || (size_t)n >= sizeof hosts - size)
            die("rewrite /etc/hosts: too long");
        size += (size_t)n;
    }
    if (writable) {
        int fd = open("/etc/hosts", O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0 || write(fd, hosts, size) != (ssize_t)size)
            die("add the pod address to /etc/hosts: %s", strerror(errno));
        close(fd);
    }
    char *comma = strchr(ips, ',');
    if (setenv("POD_IPS", ips, 1) != 0)
        die("set POD_IPS: %s", strerror(errno));
    if (comma)
        *comma = '\0';
    if (setenv("POD_IP", ips, 1) != 0)
        die("set POD_IP: %s", strerror(errno));
}

/* CAP_NET_ADMIN out of every set but the bounding one (which exec_as cuts to the engine's defaults). */
static void drop_net_admin(void)
{
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &head, data) != 0)
        die("read the capabilities: %s", strerror(errno));
    unsigned bit = 1U << (CAP_NET_ADMIN % 32);
    int word = CAP_NET_ADMIN / 32;
    data[word].effective &= ~bit;
    data[word].permitted &= ~bit;
    data[word].inheritable &= ~bit;
    if (syscall(SYS_capset, &head, data) != 0)
        die("drop CAP_NET_ADMIN: %s", strerror(errno));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_NET_ADMIN, 0, 0) != 0 && errno != EINVAL)
        die("drop CAP_NET_ADMIN from the ambient set: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    int home = argc > 1 && strcmp(argv[1], "--home") == 0;
    if (argc < 4 + home) {
        fputs("usage: podsetup [--home] ADDRESSES USER PROGRAM [ARG ...]\n", stderr);
        return 2;
    }
    const char *addresses = argv[1 + home], *user = argv[2 + home];
    if (strcmp(addresses, "-") != 0) {
        make_pod(addresses);
        announce(addresses);
    }
    drop_net_admin();
    if (strcmp(user, "-") == 0) { /* the engine's own root: its groups and HOME stand */
        bound_capabilities();
        execv(argv[3 + home], argv + 3 + home);
        die("exec %s: %s", argv[3 + home], strerror(errno));
    }
    if (home)
        unsetenv("HOME");
    return exec_as(user, argv + 3 + home);
}
