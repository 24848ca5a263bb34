# Shared helpers of the cloud-proxy entrypoints (sourced; busybox sh).
# Installed at /usr/local/lib/cloud-proxy/lib.sh.

TEMPLATE=/etc/proxy/proxy.conf.tmpl
RENDER_DIR=/run/proxy
RENDERED=$RENDER_DIR/proxy.conf

# die CODE MESSAGE...: one line on stderr, then exit CODE.
die() {
    code=$1
    shift
    echo "cloud-proxy: $*" >&2
    exit "$code"
}

# PL_DOMAIN_NAME is required and must look like a DNS name.
require_domain() {
    if [ -z "${PL_DOMAIN_NAME:-}" ]; then
        die 1 "PL_DOMAIN_NAME is required (e.g. PL_DOMAIN_NAME=proxy.ipv6compat.test) but is unset or empty"
    fi
    case $PL_DOMAIN_NAME in
        *[!A-Za-z0-9.-]*)
            die 1 "invalid PL_DOMAIN_NAME: '$PL_DOMAIN_NAME' (expected letters, digits, '.' and '-')"
            ;;
    esac
}

# render [SED-ARGS...]: the template, with the domain filled in and SED-ARGS
# applied, becomes $RENDERED. Never writes into /etc/proxy.
render() {
    mkdir -p "$RENDER_DIR"
    sed -e "s/[\$]{PL_DOMAIN_NAME}/$PL_DOMAIN_NAME/g" "$@" "$TEMPLATE" > "$RENDERED.tmp"
    mv "$RENDERED.tmp" "$RENDERED"
}

# ipv6_unavailable: succeeds, printing the reason, when socket(AF_INET6) cannot
# be created. Connecting to [::1]:1 fails either way; only the error differs
# ("Connection refused" or "Cannot assign requested address" when the socket
# itself could be made).
ipv6_unavailable() {
    out=$(timeout 5 nc ::1 1 </dev/null 2>&1) || true
    case $out in
        *"Address family not supported"*)
            echo "Address family not supported by protocol"
            return 0
            ;;
    esac
    return 1
}
