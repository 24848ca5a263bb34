#!/bin/sh
# Variant "listen-host-fixed": the same knob, fixed. By default one [::]
# socket with ipv6only=off (IPv4 and IPv6 peers: kube-state-metrics #1346
# moved its default host to ::); an IPv6 host is bracketed, an IPv4 one used
# as it is.
set -eu
. /usr/local/lib/cloud-proxy/lib.sh

require_domain
host=${PL_LISTEN_HOST:-::}
case $host in
    ::) render -e '/# IPV6_DISABLE_MARKER/d' \
            -e 's/listen 56000 ssl http2 default_server;/listen [::]:56000 ssl http2 default_server ipv6only=off;/' \
            -e 's/listen 56000 /listen [::]:56000 /' ;;
    *:*) render -e '/# IPV6_DISABLE_MARKER/d' -e "s/listen 56000 /listen [$host]:56000 /" ;;
    *) render -e '/# IPV6_DISABLE_MARKER/d' -e "s/listen 56000 /listen $host:56000 /" ;;
esac
exec nginx
