#!/bin/sh
# Variant "env-toggle": the first upstream fix, quirks included on purpose.
# - ANY non-empty PL_IPV6_DISABLE (also "false" and "0") removes the IPv6
#   listen lines;
# - they are removed by editing the template in /etc/proxy IN PLACE, so with
#   /etc/proxy mounted read-only (a ConfigMap) sed fails and the proxy exits.
set -eu
. /usr/local/lib/cloud-proxy/lib.sh

require_domain
if [ -n "${PL_IPV6_DISABLE:-}" ]; then
    sed -i '/# IPV6_DISABLE_MARKER/d' "$TEMPLATE"
fi
render
exec nginx
