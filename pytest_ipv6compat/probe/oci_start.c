/* ocistart: start an oci cell's container in a mount namespace of its own (host side of the oci backend,
 * backends/oci.py), in one program rather than unshare, sh, umount and mount started in turn (~9 ms a cell).
 *
 *   ocistart CELL LOWER HIDE RUNTIME ID
 *
 * In order:
 *   1. a new mount namespace, every mount in it private: nothing mounted here reaches the host, and all of it
 *      goes when the namespace's last process (the runtime) ends;
 *   2. unless HIDE is "", HIDE is unmounted (lazily) in this namespace only: the cgroup2 mount of a hybrid
 *      cgroup layout, which crun 1.8 refuses to run beside cgroup v1;
 *   3. the cell's overlay is mounted at CELL/rootfs: LOWER (the image's root, read-only) under CELL/upper;
 *   4. RUNTIME run --bundle CELL ID is exec'd: the container runs in the foreground, and this process's exit
 *      status is the runtime's (the target's).
 * A step that fails is one line on stderr ("ocistart: cannot ...: why") and exit status 125, the status a
 * container engine gives when it could not run the container. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static int fail(const char *what, const char *path) {
    fprintf(stderr, "ocistart: cannot %s%s%s: %s\n", what, path ? " " : "", path ? path : "", strerror(errno));
    return 125;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: ocistart CELL LOWER HIDE RUNTIME ID\n");
        return 125;
    }
    const char *cell = argv[1], *lower = argv[2], *hide = argv[3], *runtime = argv[4], *id = argv[5];
    char rootfs[4096], options[4096];
    if (snprintf(rootfs, sizeof rootfs, "%s/rootfs", cell) >= (int)sizeof rootfs ||
        snprintf(options, sizeof options, "lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, cell, cell) >=
            (int)sizeof options) {
        errno = ENAMETOOLONG;
        return fail("mount the overlay at", cell);
    }
    if (unshare(CLONE_NEWNS) != 0)
        return fail("make a mount namespace", NULL);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return fail("make the mounts private", NULL);
    if (*hide && umount2(hide, MNT_DETACH) != 0)
        return fail("unmount", hide);
    if (mount("overlay", rootfs, "overlay", 0, options) != 0)
        return fail("mount the overlay at", rootfs);
    char *const run[] = {(char *)runtime, "run", "--bundle", (char *)cell, (char *)id, NULL};
    execv(runtime, run);
    return fail("run", runtime);
}
