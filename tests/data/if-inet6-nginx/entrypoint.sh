#!/bin/sh
# Listen on [::]:80 too only where the kernel shows IPv6 interfaces.
set -eu
if [ -e /proc/net/if_inet6 ]; then
    echo "listen [::]:80;" >/tmp/listen-v6.conf
    echo "entrypoint: /proc/net/if_inet6 exists, listening on [::]:80 too"
else
    : >/tmp/listen-v6.conf
    echo "entrypoint: no /proc/net/if_inet6, IPv4 only"
fi
exec "$@"
