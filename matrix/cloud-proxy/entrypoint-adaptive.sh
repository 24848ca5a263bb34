#!/bin/sh
# Variant "adaptive": the fix as it should be. Never writes into /etc/proxy.
#   PL_IPV6_DISABLE unset or empty  -> IPv6 only if socket(AF_INET6) works
#   1/true/yes/on (any case)        -> IPv4 only
#   0/false/no/off (any case)       -> dual-stack required; exit 1 without IPv6
#   anything else                   -> exit 2 naming the value
set -eu
. /usr/local/lib/cloud-proxy/lib.sh

require_domain
setting=${PL_IPV6_DISABLE:-}
case $(printf '%s' "$setting" | tr 'A-Z' 'a-z') in
    "")
        if reason=$(ipv6_unavailable); then
            echo "cloud-proxy: IPv6 unavailable ($reason); listening on IPv4 only" >&2
            ipv6=off
        else
            ipv6=on
        fi
        ;;
    1 | true | yes | on)
        ipv6=off
        ;;
    0 | false | no | off)
        if reason=$(ipv6_unavailable); then
            die 1 "PL_IPV6_DISABLE=$setting requires IPv6, but socket(AF_INET6) failed: $reason"
        fi
        ipv6=on
        ;;
    *)
        die 2 "invalid value for PL_IPV6_DISABLE: '$setting' (expected empty, 1/true/yes/on or 0/false/no/off)"
        ;;
esac

if [ "$ipv6" = off ]; then
    render -e '/# IPV6_DISABLE_MARKER/d'
else
    render
fi
exec nginx
