"""A real client, run by the host's Python inside a container's network namespace.

    nsenter -t PID -n python3 groundtruth_client.py '<json list of checks>'

Each check is ``{"proto": "tcp"|"udp", "family": 4|6, "port": N, "probe": "tcp"|"http"|"https"|"none",
"path": "/"}`` and is tried over that family's loopback, or over ``"address"`` when the check names one
(the cell's pod address: a peer's view). Prints one JSON list of results, in order:
``{"result": ..., "detail": ...}`` where result is one of

    refused       connection refused (TCP RST, or an ICMP port unreachable for UDP)
    no-loopback   the family has no loopback address here (connect/bind errno 99)
    errno         any other connect error (detail names it)
    accepted      TCP connect accepted (probe tcp or none)
    status        a status line came back (detail is the line; http and https)
    no-status     accepted, but no status line before the timeout or the close (detail says which)
    tls-error     accepted, but the TLS handshake failed (detail says why)
    reply         a UDP datagram came back
    no-reply      UDP: nothing came back before the timeout

Standard library only, and nothing from pytest_ipv6compat: this is the independent path.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
import sys

TIMEOUT_S = 2.0
LOOPBACK = {4: "127.0.0.1", 6: "::1"}


def _connect_error(exc: OSError) -> dict[str, str]:
    if exc.errno == errno.ECONNREFUSED:
        return {"result": "refused", "detail": "connection refused"}
    if exc.errno == errno.EADDRNOTAVAIL:
        return {"result": "no-loopback", "detail": f"errno {exc.errno} ({exc.strerror})"}
    if isinstance(exc, socket.timeout):
        return {"result": "errno", "detail": "connect timed out"}
    return {"result": "errno", "detail": f"errno {exc.errno} ({exc.strerror})"}


def _status_line(sock: socket.socket) -> dict[str, str]:
    data = b""
    try:
        while b"\n" not in data and len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        if not data:
            return {"result": "no-status", "detail": f"nothing within {TIMEOUT_S:g}s"}
    except OSError as exc:
        return {"result": "no-status", "detail": f"read failed: {exc}"}
    line = data.split(b"\n", 1)[0].decode("latin-1").strip()
    if not line.startswith("HTTP/"):
        return {"result": "no-status", "detail": f"not a status line: {line[:60]!r}" if data else "closed"}
    return {"result": "status", "detail": line}


def check_tcp(family: int, port: int, probe: str, path: str, address: str | None = None) -> dict[str, str]:
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    sock = socket.socket(af, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT_S)
    try:
        try:
            sock.connect((address or LOOPBACK[family], port))
        except OSError as exc:
            return _connect_error(exc)
        if probe in ("tcp", "none"):
            return {"result": "accepted", "detail": "connect accepted"}
        request = f"GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: groundtruth\r\n\r\n".encode()
        if probe == "https":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            try:
                sock = context.wrap_socket(sock, server_hostname="localhost")
            except (ssl.SSLError, OSError) as exc:
                return {"result": "tls-error", "detail": str(exc)[:120]}
        try:
            sock.sendall(request)
        except OSError as exc:
            return {"result": "no-status", "detail": f"send failed: {exc}"}
        return _status_line(sock)
    finally:
        sock.close()


def check_udp(family: int, port: int, address: str | None = None) -> dict[str, str]:
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    sock = socket.socket(af, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT_S)
    try:
        try:
            sock.connect((address or LOOPBACK[family], port))
            sock.send(b"groundtruth ping\n")
            data = sock.recv(4096)
        except TimeoutError:
            return {"result": "no-reply", "detail": f"nothing within {TIMEOUT_S:g}s"}
        except OSError as exc:
            return _connect_error(exc)
        return {"result": "reply", "detail": f"{len(data)} bytes"}
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    results = []
    for check in json.loads(argv[1]):
        if check["proto"] == "udp":
            results.append(check_udp(check["family"], check["port"], check.get("address")))
        else:
            results.append(check_tcp(check["family"], check["port"], check["probe"], check.get("path", "/"),
                                     check.get("address")))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
