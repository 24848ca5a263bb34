/* pytest-ipv6compat: the set-up of a User-mode Linux cell, in one process.
 *
 * Called once by the UML init (uml_init.sh) before anything else. Under UML every
 * program start costs 10-30 ms, and the set-up used to start one busybox per step
 * (mount, insmod, ip, mkdir ...); doing them here in one static program is what
 * brings the target's start close to the kernel's boot.
 *
 *   umlsetup NONCE FSTAB ROOT MOUNTS READ_ONLY PIDS MEMORY CPU_MAX POD [PATH:OPTIONS ...]
 *
 * In order, stopping at the first failure with one line on stderr ("cannot ...: why")
 * and exit status 1:
 *   1. every line of FSTAB (source, target, type, options) is mounted, as mount -a would;
 *      right after /proc is mounted, "@@ipv6compat NONCE boot UPTIME" goes to stdout;
 *   2. the modules named in /.ipv6compat/modules (one file name a line, in load order, written by
 *      uml_rootfs.probe_archive from its MODULES: IPv6, the watcher's udp_diag and veth) are loaded, each
 *      with the NAME.* words of /proc/cmdline as its parameters (what modprobe does with them on a
 *      Debian host: ipv6.disable=1 reaches ipv6.ko);
 *   3. lo is brought up, and each line "PATH VALUE" of /.ipv6compat/sysctls is written (the network
 *      sysctls a container engine sets: uml_rootfs.SYSCTLS);
 *   3b. unless POD is "-", the pod interface pod0 gets the addresses of POD (comma-separated ADDRESS/PREFIX)
 *      and a default route per family, as podsetup makes it in a container cell (pod_net.c: make_pod);
 *   4. each line "SOURCE DEST" of MOUNTS is bound read-only at ROOT/DEST (DEST made as a
 *      directory or an empty file, like SOURCE);
 *   5. each PATH:OPTIONS argument becomes a tmpfs at ROOT/PATH;
 *   5b. Docker's read-only and masked paths under ROOT, from /.ipv6compat/confine ("ro PATH": bound read-only
 *      on itself, so /proc/sys; "mask PATH": under /dev/null or an empty read-only tmpfs; absent: left alone);
 *   6. with READ_ONLY 1, ROOT is remounted read-only;
 *   7. the cell's cgroup /sys/fs/cgroup/cell gets pids.max PIDS, memory.max MEMORY, no swap and
 *      cpu.max CPU_MAX ("max", or "QUOTA PERIOD" in microseconds: the cell's cpus of this one-CPU kernel),
 *      and the engine's device cgroup: /.ipv6compat/devices.bpf, a cgroup device program, attached to it.
 *
 *   umlsetup --as USER --root ROOT PROGRAM [ARG ...]
 *
 * Enters ROOT (chroot), takes the identity USER names and execs PROGRAM, as a container
 * engine's runtime does with a container's user (runc's user lookup): USER is NAME, UID, NAME:GROUP
 * or UID:GID. A name must be in /etc/passwd; a uid need not be (then its group is 0 and its home /);
 * a group names /etc/group or is a gid. Without a group, the user's primary group from /etc/passwd
 * and, for a user found there, the groups of /etc/group that list it. HOME is set to the user's home
 * when the environment has none. A user or group that cannot be found is one line on stderr
 * ("unable to find user NAME: no matching entries in passwd file", as Docker says) and status 126.
 * Before it takes the identity, the project's seccomp profile for the stack (/.ipv6compat/seccomp.bpf,
 * compiled by the plugin, read before the chroot) is loaded, and every capability outside the set Docker
 * gives a container by default (ENGINE_CAPS) leaves the bounding set, so a root target holds what it would hold in a
 * container and no more: without CAP_SYS_PTRACE it cannot read init's or the watcher's memory
 * (the tag and the key), without CAP_SYS_BOOT it cannot halt the kernel, without CAP_SYS_ADMIN or
 * CAP_SYS_MODULE it cannot mount or load modules. Its permitted and effective sets follow from the
 * bounding set at the exec (a root process gets the bounding set); a non-root one gets none.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <grp.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROBE "/.ipv6compat"

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cannot ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Mount flags by name; any other option goes to the filesystem as data. */
static const struct {
    const char *name;
    unsigned long flag;
} FLAGS[] = {
    {"ro", MS_RDONLY}, {"nosuid", MS_NOSUID}, {"nodev", MS_NODEV}, {"noexec", MS_NOEXEC},
    {"bind", MS_BIND}, {"remount", MS_REMOUNT}, {"noatime", MS_NOATIME}, {"relatime", MS_RELATIME},
};

static unsigned long split_options(const char *options, char *data, size_t size)
{
    unsigned long flags = 0;
    char copy[512];
    size_t used = 0;
    if (snprintf(copy, sizeof copy, "%s", options) >= (int)sizeof copy)
        die("mount with options %s: too long", options);
    data[0] = '\0';
    for (char *save = NULL, *word = strtok_r(copy, ",", &save); word; word = strtok_r(NULL, ",", &save)) {
        size_t i;
        if (strcmp(word, "defaults") == 0 || strcmp(word, "rw") == 0)
            continue;
        for (i = 0; i < sizeof FLAGS / sizeof FLAGS[0] && strcmp(word, FLAGS[i].name) != 0; i++)
            ;
        if (i < sizeof FLAGS / sizeof FLAGS[0]) {
            flags |= FLAGS[i].flag;
            continue;
        }
        int n = snprintf(data + used, size - used, "%s%s", used ? "," : "", word);
        if (n < 0 || (size_t)n >= size - used)
            die("mount with options %s: too long", options);
        used += (size_t)n;
    }
    return flags;
}

static void mount_one(const char *source, const char *target, const char *type, const char *options)
{
    char data[512];
    unsigned long flags = split_options(options, data, sizeof data);
    if (mount(source, target, strcmp(type, "none") == 0 ? NULL : type, flags, data[0] ? data : NULL) != 0)
        die("mount %s on %s: %s", type, target, strerror(errno));
}

static void say_boot(const char *nonce)
{
    char uptime[64] = "";
    FILE *f = fopen("/proc/uptime", "r");
    if (f == NULL || fscanf(f, "%63s", uptime) != 1)
        die("read /proc/uptime: %s", strerror(errno));
    fclose(f);
    printf("@@ipv6compat %s boot %s\n", nonce, uptime);
    fflush(stdout);
}

static void mount_table(const char *fstab, const char *nonce)
{
    char line[1024], source[256], target[256], type[64], options[512];
    FILE *f = fopen(fstab, "r");
    if (f == NULL)
        die("open %s: %s", fstab, strerror(errno));
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%255s %255s %63s %511s", source, target, type, options) != 4)
            continue;
        mount_one(source, target, type, options);
        if (strcmp(target, "/proc") == 0)
            say_boot(nonce);
    }
    fclose(f);
}

/* The NAME.* words of the kernel command line for module NAME ('-' and '_' alike), without the
 * prefix, space separated. */
static void module_parameters(const char *cmdline, const char *name, char *out, size_t size)
{
    char copy[4096];
    size_t used = 0, len = strlen(name);
    snprintf(copy, sizeof copy, "%s", cmdline);
    out[0] = '\0';
    for (char *save = NULL, *word = strtok_r(copy, " \n", &save); word; word = strtok_r(NULL, " \n", &save)) {
        size_t i;
        for (i = 0; i < len && word[i] && (word[i] == name[i] || (strchr("-_", word[i]) && strchr("-_", name[i])));
             i++)
            ;
        if (i < len || word[len] != '.')
            continue;
        int k = snprintf(out + used, size - used, "%s%s", used ? " " : "", word + len + 1);
        if (k < 0 || (size_t)k >= size - used)
            die("load %s: its parameters on the kernel command line are too long", name);
        used += (size_t)k;
    }
}

static void load_modules(const char *list)
{
    char cmdline[4096], line[256], path[512], params[1024];
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, cmdline, sizeof cmdline - 1);
    if (n < 0)
        die("read /proc/cmdline: %s", strerror(errno));
    close(fd);
    cmdline[n] = '\0';
    FILE *f = fopen(list, "re");
    if (f == NULL)
        die("open %s: %s", list, strerror(errno));
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0')
            continue;
        snprintf(path, sizeof path, "%s/%s", PROBE, line);
        char *dot = strstr(line, ".ko");
        if (dot)
            *dot = '\0';
        module_parameters(cmdline, line, params, sizeof params);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || syscall(SYS_finit_module, fd, params, 0) != 0)
            die("load %s: %s", path, strerror(errno));
        close(fd);
    }
    fclose(f);
}

static void loopback_up(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) != 0)
        die("bring lo up: %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
        die("bring lo up: %s", strerror(errno));
    close(fd);
}

/* Each line "FIRST REST" of the file at PATH, split at its first space, to EACH with ROOT (a line without a
 * space is skipped): the tables the plugin writes for umlsetup (sysctls, the cell's mounts, confine). */
static void each_pair(const char *path, const char *root, void (*each)(const char *root, char *first, char *rest))
{
    char line[4096];
    FILE *f = fopen(path, "re");
    if (f == NULL)
        die("open %s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *rest = strchr(line, ' ');
        if (rest == NULL)
            continue;
        *rest++ = '\0';
        each(root, line, rest);
    }
    fclose(f);
}

/* "PATH VALUE": VALUE written to PATH. */
static void set_sysctl(const char *root, char *path, char *value)
{
    (void)root;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0)
        die("set %s to %s: %s", path, value, strerror(errno));
    close(fd);
}

static void make_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        die("make %s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            die("make %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        die("make %s: %s", buf, strerror(errno));
}

/* "SOURCE DEST" of the cell's mounts: SOURCE bound read-only at ROOT/DEST (made like SOURCE). */
static void read_only_bind(const char *root, char *source, char *dest)
{
    char at[4096];
    struct stat st;
    if (*dest == '\0')
        return;
    if (stat(source, &st) != 0)
        die("mount %s: %s: %s", dest, source, strerror(errno));
    if (snprintf(at, sizeof at, "%s%s", root, dest) >= (int)sizeof at)
        die("mount %s: path too long", dest);
    if (S_ISDIR(st.st_mode)) {
        make_dirs(at);
    } else {
        char *slash = strrchr(at, '/');
        *slash = '\0';
        make_dirs(at);
        *slash = '/';
        int fd = open(at, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            die("mount %s: %s", dest, strerror(errno));
        close(fd);
    }
    if (mount(source, at, NULL, MS_BIND, NULL) != 0 ||
        mount(NULL, at, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
        die("mount %s: %s", dest, strerror(errno));
}

/* What an engine confines a container with, read from the probe (uml_rootfs.py writes each file). */
static size_t read_all(const char *path, void *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, size);
    if (n < 0 || (size_t)n == size || n % 8 != 0)
        die("read %s: %s", path, n < 0 ? strerror(errno) : "not a whole program of at most 64 KB");
    close(fd);
    return (size_t)n;
}

/* Docker's read-only and masked paths: "ro PATH" binds ROOT/PATH read-only on itself; "mask PATH" hides it (a
 * file under /dev/null, a directory under an empty read-only tmpfs). A PATH the guest does not have is left alone. */
static void confine_path(const char *root, char *how, char *path)
{
    char at[4096];
    struct stat st;
    if (snprintf(at, sizeof at, "%s%s", root, path) >= (int)sizeof at)
        die("confine %s: path too long", path);
    if (stat(at, &st) != 0)
        return;
    int failed;
    if (strcmp(how, "ro") == 0)
        failed = mount(at, at, NULL, MS_BIND | MS_REC, NULL) != 0 ||
                 mount(NULL, at, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0;
    else if (S_ISDIR(st.st_mode))
        failed = mount("tmpfs", at, "tmpfs", MS_RDONLY, NULL) != 0;
    else
        failed = mount(PROBE "/dev/null", at, NULL, MS_BIND, NULL) != 0;
    if (failed)
        die("%s %s: %s", strcmp(how, "ro") == 0 ? "make read-only" : "mask", path, strerror(errno));
}

/* The engine's device cgroup: PROGRAM (a cgroup device program) attached to the cell's cgroup. */
static void device_filter(const char *program, const char *cgroup)
{
    static unsigned char insns[65536];
    size_t size = read_all(program, insns, sizeof insns);
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (unsigned long)insns;
    attr.insn_cnt = (unsigned)(size / 8);
    attr.license = (unsigned long)"GPL";
    int prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    if (prog < 0)
        die("load the device filter %s: %s", program, strerror(errno));
    int group = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (unsigned)group;
    attr.attach_bpf_fd = (unsigned)prog;
    attr.attach_type = BPF_CGROUP_DEVICE;
    if (group < 0 || syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof attr) != 0)
        die("attach the device filter to %s: %s", cgroup, strerror(errno));
    close(group);
    close(prog);
}

static void write_file(const char *path, const char *value, int required)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : write(fd, value, strlen(value));
    if (n < 0 && required)
        die("make the cell's cgroup: write %s to %s: %s", value, path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static int numeric(const char *text, unsigned long *out)
{
    char *end;
    if (text[0] < '0' || text[0] > '9')
        return 0;
    errno = 0;
    *out = strtoul(text, &end, 10);
    return *end == '\0' && errno == 0 && *out <= 0xfffffffeUL;
}

/* Split a colon-separated line in place into at most n fields; the count found. */
static int split(char *line, char **out, int n)
{
    int count = 0;
    line[strcspn(line, "\n")] = '\0';
    for (char *p = line; count < n; count++) {
        out[count] = p;
        p = strchr(p, ':');
        if (p == NULL)
            return count + 1;
        *p++ = '\0';
    }
    return count;
}

static void refuse(const char *what, const char *name, const char *file)
{
    fprintf(stderr, "unable to find %s %s: no matching entries in %s file\n", what, name, file);
    exit(126);
}

/* The capabilities Docker gives a container unless told otherwise (Podman gives a subset). */
static const int ENGINE_CAPS[] = {
    CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID,
    CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
};

static void bound_capabilities(void)
{
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
        int kept = 0;
        for (size_t i = 0; i < sizeof ENGINE_CAPS / sizeof ENGINE_CAPS[0]; i++)
            kept |= ENGINE_CAPS[i] == cap;
        if (!kept && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            die("drop capability %d from the bounding set: %s", cap, strerror(errno));
    }
}

static unsigned char seccomp[65536]; /* the project's profile, compiled (read before the chroot) */
static size_t seccomp_size;

static int exec_as(const char *spec, char **argv)
{
    char user[256], line[4096], home[1024] = "/", name[256] = "";
    const char *group = NULL;
    unsigned long uid = 0, gid = 0, want;
    gid_t groups[64];
    int ngroups = 0, found = 0;
    if (snprintf(user, sizeof user, "%s", spec) >= (int)sizeof user)
        refuse("user", spec, "passwd");
    char *colon = strchr(user, ':');
    if (colon) {
        *colon = '\0';
        group = colon + 1;
    }
    int by_uid = numeric(user, &want);
    FILE *f = fopen("/etc/passwd", "re");
    while (f && !found && fgets(line, sizeof line, f)) {
        char *w[7]; /* name, password, uid, gid, gecos, home, shell */
        int n = split(line, w, 7);
        if (n < 4 || !numeric(w[2], &uid))
            continue;
        if (by_uid ? uid != want : strcmp(w[0], user) != 0)
            continue;
        snprintf(name, sizeof name, "%s", w[0]);
        if (!numeric(w[3], &gid))
            gid = 0;
        if (n > 5 && *w[5])
            snprintf(home, sizeof home, "%s", w[5]);
        found = 1;
    }
    if (f)
        fclose(f);
    if (!found) {
        if (!by_uid)
            refuse("user", user, "passwd");
        uid = want;
        gid = 0;
    }
    int group_found = group == NULL;
    int by_gid = group != NULL && numeric(group, &want);
    f = (group != NULL || found) ? fopen("/etc/group", "re") : NULL;
    while (f && fgets(line, sizeof line, f)) {
        char *w[4]; /* name, password, gid, members */
        unsigned long id;
        int n = split(line, w, 4);
        if (n < 3 || !numeric(w[2], &id))
            continue;
        if (group != NULL) {
            if (!group_found && (by_gid ? id == want : strcmp(w[0], group) == 0)) {
                gid = id;
                group_found = 1;
            }
            continue;
        }
        for (char *save = NULL, *m = n > 3 ? strtok_r(w[3], ",", &save) : NULL; m; m = strtok_r(NULL, ",", &save))
            if (strcmp(m, name) == 0 && ngroups < 63)
                groups[ngroups++] = (gid_t)id;
    }
    if (f)
        fclose(f);
    if (!group_found) {
        if (!by_gid)
            refuse("group", group, "group");
        gid = want;
    }
    /* The primary group first, then the others (what a container's process gets from runc). */
    memmove(groups + 1, groups, sizeof groups[0] * (size_t)ngroups);
    groups[0] = (gid_t)gid;
    ngroups++;
    for (int i = 1; i < ngroups; i++)
        if (groups[i] == groups[0])
            groups[i--] = groups[--ngroups];
    if (getenv("HOME") == NULL)
        setenv("HOME", home, 1);
    bound_capabilities();
    /* umlsetup --as: the seccomp filter last but for the identity, while root may load it without no_new_privs
     * (which an engine does not set either). podsetup, in a container, has its runtime's filter already. */
    struct sock_fprog filter = {.len = (unsigned short)(seccomp_size / 8), .filter = (struct sock_filter *)seccomp};
    if (seccomp_size > 0 && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) != 0)
        die("load the seccomp filter: %s", strerror(errno));
    if (setgroups((size_t)ngroups, groups) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0)
        die("become %s: %s", spec, strerror(errno));
    execv(argv[0], argv);
    die("exec %s: %s", argv[0], strerror(errno));
    return 1;
}

#include "pod_net.c"

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "--as") == 0 && strcmp(argv[3], "--root") == 0) {
        seccomp_size = read_all(PROBE "/seccomp.bpf", seccomp, sizeof seccomp);
        if (chroot(argv[4]) != 0 || chdir("/") != 0)
            die("enter %s: %s", argv[4], strerror(errno));
        return exec_as(argv[2], argv + 5);
    }
    if (argc < 10) {
        fputs("usage: umlsetup NONCE FSTAB ROOT MOUNTS READ_ONLY PIDS MEMORY CPU_MAX POD [PATH:OPTIONS ...]\n",
              stderr);
        return 2;
    }
    const char *root = argv[3];
    char at[4096];
    mount_table(argv[2], argv[1]);
    load_modules(PROBE "/modules");
    loopback_up();
    each_pair(PROBE "/sysctls", "", set_sysctl);
    if (strcmp(argv[9], "-") != 0)
        make_pod(argv[9]);
    each_pair(argv[4], root, read_only_bind);
    for (int i = 10; i < argc; i++) {
        char *colon = strchr(argv[i], ':');
        if (colon == NULL)
            die("mount tmpfs %s: no options after the path", argv[i]);
        *colon = '\0';
        if (snprintf(at, sizeof at, "%s%s", root, argv[i]) >= (int)sizeof at)
            die("mount tmpfs at %s: path too long", argv[i]);
        make_dirs(at);
        mount_one("tmpfs", at, "tmpfs", colon + 1);
    }
    each_pair(PROBE "/confine", root, confine_path);
    if (strcmp(argv[5], "1") == 0 && mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
        die("make the root read-only: %s", strerror(errno));
    write_file("/sys/fs/cgroup/cgroup.subtree_control", "+pids +memory +cpu", 1);
    if (mkdir("/sys/fs/cgroup/cell", 0755) != 0)
        die("make the cell's cgroup: %s", strerror(errno));
    device_filter(PROBE "/devices.bpf", "/sys/fs/cgroup/cell");
    write_file("/sys/fs/cgroup/cell/pids.max", argv[6], 1);
    write_file("/sys/fs/cgroup/cell/memory.max", argv[7], 1);
    write_file("/sys/fs/cgroup/cell/memory.swap.max", "0", 0); /* absent without swap accounting */
    write_file("/sys/fs/cgroup/cell/cpu.max", argv[8], 1);
    return 0;
}
