# pytest-ipv6compat shim: runs as the container's first process, from the
# read-only probe mount, using only the busybox beside it (never tools of the
# target image). It reports what the network namespace looks like, starts a
# watcher, then execs the target so that the target is PID 1 as usual.
#
#   busybox sh shim.sh SETTLE HTTP_PATH -- TARGET_ARGV...
#
# Every line it prints starts with "@@ipv6compat "; the plugin strips those
# lines from the logs it shows. It forks little: files are read with the `read`
# builtin and arithmetic is the shell's, so a poll costs one process (sleep).
BB=/.ipv6compat/busybox
settle=$1
path=$2
shift 2
[ "$1" = "--" ] && shift
nl='
'
cr=$'\r'

say() { echo "@@ipv6compat $*"; }

for iface in all default lo; do
    # procfs sysctls answer only a read at offset 0, so `read` (one byte at a time) gets the
    # first character and then EOF (status 1): fine for a 0/1 value, and checked by -r first.
    f=/proc/sys/net/ipv6/conf/$iface/disable_ipv6
    v=
    [ -r "$f" ] && read -r v <"$f"
    say "fact $iface.disable_ipv6=${v:-absent}"
done
lo6=absent
while read -r addr rest; do
    [ "$addr" = 00000000000000000000000000000001 ] && lo6=present
done 2>/dev/null </proc/net/if_inet6
say "fact lo ::1=$lo6"
# Nothing listens yet, so connecting to [::1]:1 tells the three stacks apart:
# refused (dual-stack), errno 99 (no ::1), or socket() errno 97 (no AF_INET6).
out=$($BB nc ::1 1 </dev/null 2>&1)
say "probe inet6 ${out%%"$nl"*}"
say attested

# Reading /proc/net/tcp or tcp6 walks the kernel's whole TCP hash table (global, not per
# network namespace): about 3 ms of CPU per file on a host with 262144 buckets, whoever
# reads it and however. /proc/net/sockstat{,6} is per namespace and costs ~0.01 ms, so it
# is polled instead, and the LISTEN set is read only when the TCP socket count changed,
# to confirm a candidate set after the settle time, or every 50 polls as a safety net.
inuse() {  # $n: TCP + TCP6 sockets in use in this network namespace
    n=0
    for f in sockstat sockstat6; do
        while read -r proto _ count _; do
            case $proto in TCP: | TCP6:) n=$((n + count)) ;; esac
        done 2>/dev/null </proc/net/$f
    done
}

snapshot() {  # $keys: "tcp|tcp6 local_address" of each LISTEN socket; $rows: their protocol lines
    keys=
    rows=
    for f in tcp tcp6; do
        while IFS= read -r line; do
            set -- $line
            [ "$4" = 0A ] || continue
            case "$nl$keys" in
                *"$nl$f $2$nl"*) ;;
                *) keys="$keys$f $2$nl" ;;
            esac
            rows="$rows@@ipv6compat row $f $line$nl"
        done 2>/dev/null </proc/net/$f
    done
}

target() {  # family hexaddr:hexport -> $host and $port to connect to ($host empty: not probed)
    addr=${2%:*}
    port=$((0x${2#*:}))
    host=
    case "$1:$addr" in
        tcp:00000000) host=127.0.0.1 ;;
        tcp:*) host=$((0x${addr:6:2})).$((0x${addr:4:2})).$((0x${addr:2:2})).$((0x${addr:0:2})) ;;
        tcp6:00000000000000000000000000000000 | tcp6:00000000000000000000000001000000) host=::1 ;;
    esac
}

probe() {  # family key
    target "$1" "$2"
    if [ -n "$host" ]; then
        answer=$(printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" \
            | $BB timeout 3 $BB nc "$host" "$port" 2>&1 | $BB head -n 1)
        answer=${answer%"$cr"}
        say "reach $1 $2 ${answer:-(no response)}"
    else
        say "reach $1 $2 (not probed: not a loopback or wildcard address)"
    fi
}

watch() {
    prev=
    seen=0
    polls=0
    while :; do
        inuse
        polls=$((polls + 1))
        if [ -n "$prev" ] || { [ "$n" -gt 0 ] && [ "$n" != "$seen" ]; } || [ $((polls % 50)) -eq 0 ]; then
            snapshot
            seen=$n
            if [ -n "$keys" ] && [ "$keys" = "$prev" ]; then
                break
            fi
            prev=$keys
            if [ -n "$keys" ]; then
                $BB sleep "$settle"
                continue
            fi
        fi
        $BB sleep 0.01
    done
    printf '%s' "$rows"
    saved=$IFS
    IFS=$nl
    for entry in $keys; do
        IFS=$saved
        set -- $entry
        probe "$1" "$2"
        IFS=$nl
    done
    IFS=$saved
    say ready
}

if [ $# -eq 0 ]; then
    echo "ipv6compat: the image has no entrypoint or command to run" >&2
    exit 125
fi
watch &
exec "$@"
