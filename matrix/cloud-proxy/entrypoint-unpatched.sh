#!/bin/sh
# Variant "unpatched": the proxy as first shipped. Always listens on
# [::]:56000 and 56000, whatever PL_IPV6_DISABLE says, so it dies with
# "socket() [::]:56000 failed (97: ...)" where the kernel has no IPv6.
set -eu
. /usr/local/lib/cloud-proxy/lib.sh

require_domain
render
exec nginx
