/* ocienter: start a program in a running oci cell's container as `crun exec --user UID:GID --env ...` does, without
 * starting the runtime (host side of the oci backend, backends/oci_run.py: the watcher's launch, ~25 ms of crun less).
 *
 *   ocienter CGROUP SECCOMP CAPS UID:GID [--env NAME=VALUE]... -- PROGRAM [ARG...]
 *
 *   CGROUP   the container's cgroup, relative to each hierarchy's mount (ipv6compat/SESSION/N/c)
 *   SECCOMP  the container's compiled seccomp program: the file `crun exec` loads (RUNDIR/ID/seccomp.bpf)
 *   CAPS     the container's capability sets as config.json's process.capabilities names them,
 *            BOUNDING/EFFECTIVE/PERMITTED, each comma-separated (none inheritable or ambient, as there)
 *   UID:GID  the user, as `crun exec --user UID:GID` (no supplementary groups)
 *   --env    the program's whole environment, as `crun exec --env` (plus HOME from the container's /etc/passwd
 *            when none is given, "/" if the uid has no entry)
 *   PROGRAM  an absolute path in the container
 *
 * What crun 1.8.1 does (src/libcrun/container.c, linux.c, seccomp.c), in its order:
 *   1. the container's init: the process of CGROUP whose NSpid is "PID 1", pinned by a pidfd; its status and
 *      cgroup are read after the pidfd was taken and the pidfd is signalled (0) after they were read, so what was
 *      read was that process (a pid reused meanwhile fails the check: it is the init that has gone);
 *   2. this process (the launcher) is a child subreaper, not dumpable, and forks a helper that joins CGROUP in
 *      every hierarchy where it exists (as crun does, by path; not the launcher: it stays out of the container's
 *      pids and memory accounting), then every namespace of the init that differs from its own (setns on the
 *      pidfd: mount, pid, net, ipc, uts, cgroup, time), starts a session and forks the program's process, which is
 *      thereby in the container's pid namespace and cgroups, and exits;
 *   3. the program's process: cwd "/", no signal blocked, the environment above, every fd from 3 closed at exec,
 *      the seccomp program loaded with SECCOMP_FILTER_FLAG_SPEC_ALLOW (config.json gives no flags; without the
 *      flag if the kernel refuses it) while still privileged (noNewPrivileges is false), no supplementary groups,
 *      stdin, stdout and stderr chowned to the user if they are pipes or sockets (crun chowns any that is not a
 *      tty; a device is left alone here, see below), the bounding set cut to BOUNDING, then the uid and gid, then
 *      EFFECTIVE and PERMITTED (none inheritable), ambient cleared, umask 022, exec. No rlimit is set (`crun exec`
 *      sets none without a process file): they are the launcher's.
 * crun also chowns a std stream that is a character device (its fchown of the plugin's /dev/null, the host's, to
 * the user): not done here, the only intended difference.
 *
 * The launcher waits for the program (and its helper) and exits with the program's status (128+N for a signal).
 * A step that fails is one line on stderr ("ocienter: cannot ...: why"), nothing on stdout, and status 125; an init
 * that has ended says "the container's init is gone". If the container ends, the program dies with its pid
 * namespace. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define FAILED 125
#define MAX_ENV 64
#define MAX_PROGRAM (1 << 20)

static const char *cgroup, *seccomp_path, *caps_arg;
static char **env;
static int n_env;
static uid_t uid;
static gid_t gid;

static int fail(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(2, "ocienter: %s\n", line);
    return FAILED;
}

/* ------------------------------------------------------------ capabilities by name */

#define CAP(name) {#name, name}
static const struct {
    const char *name;
    int value;
} cap_names[] = {
    CAP(CAP_CHOWN), CAP(CAP_DAC_OVERRIDE), CAP(CAP_DAC_READ_SEARCH), CAP(CAP_FOWNER), CAP(CAP_FSETID),
    CAP(CAP_KILL), CAP(CAP_SETGID), CAP(CAP_SETUID), CAP(CAP_SETPCAP), CAP(CAP_LINUX_IMMUTABLE),
    CAP(CAP_NET_BIND_SERVICE), CAP(CAP_NET_BROADCAST), CAP(CAP_NET_ADMIN), CAP(CAP_NET_RAW), CAP(CAP_IPC_LOCK),
    CAP(CAP_IPC_OWNER), CAP(CAP_SYS_MODULE), CAP(CAP_SYS_RAWIO), CAP(CAP_SYS_CHROOT), CAP(CAP_SYS_PTRACE),
    CAP(CAP_SYS_PACCT), CAP(CAP_SYS_ADMIN), CAP(CAP_SYS_BOOT), CAP(CAP_SYS_NICE), CAP(CAP_SYS_RESOURCE),
    CAP(CAP_SYS_TIME), CAP(CAP_SYS_TTY_CONFIG), CAP(CAP_MKNOD), CAP(CAP_LEASE), CAP(CAP_AUDIT_WRITE),
    CAP(CAP_AUDIT_CONTROL), CAP(CAP_SETFCAP), CAP(CAP_MAC_OVERRIDE), CAP(CAP_MAC_ADMIN), CAP(CAP_SYSLOG),
    CAP(CAP_WAKE_ALARM), CAP(CAP_BLOCK_SUSPEND), CAP(CAP_AUDIT_READ), CAP(CAP_PERFMON), CAP(CAP_BPF),
    CAP(CAP_CHECKPOINT_RESTORE),
};

/* One comma-separated list of names (from *text up to '/' or the end) as a 64-bit mask; -1 and a line if a name
 * is unknown (crun warns and skips one; the plugin writes every name it passes, so an unknown one is a bug). */
static int parse_caps(const char **text, unsigned long long *mask) {
    *mask = 0;
    const char *p = *text;
    while (*p && *p != '/') {
        size_t len = strcspn(p, ",/");
        int found = 0;
        for (size_t i = 0; i < sizeof cap_names / sizeof cap_names[0]; i++)
            if (strlen(cap_names[i].name) == len && !memcmp(cap_names[i].name, p, len)) {
                *mask |= 1ULL << cap_names[i].value;
                found = 1;
            }
        if (!found && len) {
            fail("cannot read the capability %.*s in CAPS %s: no such capability", (int)len, p, caps_arg);
            return -1;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    *text = *p == '/' ? p + 1 : p;
    return 0;
}

/* ------------------------------------------------------------ the container's init */

static int read_file(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t have = 0;
    ssize_t n;
    while (have < size - 1 && (n = read(fd, buf + have, size - 1 - have)) > 0)
        have += (size_t)n;
    close(fd);
    buf[have] = 0;
    return n < 0 ? -1 : (int)have;
}

/* Is /proc/PID/status's NSpid "PID 1" (the init of a pid namespace one level below this one), and is PID in
 * CGROUP in some hierarchy? */
static int is_init(pid_t pid) {
    char path[64], text[8192];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (read_file(path, text, sizeof text) < 0)
        return 0;
    char *line = strstr(text, "\nNSpid:");
    if (!line)
        return 0;
    long outer, inner;
    char rest;
    if (sscanf(line + 7, " %ld %ld%c", &outer, &inner, &rest) != 3 || rest != '\n' || outer != pid || inner != 1)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/cgroup", pid);
    if (read_file(path, text, sizeof text) < 0)
        return 0;
    char want[4200];
    snprintf(want, sizeof want, ":/%s\n", cgroup);
    return strstr(text, want) != NULL;
}

/* The cgroup mounts' points, from /proc/self/mountinfo (field 5; the type after " - "). */
static int hierarchies(char points[][512], int max) {
    static char text[65536];
    if (read_file("/proc/self/mountinfo", text, sizeof text) < 0)
        return -1;
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        char point[512], type[64];
        char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %*s %511s", point) != 1 || sscanf(dash + 3, "%63s", type) != 1)
            continue;
        if (!strcmp(type, "cgroup") || !strcmp(type, "cgroup2"))
            snprintf(points[n++], 512, "%s", point);
    }
    return n;
}

/* The init, pinned: its pidfd (and pid), or -1 after a line. */
static int find_init(char points[][512], int n_points, pid_t *init) {
    for (int i = 0; i < n_points; i++) {
        char path[1200];
        static char procs[65536];
        snprintf(path, sizeof path, "%s/%s/cgroup.procs", points[i], cgroup);
        if (read_file(path, procs, sizeof procs) < 0)
            continue;
        for (char *word = strtok(procs, "\n"); word; word = strtok(NULL, "\n")) {
            pid_t pid = (pid_t)atol(word);
            int fd = (int)syscall(SYS_pidfd_open, pid, 0);
            if (fd < 0)
                continue; /* gone meanwhile */
            if (is_init(pid) && syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == 0) {
                *init = pid;
                return fd;
            }
            close(fd);
        }
        break; /* every hierarchy holds the same processes: the first readable one decides */
    }
    fail("the container's init is gone: no live process of cgroup %s is its pid namespace's PID 1", cgroup);
    return -1;
}

/* The namespaces of the init that differ from this process's, as setns() flags; -1 after a line. */
static int namespaces_of(pid_t init) {
    static const struct {
        const char *name;
        int flag;
    } kinds[] = {{"mnt", CLONE_NEWNS},    {"pid", CLONE_NEWPID},       {"net", CLONE_NEWNET},
                 {"ipc", CLONE_NEWIPC},   {"uts", CLONE_NEWUTS},       {"cgroup", CLONE_NEWCGROUP},
                 {"time", CLONE_NEWTIME}, {"user", CLONE_NEWUSER}};
    int flags = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char theirs[64], ours[64];
        struct stat a, b;
        snprintf(theirs, sizeof theirs, "/proc/%d/ns/%s", init, kinds[i].name);
        snprintf(ours, sizeof ours, "/proc/self/ns/%s", kinds[i].name);
        if (stat(ours, &b) != 0)
            continue; /* a kind this kernel does not have */
        if (stat(theirs, &a) != 0)
            return fail("the container's init is gone: cannot read %s: %s", theirs, strerror(errno)), -1;
        if (a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            continue;
        if (kinds[i].flag == CLONE_NEWUSER)
            return fail("cannot enter the container of cgroup %s: it has a user namespace (not supported)", cgroup),
                   -1;
        flags |= kinds[i].flag;
    }
    return flags;
}

/* ------------------------------------------------------------ the program's process */

/* HOME as crun's set_home_env: the first /etc/passwd entry (the container's) with this uid, else "/". */
static void set_home(void) {
    FILE *passwd = fopen("/etc/passwd", "re");
    char line[4096];
    while (passwd && fgets(line, sizeof line, passwd)) {
        char *field[7];
        int n = 0;
        char *p = line;
        line[strcspn(line, "\n")] = 0;
        for (; n < 7; n++) {
            field[n] = p;
            p = strchr(p, ':');
            if (!p)
                break;
            *p++ = 0;
        }
        if (n < 6)
            continue;
        char *end;
        unsigned long id = strtoul(field[2], &end, 10);
        if (*field[2] && !*end && id == uid) {
            setenv("HOME", field[5], 1);
            fclose(passwd);
            return;
        }
    }
    if (passwd)
        fclose(passwd);
    setenv("HOME", "/", 1);
}

static int program(char **argv, const struct sock_fprog *filter, const unsigned long long caps[3]) {
    if (chdir("/") != 0)
        return fail("cannot change to / in the container: %s", strerror(errno));
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    clearenv();
    for (int i = 0; i < n_env; i++)
        if (putenv(env[i]) != 0)
            return fail("cannot set the environment %s: %s", env[i], strerror(errno));
    if (!getenv("HOME"))
        set_home();
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        return fail("cannot close the launcher's descriptors: %s", strerror(errno));
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, filter) != 0 &&
        (errno != EINVAL || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) != 0))
        return fail("cannot load the seccomp program %s: %s", seccomp_path, strerror(errno));
    if (setgroups(0, NULL) != 0)
        return fail("cannot drop the supplementary groups: %s", strerror(errno));
    for (int fd = 0; fd < 3; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) && fchown(fd, uid, gid) != 0 &&
            errno != EINVAL && errno != EPERM && errno != EROFS)
            return fail("cannot chown the std stream %d to %u:%u: %s", fd, uid, gid, strerror(errno));
    }
    for (int cap = 0; cap < 64; cap++)
        if (!(caps[0] >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            return fail("cannot drop capability %d from the bounding set: %s", cap, strerror(errno));
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
        return fail("cannot keep the capabilities: %s", strerror(errno));
    if (setresgid(gid, gid, gid) != 0)
        return fail("cannot set the gid %u: %s", gid, strerror(errno));
    if (setresuid(uid, uid, uid) != 0)
        return fail("cannot set the uid %u: %s", uid, strerror(errno));
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {
        {(unsigned)caps[1], (unsigned)caps[2], 0}, {(unsigned)(caps[1] >> 32), (unsigned)(caps[2] >> 32), 0}};
    if (syscall(SYS_capset, &head, data) != 0)
        return fail("cannot set the capabilities: %s", strerror(errno));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL && errno != EPERM)
        return fail("cannot clear the ambient capabilities: %s", strerror(errno));
    umask(022);
    execv(argv[0], argv);
    return fail("cannot run %s in the container: %s", argv[0], strerror(errno));
}

/* ------------------------------------------------------------ the launcher */

int main(int argc, char **argv) {
    if (argc < 7)
        return fail("usage: ocienter CGROUP SECCOMP CAPS UID:GID [--env NAME=VALUE]... -- PROGRAM [ARG...]");
    cgroup = argv[1], seccomp_path = argv[2], caps_arg = argv[3];
    char *end;
    unsigned long u = strtoul(argv[4], &end, 10), g = *end == ':' ? strtoul(end + 1, &end, 10) : 0;
    if (end == argv[4] || *end || !strchr(argv[4], ':'))
        return fail("cannot read the user %s: not UID:GID", argv[4]);
    uid = (uid_t)u, gid = (gid_t)g;
    env = calloc(MAX_ENV + 1, sizeof *env);
    int i = 5;
    for (; i < argc && strcmp(argv[i], "--"); i += 2) {
        if (strcmp(argv[i], "--env") || i + 1 >= argc || !strchr(argv[i + 1], '=') || n_env == MAX_ENV)
            return fail("cannot read the argument %s: expected --env NAME=VALUE or --", argv[i]);
        env[n_env++] = argv[i + 1];
    }
    if (i + 1 >= argc || argv[i + 1][0] != '/')
        return fail("cannot read the program: expected -- and an absolute path");
    char **args = argv + i + 1;

    unsigned long long caps[3];
    const char *text = caps_arg;
    for (int set = 0; set < 3; set++)
        if (parse_caps(&text, &caps[set]) != 0)
            return FAILED;
    static char points[32][512];
    int n_points = hierarchies(points, 32);
    if (n_points < 0)
        return fail("cannot read /proc/self/mountinfo: %s", strerror(errno));
    pid_t init;
    int pidfd = find_init(points, n_points, &init); /* first: a container that has ended says so */
    if (pidfd < 0)
        return FAILED;
    int flags = namespaces_of(init);
    if (flags < 0)
        return FAILED;
    static char bpf[MAX_PROGRAM];
    int len = read_file(seccomp_path, bpf, sizeof bpf);
    if (len < 0)
        return fail("cannot read the seccomp program %s: %s", seccomp_path, strerror(errno));
    if (len == 0 || len % (int)sizeof(struct sock_filter))
        return fail("cannot read the seccomp program %s: %d bytes is not a program", seccomp_path, len);
    struct sock_fprog filter = {(unsigned short)(len / (int)sizeof(struct sock_filter)), (struct sock_filter *)bpf};

    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        return fail("cannot be a child subreaper: %s", strerror(errno));
    if (prctl(PR_SET_DUMPABLE, 0) != 0) /* as crun: the environment (the channel's key) is not readable in /proc */
        return fail("cannot make the launcher not dumpable: %s", strerror(errno));
    pid_t helper = fork();
    if (helper < 0)
        return fail("cannot fork: %s", strerror(errno));
    if (helper == 0) {
        for (int h = 0; h < n_points; h++) {
            char path[1200];
            snprintf(path, sizeof path, "%s/%s/cgroup.procs", points[h], cgroup);
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd < 0 && errno == ENOENT)
                continue; /* a hierarchy the container has no cgroup in (crun's: the hidden cgroup2 mount) */
            if (fd < 0 || write(fd, "0", 1) != 1)
                _exit(fail("cannot join the cgroup %s: %s", path, strerror(errno)));
            close(fd);
        }
        if (setns(pidfd, flags) != 0)
            _exit(fail("the container's init is gone: cannot enter the namespaces of pid %d: %s", init,
                       strerror(errno)));
        if (setsid() < 0)
            _exit(fail("cannot start a session: %s", strerror(errno)));
        pid_t child = fork();
        if (child < 0) /* ENOMEM: the pid namespace's init has ended */
            _exit(fail("the container's init is gone: cannot fork into its pid namespace: %s", strerror(errno)));
        if (child == 0)
            _exit(program(args, &filter, caps));
        _exit(0);
    }
    close(pidfd);
    int code = FAILED, status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, 0)) > 0 || errno == EINTR) {
        if (pid <= 0)
            continue;
        int exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        if (pid == helper) {
            if (exit_code != 0)
                code = FAILED; /* it said why */
        } else {
            code = exit_code; /* the program: the only other process that can be this one's child */
        }
    }
    return code;
}
