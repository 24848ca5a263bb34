#!/bin/sh
# Variant "listen-host-unpatched": the listen host taken from PL_LISTEN_HOST
# (default 0.0.0.0) and written HOST:56000, as charts that template a listen
# address do (goauthentik/helm #399, sentry-kubernetes/charts #1784). IPv4
# only by default, so an IPv6-only pod starts and no peer reaches it; an IPv6
# host is not bracketed, and nginx refuses ":::56000".
set -eu
. /usr/local/lib/cloud-proxy/lib.sh

require_domain
host=${PL_LISTEN_HOST:-0.0.0.0}
render -e '/# IPV6_DISABLE_MARKER/d' -e "s/listen 56000 /listen $host:56000 /"
exec nginx
