# pytest-ipv6compat shim: runs as the target's first process, using only the
# static busybox beside it (never tools of the target image). It reports what
# the network namespace looks like, then execs the target so that the target is
# PID 1 as usual. The watcher (watch.c) observes the target on a channel of its
# own; nothing here runs once the target has started.
#
#   busybox sh shim.sh NONCE -- TARGET_ARGV...
#
# Every line it prints is "@@ipv6compat NONCE ...": the nonce is new for every
# cell and never reaches the target, so the target cannot imitate these lines,
# and the plugin leaves them out of the target's logs.
# Nothing the shim assigns reaches the target: it runs in a function whose variables are all local (a variable of
# the same name that the image or the cell exports keeps its value: a local is restored when the function returns),
# and the two it leaves for the exec, IPV6COMPAT_NAME and IPV6COMPAT_PATH, are unset first, so not exported (a
# variable of one of those names is not passed on to the target).
say() { echo "@@ipv6compat $nonce $*"; }

ipv6compat_shim() {
    local BB=/.ipv6compat/busybox nonce=$1 nl='
' iface f v lo6 v6 v4 last routes default6 tables previous seen table raw line saved proc_tables disable word
    local cmdline release out found d
    shift
    [ "$1" = "--" ] && shift

    for iface in all default lo; do
        # procfs sysctls answer only a read at offset 0, so `read` (one byte at a time) gets the
        # first character and then EOF (status 1): fine for a 0/1 value, and checked by -r first.
        f=/proc/sys/net/ipv6/conf/$iface/disable_ipv6
        v=
        [ -r "$f" ] && read -r v <"$f"
        say "fact $iface.disable_ipv6=${v:-absent}"
    done
    # The address tables (and the kernel's command line), each read whole by one program, twice in a row: the
    # shell's `read` takes two system calls per byte (a poll and a read), and under User-mode Linux a system call
    # costs 20-65 us and a program's start 5-25 ms (two readings of the tables with `read` took ~0.2 of the ~1 CPU-s
    # of a real-kernel cell). head prints "==> FILE <==" before each file it could open, nothing for one that does
    # not exist; a file seen again begins the second reading.
    proc_tables="/proc/cmdline /proc/net/if_inet6 /proc/net/fib_trie /proc/net/route /proc/net/ipv6_route"
    # One line of the table $table, as words. The pod address (stacks.POD_ADDRESSES), raw: IPv6 addresses of
    # global scope (IFACE:HEX/PREFIX), the local IPv4 addresses (fib_trie: the address line before each
    # "/32 host LOCAL"), the IPv4 routes (IFACE:DEST/MASK, hex as the kernel writes them) and the interfaces of
    # IPv6 default routes (not the kernel's reject entry on lo, flag 0x200); stacks.py decodes and checks them.
    table_line() {
        [ $# -gt 0 ] || return 0
        case $table in
            /proc/cmdline) cmdline="$*" ;;
            /proc/net/if_inet6)  # ADDR INDEX PREFIX SCOPE FLAGS IFACE
                [ "$1" = 00000000000000000000000000000001 ] && lo6=present
                [ "$4" = 00 ] && v6="$v6 $6:$1/$((0x$3))" ;;
            /proc/net/fib_trie)
                case $1 in
                    '|--') last=$2 ;;
                    /32) [ "$2 $3" = "host LOCAL" ] && case " $v4 " in *" $last "*) ;; *) v4="$v4 $last" ;; esac ;;
                esac ;;
            /proc/net/route)  # IFACE DEST GATEWAY FLAGS REFCNT USE METRIC MASK ...
                [ "$1" = Iface ] || routes="$routes $1:$2/$8" ;;
            /proc/net/ipv6_route)  # DEST PLEN SRC SPLEN NEXTHOP METRIC REFCNT USE FLAGS IFACE
                [ "$1/$2" = 00000000000000000000000000000000/00 ] && [ $((0x$9 & 0x200)) = 0 ] &&
                    default6="$default6 ${10}" ;;
        esac
    }
    reading() {  # a reading begins
        seen= lo6=absent v6= v4= last= routes= default6=
    }
    ended() {  # a reading ended: it is $tables, the one before it $previous
        previous=$tables
        tables="$lo6|$v6|$v4|$routes|$default6"
    }
    # Both readings of one program: $tables is the second, $previous the first.
    read_tables() {
        # shellcheck disable=SC2086 # one word per file
        raw=$($BB head -n 100000 $proc_tables $proc_tables 2>/dev/null)
        reading
        saved=$IFS
        IFS=$nl
        set -f
        for line in $raw; do
            case $line in
                '==> '*' <==')
                    table=${line#'==> '}
                    table=${table%' <=='}
                    case " $seen " in *" $table "*) ended; reading ;; esac
                    seen="$seen $table" ;;
                *) IFS=$saved; table_line $line; IFS=$nl ;;
            esac
        done
        set +f
        IFS=$saved
        ended
    }
    # A reader of these tables sees one entry twice if the kernel changes them while it reads (its place is an
    # index), so they are read until two readings in a row agree (six at most; then the last is reported, and
    # the attestation fails on it if it is wrong).
    for _ in 1 2 3; do
        read_tables
        [ "$tables" = "$previous" ] && break
    done
    say "fact lo ::1=$lo6"
    say "fact raw inet6 global=${v6# }"
    say "fact raw inet local=${v4# }"
    say "fact raw inet routes=${routes# }"
    say "fact raw inet6 default=${default6# }"
    # What only a booted kernel can show (containers share the host's): the ipv6.disable= of the
    # kernel command line ("none" if not given), and whether IPv6 has entries in /proc at all.
    # A builtin read, not a program: every exec costs 10-30 ms under User-mode Linux.
    disable=none
    for word in $cmdline; do
        case $word in ipv6.disable=*) disable=${word#ipv6.disable=} ;; esac
    done
    say "fact cmdline ipv6.disable=$disable"
    # The running kernel's release (the host's in a container, the guest's under User-mode Linux).
    release=
    [ -r /proc/sys/kernel/osrelease ] && read -r release </proc/sys/kernel/osrelease
    say "fact kernel release=${release:-unknown}"
    for f in /proc/net/if_inet6 /proc/sys/net/ipv6; do
        if [ -e "$f" ]; then say "fact $f=present"; else say "fact $f=absent"; fi
    done
    # Nothing listens yet, so connecting to [::1]:1 tells the stacks apart:
    # refused (dual-stack), errno 99 (no ::1), or socket() errno 97 (no AF_INET6).
    out=$($BB nc ::1 1 </dev/null 2>&1)
    say "probe inet6 ${out%%"$nl"*}"

    # The engine's own failure to start the target must not look like the target's exit.
    # The command is resolved on the image's PATH here, because this busybox would
    # otherwise run its own applet of that name (sh, httpd, nc ...) instead of the image's.
    if [ $# -eq 0 ]; then
        say "missing the image has no entrypoint or command to run"
        say attested
        exit 127
    fi
    found=
    case $1 in
        */*) [ -f "$1" ] && found=$1 ;;
        *)
            saved=$IFS
            IFS=:
            for d in ${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}; do
                if [ -f "${d:-.}/$1" ] && [ -x "${d:-.}/$1" ]; then
                    found=${d:-.}/$1
                    break
                fi
            done
            IFS=$saved
            ;;
    esac
    if [ -z "$found" ]; then
        say "missing $1: no such file in the image (PATH=$PATH)"
    elif ! [ -x "$found" ]; then
        say "missing $found: not executable"
    fi
    say attested
    [ -n "$found" ] && [ -x "$found" ] || exit 127
    IPV6COMPAT_NAME=$1 IPV6COMPAT_PATH=$found
}

unset IPV6COMPAT_NAME IPV6COMPAT_PATH
ipv6compat_shim "$@" || exit 127
shift
[ "$1" = "--" ] && shift
shift
exec -a "$IPV6COMPAT_NAME" "$IPV6COMPAT_PATH" "$@"
