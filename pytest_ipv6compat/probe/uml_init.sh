#!/.ipv6compat/busybox sh
# pytest-ipv6compat init for User-mode Linux: PID 1 of a real kernel booted with
# the image's root filesystem as an initramfs. It does what a container engine
# would (proc, sys, a small /dev, lo up and the pod interface pod0 and nothing to the host, the cell's
# read-only mounts, tmpfs, a read-only root; /etc/hosts comes with the cell's archive), loads IPv6 as modprobe
# would on a Debian host (the module with the ipv6.* options of the kernel
# command line), then runs the same shim as every backend, in a chroot of the
# image, and the same watcher on the second console, a channel the target's
# output never reaches. When the target exits, its code goes on that channel
# and the kernel halts.
P=/.ipv6compat
BB=$P/busybox
R=$P/root
. $P/cell/settings.sh
export -p >$P/cell/inherited  # what the kernel gave init (HOME, TERM ...): not the target's
# TAG prefixes every line of the second console: a root target could make that device and write
# to it, but cannot know the tag, which lives only in this shell once the file is emptied.
: >$P/cell/settings.sh
# settings.sh: NONCE, TAG, KEY (the watcher's), TABLES (0/1), READ_ONLY (0/1), POD (the pod address, ADDRESS/PREFIX
# comma-separated, or -), TMPFS ("path:opts" words), PIDS, MEMORY, CPU_MAX, and as shell words quoted by the
# plugin: ENV (NAME=value), EXEC (working directory, user or "", nonce, --, the command) and WATCH
# (the watcher's arguments). Every exec costs 10-30 ms here, so the target is reached through as
# few as possible: a subshell of init (no exec) clears and sets the environment and joins the
# cell's cgroup, chroot, then one sh that enters the working directory and sources the shim,
# which execs the target.

# The set-up, all in one program (each exec costs 10-30 ms here; see uml_setup.c): proc, sysfs,
# cgroup2 and devtmpfs for this init, the image's root bound at $R with proc, a read-only sysfs,
# devpts and shm (fstab), the IPv6 module as a Debian host loads it (with the ipv6.* options of the
# kernel command line), lo up, the pod interface pod0 with POD (veth.ko), the cell's read-only mounts and tmpfs, a read-only root, and the
# cell's cgroup with its pids and memory limits. It prints the boot line as soon as /proc is there.
# The device nodes of the target's /dev come with the initramfs (uml_rootfs.probe_archive).
# shellcheck disable=SC2086 # TMPFS: one word per tmpfs
$P/umlsetup "$NONCE" $P/fstab $R $P/cell/mounts "$READ_ONLY" "$PIDS" "$MEMORY" "$CPU_MAX" "$POD" $TMPFS 2>$P/cell/setup.err
setup=$?
if [ $setup != 0 ]; then  # its line goes on the private channel, or on the console before devtmpfs is there
    why=
    read -r why <$P/cell/setup.err
    why="error init: ${why:-the set-up failed with status $setup}"
    if [ -c $P/dev/tty1 ]; then echo "$TAG $why" >$P/dev/tty1; else echo "$why"; fi
    $BB poweroff -f
fi
exec 3>$P/dev/tty1 </dev/null
C=/sys/fs/cgroup

# The target: the shim (attestation, then exec of the target on the image's PATH), in the image's
# chroot, with exactly the image's and the cell's environment (EXEC: shell words quoted by the plugin).
# umlsetup --as enters the chroot as the cell's user (NAME, UID or UID:GID, resolved in the image's
# /etc/passwd and /etc/group as an engine's runtime does; root, uid 0, when none is given).
RUN='cd -- "$1" 2>/dev/null || { /.ipv6compat/busybox mkdir -p -- "$1" && cd -- "$1"; } || exit 126
shift 2
. /.ipv6compat/shim.sh'
# Once the cell's environment is exported, no variable of this shell is read: the environment may name any of them
# (P, BB, RUN ...), so what the exec needs is in the positional parameters before, and the paths are written out.
(
    while read -r _ assignment; do unset "${assignment%%=*}"; done <$P/cell/inherited
    echo 0 >$C/cell/cgroup.procs || exit 126
    eval "set -- $ENV -- \"\$RUN\" sh $EXEC"  # NAME=value ... -- RUN sh DIR USER NONCE -- COMMAND...
    while [ "$1" != -- ]; do
        export "$1"
        shift
    done
    shift
    exec /.ipv6compat/umlsetup --as "${4:-0}" --root /.ipv6compat/root /.ipv6compat/busybox sh -c "$@"
) 3>&- &
target=$!
eval "set -- $WATCH"
# TABLES=1 (tests only): the kernel's listener tables, raw, on the private channel, for ground truth by a
# path that shares nothing with the watcher (it reads sock_diag; this reads /proc/net with shell builtins):
# "table ID FILE ROW" for each row, "table ID FILE absent", then "table ID end". ID is "ready" for the
# tables at the end of the hold (taken before the watcher's ready goes out) and tN for one every 0.2 s.
tables() {
    for f in tcp udp tcp6 udp6; do
        if [ -e /proc/net/$f ]; then
            while IFS= read -r row; do echo "$TAG table $1 $f $row"; done </proc/net/$f
        else
            echo "$TAG table $1 $f absent"
        fi
    done
    echo "$TAG table $1 end"
}
reader=
if [ "$TABLES" = 1 ]; then
    $BB mkfifo $P/cell/tick
    (
        exec 4<>$P/cell/tick
        n=0
        while :; do
            n=$((n + 1))
            tables "t$n"
            read -r -t 0.2 _ <&4
        done
    ) >&3 &
    reader=$!
fi
# KEY seals the watcher's records (watch.c); "watch" tells its lines from init's own (exit, error).
# "ready" (the hold is over) goes out only while the target still runs: one that exited within the hold
# but whose exit this init has not yet reported (the guest is slow to schedule it on a loaded host) is a
# zombie or gone here, and its exit line follows. The watcher's lines stop there: a sealed record is
# never dropped from the middle of the stream, where the host would see a gap. Builtins only: no exec.
IPV6COMPAT_KEY=$KEY $P/watch "$@" 2>&1 | while IFS= read -r line; do
    case $line in
    *" ready")
        # "PID (COMM) STATE ...": the state is within 48 bytes (7 digits, 15 of comm), and `read` takes a byte
        # per system call (two, with its poll), 20-65 us each here: the rest of the line is not read.
        stat=
        { read -r -n 48 stat <"/proc/$target/stat"; } 2>/dev/null
        state=${stat##*) }
        case "${state%% *}" in R | S | D | T | t | W | I) ;; *) break ;; esac
        [ "$TABLES" = 1 ] && tables ready
        ;;
    esac
    echo "$TAG watch $line"
done >&3 &
watcher=$!  # the tagging loop: the watcher dies of SIGPIPE without it
wait $target
code=$?
$BB kill -9 $watcher $reader 2>/dev/null
oom=
while read -r key value; do
    [ "$key" = oom_kill ] && [ "$value" != 0 ] && oom=" oom"
done <$C/cell/memory.events
echo "$TAG exit $code$oom" >&3
$BB poweroff -f
