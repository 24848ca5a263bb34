#!/.ipv6compat/busybox sh
# pytest-ipv6compat init for User-mode Linux: PID 1 of a real kernel booted with
# the image's root filesystem as an initramfs. It does what a container engine
# would (proc, sys, a small /dev, lo up and no other interface, the cell's
# read-only mounts, /etc/hosts, tmpfs, a read-only root), loads IPv6 as modprobe
# would on a Debian host (the module with the ipv6.* options of the kernel
# command line), then runs the same shim as every backend, in a chroot of the
# image, and the same watcher on the second console, a channel the target's
# output never reaches. When the target exits, its code goes on that channel
# and the kernel halts.
P=/.ipv6compat
BB=$P/busybox
R=$P/root
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
. $P/cell/settings.sh
# settings.sh: NONCE, READ_ONLY (0/1), TMPFS ("path:opts" words), and as shell words quoted by the
# plugin: EXEC (environment, then the command) and WATCH (the watcher's arguments)
$BB mkdir -p /proc /sys /dev /tmp 2>/dev/null
$BB mount -t proc proc /proc
$BB mount -t sysfs sysfs /sys
$BB mount -t devtmpfs devtmpfs $P/dev
exec 3>$P/dev/tty1 </dev/null
echo "@@ipv6compat $NONCE boot $($BB cut -d' ' -f1 /proc/uptime)"
fatal() {
    echo "error init: $*" >&3
    $BB poweroff -f
}

opts=
for word in $($BB cat /proc/cmdline); do
    case $word in ipv6.*) opts="$opts ${word#ipv6.}" ;; esac
done
$BB insmod $P/crc-ccitt.ko || fatal "cannot load crc-ccitt"
# shellcheck disable=SC2086 # one word per option
$BB insmod $P/ipv6.ko $opts || fatal "cannot load ipv6"
$BB ip link set lo up || fatal "cannot bring lo up"

$BB mount --bind / $R || fatal "cannot bind the root"
$BB mkdir -p $R/proc $R/sys $R/dev $R/etc 2>/dev/null
$BB mount -t proc proc $R/proc
$BB mount -t sysfs -o ro sysfs $R/sys
$BB mount -t tmpfs -o mode=755,size=64k,nosuid tmpfs $R/dev
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name major minor <<EOF
$node
EOF
    $BB mknod -m 666 $R/dev/$name c "$major" "$minor"
done
$BB mkdir -p $R/dev/pts $R/dev/shm
$BB mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
$BB ln -s pts/ptmx $R/dev/ptmx
$BB ln -s /proc/self/fd $R/dev/fd
$BB ln -s /proc/self/fd/0 $R/dev/stdin
$BB ln -s /proc/self/fd/1 $R/dev/stdout
$BB ln -s /proc/self/fd/2 $R/dev/stderr
$BB mount -t tmpfs -o nosuid,nodev,size=64m shm $R/dev/shm
$BB cp $P/cell/hosts $R/etc/hosts 2>/dev/null || fatal "cannot write /etc/hosts"
while read -r source dest; do
    [ -n "$dest" ] || continue
    if [ -d "$source" ]; then $BB mkdir -p "$R$dest"; else $BB mkdir -p "$($BB dirname "$R$dest")"; $BB touch "$R$dest"; fi
    $BB mount --bind "$source" "$R$dest" && $BB mount -o remount,bind,ro "$R$dest" || fatal "cannot mount $dest"
done <$P/cell/mounts
for spec in $TMPFS; do
    $BB mkdir -p "$R${spec%%:*}"
    $BB mount -t tmpfs -o "${spec#*:}" tmpfs "$R${spec%%:*}" || fatal "cannot mount tmpfs at ${spec%%:*}"
done
[ "$READ_ONLY" = 1 ] && { $BB mount -o remount,bind,ro $R || fatal "cannot make the root read-only"; }

# The target: the shim (attestation, then exec of the target on the image's PATH), in the image's
# chroot, with exactly the image's and the cell's environment (EXEC: shell words quoted by the plugin).
eval "set -- $EXEC"
$BB chroot $R $BB env -i "$@" 3>&- &
target=$!
eval "set -- $WATCH"
$P/watch "$@" >&3 2>&3 &
watcher=$!
wait $target
code=$?
$BB kill -9 $watcher 2>/dev/null
echo "exit $code" >&3
$BB poweroff -f
