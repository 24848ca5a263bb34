# pytest-ipv6compat shim: runs as the container's first process, from the
# read-only probe mount, using only the busybox beside it (never tools of the
# target image). It reports what the network namespace looks like, starts a
# watcher, then execs the target so that the target is PID 1 as usual.
#
#   busybox sh shim.sh SETTLE HTTP_PATH -- TARGET_ARGV...
#
# Every line it prints starts with "@@ipv6compat "; the plugin strips those
# lines from the logs it shows.
BB=/.ipv6compat/busybox
settle=$1
path=$2
shift 2
[ "$1" = "--" ] && shift

say() { echo "@@ipv6compat $*"; }

for iface in all default lo; do
    v=$($BB cat "/proc/sys/net/ipv6/conf/$iface/disable_ipv6" 2>/dev/null) || v=absent
    say "fact $iface.disable_ipv6=${v:-absent}"
done
if $BB grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
    say "fact lo ::1=present"
else
    say "fact lo ::1=absent"
fi
# Nothing listens yet, so connecting to [::1]:1 tells the three stacks apart:
# refused (dual-stack), errno 99 (no ::1), or socket() errno 97 (no AF_INET6).
say "probe inet6 $($BB nc ::1 1 </dev/null 2>&1 | $BB head -n 1)"
say attested

# LISTEN rows (state 0A) as "tcp|tcp6 local_address", the identity of a listener.
keys() {
    for f in tcp tcp6; do
        $BB awk -v f=$f '$4 == "0A" { print f, $2 }' /proc/net/$f 2>/dev/null
    done | $BB sort -u
}

reach() {  # family hexaddr:hexport -> "HOST PORT" to connect to, or nothing
    addr=${2%:*}
    port=$($BB printf %d "0x${2#*:}")
    case "$1:$addr" in
        tcp:00000000) echo "127.0.0.1 $port" ;;
        tcp:*) echo "$($BB printf '%d.%d.%d.%d' "0x${addr:6:2}" "0x${addr:4:2}" "0x${addr:2:2}" "0x${addr:0:2}") $port" ;;
        tcp6:00000000000000000000000000000000 | tcp6:00000000000000000000000001000000) echo "::1 $port" ;;
    esac
}

watch() {
    prev=
    while :; do
        cur=$(keys)
        if [ -n "$cur" ] && [ "$cur" = "$prev" ]; then
            break
        fi
        if [ -n "$cur" ]; then $BB sleep "$settle"; else $BB sleep 0.01; fi
        prev=$cur
    done
    for f in tcp tcp6; do
        $BB awk -v f=$f '$4 == "0A" { print "@@ipv6compat row", f, $0 }' /proc/net/$f 2>/dev/null
    done
    echo "$cur" | while read -r f key; do
        set -- $(reach "$f" "$key")
        if [ $# -eq 2 ]; then
            answer=$($BB printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" \
                | $BB timeout 3 $BB nc "$1" "$2" 2>&1 | $BB head -n 1 | $BB tr -d '\r')
            say "reach $f $key ${answer:-(no response)}"
        else
            say "reach $f $key (not probed: not a loopback or wildcard address)"
        fi
    done
    say ready
}

if [ $# -eq 0 ]; then
    echo "ipv6compat: the image has no entrypoint or command to run" >&2
    exit 125
fi
watch &
exec "$@"
