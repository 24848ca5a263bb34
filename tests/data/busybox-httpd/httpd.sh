#!/bin/sh
# busybox httpd on port 8080, with a knob:
#   HTTPD_IPV6 unset, empty, 1 or true: port 8080 on every address busybox can open
#   HTTPD_IPV6 0 or false: IPv4 only (0.0.0.0:8080)
#   anything else: refuse to start
case "${HTTPD_IPV6-}" in
"" | 1 | true) exec busybox httpd -f -p 8080 -h /srv/www ;;
0 | false) exec busybox httpd -f -p 0.0.0.0:8080 -h /srv/www ;;
*)
	echo "httpd: invalid HTTPD_IPV6 value '$HTTPD_IPV6' (use 1, true, 0 or false)" >&2
	exit 2
	;;
esac
