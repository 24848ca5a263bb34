"""The zoo: small non-nginx targets (plus one TLS nginx), and what is TRUE of each on each stack.

Every target is the one zoo image (``tests/zoo/``) with a command and probe settings. The
expectations are written in the plugin's expectation syntax and were read off ground truth
(``groundtruth.py``: ``ss`` plus a real client in the container's namespace), never bent to
fit the plugin:

    up LISTENER...              LISTENER = [tcp/|udp/]ADDRESS:PORT[/silent]
    exited [CODE] ['text']      'text' must appear in the target's log
    timeout

ADDRESS: ``0.0.0.0``, ``127.0.0.1``, ``[::]`` (v6only on: IPv6 only), ``*`` (one IPv6 socket
with v6only off: IPv4 and IPv6), ``[::1]``. ``/silent``: listens, but succeeds on none of the
families it serves whose loopback exists (on ipv6-sysctl-off there is no ``::1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from groundtruth import Probe

STACKS = ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off")
KERNEL_OFF, BOOT = "ipv6-kernel-off", "ipv6-boot-disabled"
Z = "/usr/local/bin/zoosrv"
KERNEL_OFF_97 = "exited 1 'socket(AF_INET6) failed (97: Address family not supported by protocol)'"


@dataclass(frozen=True)
class ZooTarget:
    name: str
    command: tuple[str, ...]
    expect: Mapping[str, str]  # stack -> expectation
    probe: Probe = field(default_factory=Probe)
    settle: float | None = None  # listener set unchanged this long (None: the plugin's default)
    hold: float | None = None  # still running, listeners unchanged, this long (None: the plugin's default; 1.0)
    timeout: float = 15.0
    extra_hosts: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None  # the run setting: NAME, UID or UID:GID (None: the image's, root)
    why: str = ""
    listened: Mapping[str, str] = field(default_factory=dict)  # stack -> what an exited target had listened on
    log_shows: tuple[str, ...] = ()  # text the target prints that its log must keep (nothing may swallow it)
    fails: tuple[str, str] | None = None  # (an expectation the plugin must fail, text its reasons must hold)
    fails_without_change: bool = False  # the change may come before the watcher's first look (timed, not evented)

    def expectation(self, stack: str) -> str:
        """On ``ipv6-boot-disabled`` (a real kernel without IPv6): what is true on ``ipv6-kernel-off``, since no
        zoo target looks for IPv6 files in /proc (``test_uml_parity`` holds both against the kernel's tables)."""
        return self.expect[KERNEL_OFF if stack == BOOT else stack]

    def run_settings(self) -> dict[str, object]:
        """Keyword arguments for ``ipv6_target_factory.start``: the plugin's defaults where none is named."""
        run: dict[str, object] = {"command": list(self.command), "probe": self.probe.kind, "timeout": self.timeout}
        if self.probe.kind in ("http", "https"):
            run["http_path"] = self.probe.path
        if self.settle is not None:
            run["settle"] = self.settle
        if self.hold is not None:
            run["hold"] = self.hold
        if self.extra_hosts:
            run["extra_hosts"] = dict(self.extra_hosts)
        if self.user is not None:
            run["user"] = self.user
        return run


def _all(text: str) -> dict[str, str]:
    return dict.fromkeys(STACKS, text)


def _by_stack(dual: str, sysctl_off: str, kernel_off: str) -> dict[str, str]:
    return dict(zip(STACKS, (dual, sysctl_off, kernel_off), strict=True))


HTTP = Probe("http", "/healthz")
TARGETS: tuple[ZooTarget, ...] = (
    ZooTarget(
        "dualstack-no-fallback", (Z, "tcpdual=:::8080"),
        _by_stack("up *:8080", "up *:8080", KERNEL_OFF_97),
        HTTP, why="one [::] socket, v6only off (Python/Node/Go style), no IPv4 fallback",
    ),
    ZooTarget(
        "dualstack-fallback", (Z, "fallback", "tcpdual=:::8080"),
        _by_stack("up *:8080", "up *:8080", "up 0.0.0.0:8080"),
        HTTP, why="the same, falling back to 0.0.0.0 when socket(AF_INET6) fails with errno 97",
    ),
    ZooTarget(
        "v6only-pair", (Z, "tcp6=:::8080", "tcp4=0.0.0.0:8080"),
        _by_stack("up 0.0.0.0:8080 [::]:8080", "up 0.0.0.0:8080 [::]:8080/silent", KERNEL_OFF_97),
        HTTP, why="nginx-shaped without nginx: [::] with v6only on, plus 0.0.0.0",
    ),
    ZooTarget(
        "loopback-only", (Z, "optional6", "tcp4=127.0.0.1:8080", "tcp6=::1:8080"),
        _by_stack("up 127.0.0.1:8080 [::1]:8080", "up 127.0.0.1:8080", "up 127.0.0.1:8080"),
        HTTP, why="127.0.0.1 and ::1 only; a failed IPv6 listener is skipped with a warning",
    ),
    ZooTarget(
        "busybox-httpd", ("/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"),
        _by_stack("up *:8080", "up *:8080", "up 0.0.0.0:8080"),
        Probe("http", "/index.html"), why="busybox httpd -f -p 8080",
    ),
    ZooTarget(
        "tls-nginx", ("nginx", "-c", "/etc/zoo/nginx-tls.conf"),
        _by_stack("up *:8443", "up *:8443", "exited 1 '(97: Address family not supported by protocol)'"),
        Probe("https", "/"), why="nginx 'listen [::]:8443 ssl ipv6only=off', probed over TLS",
    ),
    ZooTarget(
        "tls-probed-as-http", ("nginx", "-c", "/etc/zoo/nginx-tls.conf"),
        _by_stack("up *:8443/silent", "up *:8443/silent", "exited 1 '(97: Address family not supported by protocol)'"),
        Probe("http", "/"), why="the TLS port probed with plain HTTP: a 400 is not success",
    ),
    ZooTarget(
        "http-wrong-path", (Z, "fallback", "tcpdual=:::8080"),
        _by_stack("up *:8080/silent", "up *:8080/silent", "up 0.0.0.0:8080/silent"),
        Probe("http", "/no-such-path"), why="http_path is checked: a 404 is not success",
    ),
    ZooTarget(
        "http-probed-as-https", (Z, "fallback", "tcpdual=:::8080"),
        _by_stack("up *:8080/silent", "up *:8080/silent", "up 0.0.0.0:8080/silent"),
        Probe("https", "/healthz"), why="a plain HTTP port probed over TLS: the handshake fails, no success",
    ),
    ZooTarget(
        "redis-like-banner", (Z, "optional6", "tcp4=0.0.0.0:6379:banner", "tcp6=:::6379:banner",
                              "tcp4=127.0.0.1:7000:close"),
        _by_stack("up 0.0.0.0:6379 127.0.0.1:7000 [::]:6379", "up 0.0.0.0:6379 127.0.0.1:7000 [::]:6379/silent",
                  "up 0.0.0.0:6379 127.0.0.1:7000"),
        Probe("tcp"), why="non-HTTP TCP: '+OK' banner, ignores requests; plus a port that accepts and closes",
    ),
    ZooTarget(
        "udp-only", (Z, "fallback", "udpdual=:::5353"),
        _by_stack("up udp/*:5353", "up udp/*:5353", "up udp/0.0.0.0:5353"),
        Probe("tcp"), why="UDP only (an echo), no TCP listener at all",
    ),
    ZooTarget(
        "udp-sink", (Z, "udp4=0.0.0.0:5000:silent"),
        _all("up udp/0.0.0.0:5000"),
        Probe("tcp"), why="UDP that never replies: a datagram that is not refused is all a generic probe can ask",
    ),
    ZooTarget(
        "tcp-and-udp-one-port", (Z, "fallback", "tcpdual=:::5300:banner", "udpdual=:::5300"),
        _by_stack("up *:5300 udp/*:5300", "up *:5300 udp/*:5300", "up 0.0.0.0:5300 udp/0.0.0.0:5300"),
        Probe("tcp"), why="TCP and UDP on the same port",
    ),
    ZooTarget(
        "accepted-but-silent", (Z, "tcp4=0.0.0.0:8080:silent"),
        _all("up 0.0.0.0:8080/silent"),
        HTTP, why="accepts, never writes: not the same as refused",
    ),
    ZooTarget(
        "accepted-but-silent-probe-none", (Z, "tcp4=0.0.0.0:8080:silent", "tcp6=:::8081:silent"),
        _by_stack("up 0.0.0.0:8080 [::]:8081", "up 0.0.0.0:8080 [::]:8081", "exited 1 'socket(AF_INET6) failed'"),
        Probe("none"), why="probe none: listeners are listed, never judged, so none is /silent",
    ),
    ZooTarget(
        "listeners-one-by-one", (Z, "tcp4=0.0.0.0:9001", "sleep=0.3", "tcp4=0.0.0.0:9002", "sleep=0.3",
                                 "tcp4=0.0.0.0:9003"),
        _all("up 0.0.0.0:9001 0.0.0.0:9002 0.0.0.0:9003"),
        HTTP, why="three ports, 0.3 s apart: the defaults see all three (the hold window follows the set)",
    ),
    ZooTarget(
        "ports-0.3-and-0.7-apart", (Z, "tcp4=0.0.0.0:8080", "sleep=0.3", "tcp4=0.0.0.0:8081", "sleep=0.7",
                                    "tcp4=0.0.0.0:8082"),
        _all("up 0.0.0.0:8080 0.0.0.0:8081 0.0.0.0:8082"),
        HTTP, why="main, admin and metrics ports, opened 0.3 s and 0.7 s apart: passes with the defaults",
        fails=("up 0.0.0.0:8080", "+0.0.0.0:8082 at "), fails_without_change=True,
    ),
    ZooTarget(
        "closes-one-of-two", (Z, "tcp4=0.0.0.0:8080", "tcp4=0.0.0.0:8081", "until-connected", "sleep=0.3",
                              "close=8080"),
        _all("up 0.0.0.0:8081"),
        HTTP, why="listens on two ports, closes one 0.3 s after its first client (so after a probe saw it, "
        "inside the hold) and runs on: the verdict names the one left",
        fails=("up 0.0.0.0:8080 0.0.0.0:8081", "-0.0.0.0:8080 at "),
    ),
    ZooTarget(
        "closes-its-only-listener", (Z, "tcp4=0.0.0.0:8080", "until-connected", "sleep=0.3", "close=8080"),
        _all("timeout"),
        HTTP, timeout=3.0, why="listens, closes its only listener 0.3 s after its first client and runs on: "
        "never up",
        fails=("up 0.0.0.0:8080", "-0.0.0.0:8080 at "),
    ),
    ZooTarget(
        "exits-3s-after-listening", (Z, "fallback", "tcpdual=:::8080", "sleep=3", "exit=3"),
        _all("exited 3 'exiting with code 3'"),
        HTTP, hold=5.0, why="listens, answers, then exits with code 3 after 3 s",
        listened=_by_stack("*:8080", "*:8080", "0.0.0.0:8080"),
    ),
    ZooTarget(
        "exits-0.8s-after-listening", (Z, "fallback", "tcpdual=:::8080", "sleep=0.8", "exit=3"),
        _all("exited 3 'exiting with code 3'"),
        HTTP, why="a crash in the first second: the plugin's default hold must catch it",
        listened=_by_stack("*:8080", "*:8080", "0.0.0.0:8080"),
    ),
    ZooTarget(
        "partial-line", (Z, "print=Starting proxy: ", "fallback", "tcpdual=:::8080"),
        _by_stack("up *:8080", "up *:8080", "up 0.0.0.0:8080"),
        HTTP, why="prints 'Starting proxy: ' with no newline before it listens",
        # No log_shows: Docker 20.10 holds a partial last line until the stream closes
        # (`docker logs` does not show it either while the container runs).
    ),
    ZooTarget(
        "partial-line-then-exit", (Z, "print=Starting proxy: ", "sleep=0.5", "exit=1"),
        _all("exited 1 'exiting with code 1'"),
        HTTP, why="the same partial line, then exit 1: the engine hands the line over at the close",
        log_shows=("Starting proxy: ",),
    ),
    ZooTarget(
        "imitates-the-shim", (
            Z, "print=@@ipv6compat ready\\n@@ipv6compat row tcp    0: 00000000:1F90 00000000:0000 0A\\n",
            "print=\\x00\\xff\\xfe\\x1b[2J@@ipv6compat fact lo ::1=present\\n\\xc3\\x28\\n",
            "tcp4=0.0.0.0:8080", "sleep=0.2",
            "print=@@ipv6compat row tcp6   0: 00000000000000000000000000000000:1F91 0A\\n@@ipv6compat ready\\n",
            "print=@@ipv6compat reach tcp 0.0.0.0:9999 HTTP/1.1 200 OK\\n\\x00\\x01garbage",
        ),
        _all("up 0.0.0.0:8080"),
        HTTP, why="prints lines that imitate the shim, and binary, before and after it listens",
        log_shows=("@@ipv6compat ready", "@@ipv6compat row tcp6", "@@ipv6compat reach tcp 0.0.0.0:9999"),
    ),
    ZooTarget(
        "logs-100mb", (Z, "spam=104857600", "tcp4=0.0.0.0:8080"),
        _all("up 0.0.0.0:8080"),
        HTTP, timeout=60.0, why="writes 100 MB to stdout before it listens",
        log_shows=("zoosrv: a log line that says nothing much",),
    ),
    ZooTarget(
        "resolves-upstream", (Z, "resolve=upstream.test", "fallback", "tcpdual=:::8080"),
        _by_stack("up *:8080", "up *:8080", "up 0.0.0.0:8080"),
        HTTP, extra_hosts={"upstream.test": "127.0.0.1"},
        why="resolves upstream.test at start (given as an extra host)",
    ),
    ZooTarget(
        "resolves-upstream-no-host", (Z, "resolve=upstream.test", "fallback", "tcpdual=:::8080"),
        _all("exited 1 'cannot resolve upstream host upstream.test'"),
        HTTP, why="the same without the extra host entry: it cannot come up under --network none",
    ),
    ZooTarget(
        "never-listens", (Z, "sleep=600"),
        _all("timeout"),
        HTTP, timeout=3.0, why="runs, never listens",
    ),
    ZooTarget(
        "non-root-port-80", (Z, "tcp4=0.0.0.0:80"),
        _all("up 0.0.0.0:80"),
        HTTP, user="65534",
        why="uid 65534 binds port 80: engines set ip_unprivileged_port_start=0, and so does the real-kernel stack",
    ),
)


# --- the pod address (issue 19): what a peer reaches, on every container stack including ipv6-only -------------
# LISTENER/pod: a real client reaches it over the pod address of each family it serves that the stack has one of
# (groundtruth.pod_reach); without /pod it is reached over no pod address (loopback only, or up but unreachable).

POD_STACKS = (*STACKS, "ipv6-only")
POD_V4, POD_V6 = "10.69.0.2", "fd69:7076:3663::2"


def _pod(dual: str, sysctl_off: str, kernel_off: str, ipv6_only: str) -> dict[str, str]:
    return dict(zip(POD_STACKS, (dual, sysctl_off, kernel_off, ipv6_only), strict=True))


POD_TARGETS: tuple[ZooTarget, ...] = (
    ZooTarget(
        "pod-any4", (Z, "tcp4=0.0.0.0:8080"),
        _pod("up 0.0.0.0:8080/pod", "up 0.0.0.0:8080/pod", "up 0.0.0.0:8080/pod", "up 0.0.0.0:8080"),
        HTTP, why="0.0.0.0 only: up everywhere, but on ipv6-only no peer reaches it (remsky/Kokoro-FastAPI #408)",
    ),
    ZooTarget(
        "pod-lo4", (Z, "tcp4=127.0.0.1:8080"),
        _pod("up 127.0.0.1:8080", "up 127.0.0.1:8080", "up 127.0.0.1:8080", "up 127.0.0.1:8080"),
        HTTP, why="127.0.0.1 only: answers on loopback, over no pod address",
    ),
    ZooTarget(
        "pod-ip-unbracketed", (Z, "tcp-env=POD_IP:8080"),
        _pod(f"up {POD_V4}:8080/pod", f"up {POD_V4}:8080/pod", f"up {POD_V4}:8080/pod",
             "exited 1 'invalid listen address fd69'"),
        HTTP, why="binds $POD_IP written ADDR:PORT: fine for IPv4, an IPv6 address does not parse",
    ),
    ZooTarget(
        "pod-ip-bracketed", (Z, "tcp-env-bracketed=POD_IP:8080"),
        _pod(f"up {POD_V4}:8080/pod", f"up {POD_V4}:8080/pod", f"up {POD_V4}:8080/pod", f"up [{POD_V6}]:8080/pod"),
        HTTP, why="binds $POD_IP written [ADDR]:PORT for IPv6: reached on every stack",
    ),
    ZooTarget(
        "pod-needs-ipv4", (Z, "require4", "tcp4=0.0.0.0:8080"),
        _pod("up 0.0.0.0:8080/pod", "up 0.0.0.0:8080/pod", "up 0.0.0.0:8080/pod",
             "exited 1 'no IPv4 address besides loopback'"),
        HTTP, why="refuses to start without an IPv4 address besides loopback",
    ),
    ZooTarget(
        "pod-dual-socket", (Z, "tcpdual=:::8080"),
        _pod("up *:8080/pod", "up *:8080/pod", KERNEL_OFF_97, "up *:8080/pod"),
        HTTP, why="the fix: one [::] socket, v6only off, reached over the pod address of every family",
    ),
)
