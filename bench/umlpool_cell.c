/* bench/umlpool_spike.py's per-cell launcher and attack helper (a measurement, not the plugin's code).
 *
 * Static, run inside a User-mode Linux kernel booted once for several cells.
 *
 *   umlpool_cell boot
 *       Once per kernel, from init: cgroup2 at /sys/fs/cgroup, the group "cells", and on it a
 *       BPF_PROG_TYPE_CGROUP_DEVICE program that allows mknod of any node and read/write of the nodes a
 *       container engine allows by default (null, zero, full, random, urandom, tty, console, ptmx,
 *       the pts) and refuses every other device (/dev/kmsg among them) with EPERM.
 *   umlpool_cell cell plain|isolated HOLD CMD...
 *       One cell (with HOLD > 0, the spike's: CMD's output to /dev/null, HOLD seconds idle, then
 *       "listening N", the listeners on :56000; with HOLD 0, until CMD exits): new mount, pid, net, ipc and uts namespaces, a tmpfs upper layer and an overlay of "/"
 *       at /.ipv6compat/r, its own /proc and /dev/shm, lo up and the engine's two network sysctls; waits
 *       for CMD (as pid 1's child of the new pid namespace, root with Docker's default capabilities),
 *       then kills everything left in the pid namespace and exits; the mount namespace and all its
 *       mounts go with it. "plain" enters the overlay with chroot, as the spike's busybox cells do;
 *       "isolated" closes the four gaps of the spike:
 *         1. pivot_root into the overlay (after a recursive bind of the initramfs made the current root
 *            a mount with a parent: pivot_root refuses rootfs itself) and the old root detached;
 *         2. the cell joins /sys/fs/cgroup/cells (the device program of "boot");
 *         3. /proc/sys bound read-only (and /proc/sysrq-trigger), after the network sysctls are set;
 *         4. a seccomp filter: keyctl, add_key and request_key fail with EPERM.
 *   umlpool_cell attack escape|addkey|haskey|keyctl|rootfs-pivot
 *       What a root target tries (escape: chroot out of the cell and leave /ipv6compat-escaped at the root
 *       it reaches; addkey: a key in the user's keyring; haskey: is it there; keyctl: the keyring's id);
 *       rootfs-pivot (init's, not a target's): pivot_root onto a tmpfs in a new mount namespace whose root
 *       is the initramfs itself.
 *       One line each: "NAME ok ..." or "NAME refused: ERROR".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define P "/.ipv6compat"
#define R P "/r"
#define CELLS "/sys/fs/cgroup/cells"

static void die(const char *what)
{
    fprintf(stderr, "umlpool_cell: cannot %s: %s\n", what, strerror(errno));
    exit(111);
}

static void put(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0)
        die(path);
    close(fd);
}

/* eBPF instructions, written out (the kernel's helper macros are not in its uapi headers). */
#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LDX_W(d, s, o) INSN(BPF_LDX | BPF_MEM | BPF_W, d, s, o, 0)
#define MOV_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define AND_K(d, i) INSN(BPF_ALU64 | BPF_AND | BPF_K, d, 0, 0, i)
#define RSH_K(d, i) INSN(BPF_ALU64 | BPF_RSH | BPF_K, d, 0, 0, i)
#define MOV_K(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define JEQ_K(d, i, o) INSN(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define JNE_K(d, i, o) INSN(BPF_JMP | BPF_JNE | BPF_K, d, 0, o, i)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* Char devices the cell may read and write: major, minor (-1: any). */
static const int ALLOWED[][2] = {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 1}, {5, 2}, {136, -1}};
#define NALLOWED (int)(sizeof ALLOWED / sizeof ALLOWED[0])

static int device_program(void)
{
    struct bpf_insn prog[8 + 3 * NALLOWED + 4];
    int n = 0;
    /* r1: struct bpf_cgroup_dev_ctx {u32 access_type (access << 16 | type); u32 major; u32 minor} */
    prog[n++] = LDX_W(2, 1, 0);
    prog[n++] = MOV_REG(3, 2);
    prog[n++] = AND_K(3, 0xffff);  /* r3: BPF_DEVCG_DEV_BLOCK / _CHAR */
    prog[n++] = RSH_K(2, 16);      /* r2: BPF_DEVCG_ACC_MKNOD / _READ / _WRITE */
    prog[n++] = LDX_W(4, 1, 4);    /* major */
    prog[n++] = LDX_W(5, 1, 8);    /* minor */
    int allow_jumps[1 + NALLOWED], nj = 0;
    allow_jumps[nj++] = n;
    prog[n++] = JEQ_K(2, BPF_DEVCG_ACC_MKNOD, 0); /* mknod alone: allowed for any node (open is what counts) */
    int to_deny = n;
    prog[n++] = JNE_K(3, BPF_DEVCG_DEV_CHAR, 0);
    for (int i = 0; i < NALLOWED; i++) {
        if (ALLOWED[i][1] < 0) {
            allow_jumps[nj++] = n;
            prog[n++] = JEQ_K(4, ALLOWED[i][0], 0);
        } else {
            prog[n++] = JNE_K(4, ALLOWED[i][0], 1);
            allow_jumps[nj++] = n;
            prog[n++] = JEQ_K(5, ALLOWED[i][1], 0);
        }
    }
    int deny = n;
    prog[n++] = MOV_K(0, 0);
    prog[n++] = EXIT();
    int allow = n;
    prog[n++] = MOV_K(0, 1);
    prog[n++] = EXIT();
    for (int i = 0; i < nj; i++)
        prog[allow_jumps[i]].off = (short)(allow - allow_jumps[i] - 1);
    prog[to_deny].off = (short)(deny - to_deny - 1);

    static char log[65536];
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (unsigned long)prog;
    attr.insn_cnt = (unsigned)n;
    attr.license = (unsigned long)"GPL";
    attr.log_buf = (unsigned long)log;
    attr.log_size = sizeof log;
    attr.log_level = 1;
    int fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    if (fd < 0) {
        fprintf(stderr, "%s\n", log);
        die("load the device program (bpf BPF_PROG_LOAD)");
    }
    return fd;
}

static int boot(void)
{
    if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL) != 0 && errno != EBUSY)
        die("mount cgroup2");
    if (mkdir(CELLS, 0755) != 0 && errno != EEXIST)
        die("make " CELLS);
    int prog = device_program();
    int group = open(CELLS, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (group < 0)
        die("open " CELLS);
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (unsigned)group;
    attr.attach_bpf_fd = (unsigned)prog;
    attr.attach_type = BPF_CGROUP_DEVICE;
    if (syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof attr) != 0)
        die("attach the device program to " CELLS);
    printf("boot: device program attached to %s\n", CELLS);
    return 0;
}

static void keys_filter(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_keyctl, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_add_key, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_request_key, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    /* No no_new_privs: this process holds CAP_SYS_ADMIN here, as a runtime does before it drops it. */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        die("install the seccomp filter");
}

static const int ENGINE_CAPS[] = {
    CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID,
    CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
};

static void engine_caps(void)
{
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
        int kept = 0;
        for (size_t i = 0; i < sizeof ENGINE_CAPS / sizeof ENGINE_CAPS[0]; i++)
            kept |= ENGINE_CAPS[i] == cap;
        if (!kept && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            die("drop a capability");
    }
}

static void lo_up(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) != 0)
        die("read lo");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
        die("bring lo up");
    close(fd);
}

static void enter_plain(void)
{
    if (chroot(R) != 0 || chdir("/") != 0)
        die("chroot into the overlay");
}

static void enter_isolated(void)
{
    /* pivot_root needs the current root to be a mount with a parent; the initramfs (rootfs) has none. A
     * recursive bind of it moved onto "/" and entered is one; the cell's overlay comes with it. */
    if (mount("/", P "/top", NULL, MS_BIND | MS_REC, NULL) != 0)
        die("bind the initramfs");
    if (umount2(R, MNT_DETACH) != 0) /* the original: only the copy under top stays */
        die("detach the overlay's first mount");
    if (chdir(P "/top") != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0)
        die("move the bind onto /");
    if (chdir(R) != 0 || syscall(SYS_pivot_root, ".", ".") != 0)
        die("pivot_root into the overlay");
    if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
        die("detach the old root");
}

static int listening(void)
{
    char line[512];
    int n = 0;
    FILE *f = fopen("/proc/net/tcp", "re");
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, ":DAC0 00000000:0000 0A") != NULL;
    if (f)
        fclose(f);
    return n;
}

static int cell(int isolated, double hold, char **argv)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) != 0)
        die("unshare");
    pid_t leader = fork();
    if (leader < 0)
        die("fork");
    if (leader > 0) {
        int status;
        while (waitpid(leader, &status, 0) < 0 && errno == EINTR)
            ;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    /* pid 1 of the cell */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        die("make the mounts private");
    if (mount("t", P "/c", "tmpfs", 0, "mode=0700") != 0 || mkdir(P "/c/u", 0755) != 0 ||
        mkdir(P "/c/w", 0700) != 0)
        die("make the upper layer");
    if (mount("o", R, "overlay", 0, "lowerdir=/,upperdir=" P "/c/u,workdir=" P "/c/w") != 0)
        die("mount the overlay");
    if (mount("proc", R "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        die("mount proc");
    if (mount("shm", R "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=65536k") != 0)
        die("mount /dev/shm");
    lo_up();
    put(R "/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
    put(R "/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    if (isolated) {
        static const char *const RO[] = {R "/proc/sys", R "/proc/sysrq-trigger"};
        for (size_t i = 0; i < sizeof RO / sizeof RO[0]; i++)
            if (mount(RO[i], RO[i], NULL, MS_BIND, NULL) != 0 ||
                mount(NULL, RO[i], NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      NULL) != 0)
                die("bind /proc/sys read-only");
        put(CELLS "/cgroup.procs", "0");
        /* init's own mounts, copied into this namespace: not the cell's */
        static const char *const HOST[] = {"/sys", "/proc", P "/dev", P "/c"};
        for (size_t i = 0; i < sizeof HOST / sizeof HOST[0]; i++)
            if (umount2(HOST[i], MNT_DETACH) != 0 && errno != EINVAL)
                die("detach init's mounts");
        enter_isolated();
    } else {
        enter_plain();
    }
    pid_t target = fork();
    if (target < 0)
        die("fork the target");
    if (target == 0) {
        if (hold > 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 1);
            dup2(null, 2);
        }
        if (isolated)
            keys_filter();
        engine_caps();
        execv(argv[0], argv);
        die("exec the target");
    }
    int status = 0;
    if (hold > 0) { /* the spike's cell: the hold (idle), the listeners on :56000, then the end */
        struct timespec t = {(time_t)hold, (long)((hold - (double)(time_t)hold) * 1e9)};
        while (nanosleep(&t, &t) != 0 && errno == EINTR)
            ;
        printf("listening %d\n", listening());
        kill(-1, SIGKILL);
        while (wait(NULL) > 0 || errno == EINTR)
            ;
        return 0;
    }
    for (;;) { /* pid 1: reap everything until the target has gone */
        pid_t got = wait(&status);
        if (got == target || (got < 0 && errno == ECHILD))
            break;
    }
    kill(-1, SIGKILL);
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define KEY_SPEC_USER_KEYRING -4

static int attack(const char *what)
{
    long r;
    if (strcmp(what, "keyctl") == 0) {
        r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, KEY_SPEC_USER_KEYRING, 1);
    } else if (strcmp(what, "addkey") == 0) {
        r = syscall(SYS_add_key, "user", "ipv6compat-left", "left", 4, KEY_SPEC_USER_KEYRING);
    } else if (strcmp(what, "haskey") == 0) {
        r = syscall(SYS_keyctl, 10 /* KEYCTL_SEARCH */, KEY_SPEC_USER_KEYRING, "user", "ipv6compat-left", 0);
        if (r < 0 && errno == ENOKEY) {
            printf("haskey no\n");
            return 0;
        }
    } else if (strcmp(what, "rootfs-pivot") == 0) {
        /* Why enter_isolated binds the initramfs first: pivot_root straight from rootfs, in a new mount namespace */
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
            die("unshare the mount namespace");
        if (mount("t", P "/c", "tmpfs", 0, NULL) != 0 || chdir(P "/c") != 0)
            die("mount a tmpfs");
        r = syscall(SYS_pivot_root, ".", ".");
    } else if (strcmp(what, "escape") == 0) {
        /* The chroot escape: a root below the current directory, then ".." until it stops moving. */
        struct stat here, up;
        if (mkdir("/tmp/ipv6compat-x", 0700) != 0 && errno != EEXIST)
            die("mkdir");
        if (chdir("/") != 0 || chroot("/tmp/ipv6compat-x") != 0) {
            printf("escape refused: %s\n", strerror(errno));
            return 0;
        }
        for (int i = 0; i < 256; i++) {
            if (stat(".", &here) != 0 || chdir("..") != 0 || stat(".", &up) != 0)
                die("climb");
            if (here.st_dev == up.st_dev && here.st_ino == up.st_ino)
                break;
        }
        if (chroot(".") != 0)
            die("chroot .");
        /* P/c/u: the cell's upper layer, on a tmpfs mounted in the initramfs, which the overlay does not show */
        int outside = access(P "/c/u", F_OK) == 0;
        int fd = open("/ipv6compat-escaped", O_WRONLY | O_CREAT, 0644);
        printf("escape %s: the root reached %s the initramfs%s\n", outside ? "ok" : "contained",
               outside ? "is" : "is the cell's overlay, not", fd >= 0 ? "; left /ipv6compat-escaped there" : "");
        return 0;
    } else {
        fprintf(stderr, "attack: unknown %s\n", what);
        return 2;
    }
    if (r < 0)
        printf("%s refused: %s\n", what, strerror(errno));
    else
        printf("%s ok %ld\n", what, r);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "boot") == 0)
        return boot();
    if (argc >= 5 && strcmp(argv[1], "cell") == 0)
        return cell(strcmp(argv[2], "isolated") == 0, atof(argv[3]), argv + 4);
    if (argc == 3 && strcmp(argv[1], "attack") == 0)
        return attack(argv[2]);
    fputs("usage: umlpool_cell boot | cell plain|isolated HOLD CMD... | attack escape|addkey|haskey|keyctl|rootfs-pivot\n", stderr);
    return 2;
}
