"""Unit tests for diagnose.py: the error line and the hint, for any kind of target.

The log snippets are written for these tests in the shape each runtime prints (frames, boilerplate,
object dumps, timestamps); none is copied from a project's output.
"""

from __future__ import annotations

import pytest

from pytest_ipv6compat.diagnose import HINT_ENTRIES, MAX_LINES, PROGRAMS, ecosystem, error_line, hint

EMERG_97 = "nginx: [emerg] socket() [::]:56000 failed (97: Address family not supported by protocol)"
INVALID = "entrypoint: invalid value for PL_IPV6_DISABLE: 'maybe' (use 1/true/yes/on, 0/false/no/off or leave unset)"

# ---------------------------------------------------------------- the classifier's cases (were test_hints.py)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (EMERG_97, "the kernel has no IPv6 (errno 97): drop the [::] listen lines or make them conditional"),
        ("python: OSError: [Errno 97] Address family not supported by protocol", "the kernel has no IPv6"),
        ("nginx: [emerg] bind() to [::1]:56000 failed (99: Cannot assign requested address)",
         "IPv6 is disabled by sysctl (errno 99): there is no ::1"),
        ("sed: can't create temp file '/etc/proxy/proxy.conf.tmplXXXXXX': Read-only file system",
         "the entrypoint edits a config directory mounted read-only (a ConfigMap?): render into a writable path"),
        ("nginx: [emerg] open() \"/etc/nginx/conf.d/default.conf\" failed (30: Read-only file system)",
         "mounted read-only"),
        ('nginx: [emerg] host not found in upstream "api:51200" in /etc/nginx/conf.d/proxy.conf:12',
         "a hostname does not resolve: there is no DNS inside --network none"),
        ("2025/01/01 10:00:00 [error] 7#7: *1 no resolver defined to resolve api.pixie.svc", "no DNS"),
        (INVALID, "the target rejected the value of PL_IPV6_DISABLE: use a documented value"),
        ("proxy: invalid value 'maybe'", "the target rejected the value of the knob"),
        ("entrypoint: PL_DOMAIN_NAME is required", "PL_DOMAIN_NAME is not set: add it to the target's base env"),
        ("/entrypoint.sh: line 4: PL_DOMAIN_NAME: parameter null or not set", "PL_DOMAIN_NAME is not set"),
        ("sh: PL_DOMAIN_NAME: parameter not set", "PL_DOMAIN_NAME is not set"),
        ("FATAL: environment variable PL_DOMAIN_NAME must be set", "PL_DOMAIN_NAME is not set"),
        ("error: ssl_certificate is required", "a required environment variable is not set"),
    ],
)
def test_hint_known_signatures(line: str, expected: str) -> None:
    got = hint("", line)
    assert got is not None
    assert expected in got
    assert hint(f"starting\n{line}\nexiting\n", None) == got  # found in the logs too


def test_hint_prefers_the_error_line_then_the_earliest_signature() -> None:
    logs = "warn: sed: /etc/x: Read-only file system\n" + EMERG_97
    assert str(hint(logs, EMERG_97)).startswith("the kernel has no IPv6")
    assert str(hint(logs, None)).startswith("the entrypoint edits")  # the root cause comes first
    assert hint("nginx: [emerg] unknown directive \"lissen\"", "nginx: [emerg] unknown directive") is None
    assert hint("", None) is None


# ---------------------------------------------------------------- realistic logs, one or more per ecosystem

NGINX = """\
/docker-entrypoint.sh: Configuration complete; ready for start up
nginx: [alert] could not open error log file: open() "/var/log/nginx/error.log" failed (13: Permission denied)
nginx: [warn] the "user" directive makes sense only if the master process runs with super-user privileges
2025/01/01 10:00:00 [emerg] 1#1: socket() [::]:8080 failed (97: Address family not supported by protocol)
nginx: [emerg] socket() [::]:8080 failed (97: Address family not supported by protocol)
"""

PYTHON_97 = """\
INFO:server:binding [::]:8080
Traceback (most recent call last):
  File "/app/server.py", line 31, in <module>
    main()
  File "/app/server.py", line 24, in main
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/socket.py", line 232, in __init__
    _socket.socket.__init__(self, family, type, proto, fileno)
OSError: [Errno 97] Address family not supported by protocol
"""

PYTHON_CHAIN = """\
Traceback (most recent call last):
  File "/app/app.py", line 8, in bind
    sock.bind(("::1", 8080))
OSError: [Errno 99] Cannot assign requested address

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/app/app.py", line 14, in <module>
    bind()
  File "/app/app.py", line 10, in bind
    raise RuntimeError("could not start the server") from exc
RuntimeError: could not start the server
"""

ASYNCIO_99 = """\
Traceback (most recent call last):
  File "/app/serve.py", line 20, in <module>
    asyncio.run(main())
  File "/usr/lib/python3.11/asyncio/base_events.py", line 1536, in create_server
    raise OSError(err.errno, msg) from None
OSError: [Errno 99] error while attempting to bind on address ('::1', 8080, 0, 0): cannot assign requested address
"""

NODE_97 = """\
Server starting on port 8080
node:events:497
      throw er; // Unhandled 'error' event
      ^

Error: listen EAFNOSUPPORT: address family not supported ::1:8080
    at Server.setupListenHandle [as _listen2] (node:net:1917:21)
    at listenInCluster (node:net:1996:12)
    at GetAddrInfoReqWrap.doListen [as callback] (node:net:2145:7)
Emitted 'error' event on Server instance at:
    at emitErrorNT (node:net:1975:8)
    at process.processTicksAndRejections (node:internal/process/task_queues:82:21) {
  code: 'EAFNOSUPPORT',
  errno: -97,
  syscall: 'listen',
  address: '::1',
  port: 8080
}

Node.js v20.11.0
"""

NODE_99 = NODE_97.replace("EAFNOSUPPORT: address family not supported", "EADDRNOTAVAIL: address not available").replace(
    "errno: -97", "errno: -99"
)

JAVA = """\
Starting server on [::]:8080
Exception in thread "main" java.lang.IllegalStateException: server failed to start
\tat example.App.start(App.java:30)
\tat example.App.main(App.java:12)
Caused by: java.io.UncheckedIOException: bind failed
\tat example.App.bind(App.java:41)
\t... 2 more
Caused by: java.net.SocketException: Protocol family unavailable
\tat java.base/sun.nio.ch.Net.bind0(Native Method)
\tat java.base/sun.nio.ch.Net.bind(Net.java:565)
\t... 3 more
"""

JAVA_99 = """\
Exception in thread "main" java.net.BindException: Cannot assign requested address
\tat java.base/sun.nio.ch.Net.bind0(Native Method)
\tat java.base/sun.nio.ch.ServerSocketChannelImpl.netBind(ServerSocketChannelImpl.java:338)
\tat example.Main.main(Main.java:9)
"""

GO_FATAL = """\
2025/01/01 10:00:00 config loaded from /etc/app.yaml
2025/01/01 10:00:00 listen tcp [::]:8080: socket: address family not supported by protocol
exit status 1
"""

GO_PANIC = """\
panic: listen tcp [::1]:8080: bind: cannot assign requested address

goroutine 1 [running]:
main.main()
\t/src/main.go:17 +0x1c5
exit status 2
"""

REDIS = """\
1:C 01 Jan 2025 10:00:00.000 * oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo
1:C 01 Jan 2025 10:00:00.000 * Redis version=7.2.4, bits=64, commit=00000000, modified=0, pid=1, just started
1:M 01 Jan 2025 10:00:00.001 # Warning: Could not create server TCP listening socket ::*:6379: \
unable to bind socket, errno: 97
1:M 01 Jan 2025 10:00:00.001 # Failed listening on port 6379 (tcp), aborting.
"""

BUSYBOX = """\
starting httpd on [::]:8080
httpd: bind: Address family not supported by protocol
"""

SOCAT = """\
2025/01/01 10:00:00 socat[7] N listening on AF=10 [::]:8080
2025/01/01 10:00:00 socat[7] E socket(10, 1, 6): Address family not supported by protocol
2025/01/01 10:00:00 socat[7] N exit(1)
"""

SHELL_NOT_FOUND = """\
starting the proxy
/entrypoint.sh: line 3: envsubst: not found
"""

CASES = [  # (id, log, error line, ecosystem, words the hint must contain)
    ("nginx-97", NGINX, "nginx: [emerg] socket() [::]:8080 failed (97: Address family not supported by protocol)",
     "nginx", ("errno 97", "listen lines")),
    ("python-97", PYTHON_97, "OSError: [Errno 97] Address family not supported by protocol",
     "python", ("errno 97", "OSError", "0.0.0.0")),
    ("python-chain-99", PYTHON_CHAIN, "OSError: [Errno 99] Cannot assign requested address",
     "python", ("errno 99", "::1", "'127.0.0.1'")),
    ("asyncio-99", ASYNCIO_99, ASYNCIO_99.splitlines()[-1], "python", ("errno 99", "catch OSError errno 99")),
    ("node-97", NODE_97, "Error: listen EAFNOSUPPORT: address family not supported ::1:8080",
     "node", ("errno 97", "server.listen(port)", "'0.0.0.0'")),
    ("node-99", NODE_99, "Error: listen EADDRNOTAVAIL: address not available ::1:8080",
     "node", ("errno 99", "server.listen(port, '127.0.0.1')")),
    ("java-97", JAVA, "Caused by: java.net.SocketException: Protocol family unavailable",
     "java", ("errno 97", "preferIPv4Stack")),
    ("java-99", JAVA_99, 'Exception in thread "main" java.net.BindException: Cannot assign requested address',
     "java", ("errno 99", "127.0.0.1")),
    ("go-fatal-97", GO_FATAL,
     "2025/01/01 10:00:00 listen tcp [::]:8080: socket: address family not supported by protocol",
     "go", ("errno 97", '":PORT"')),
    ("go-panic-99", GO_PANIC, "panic: listen tcp [::1]:8080: bind: cannot assign requested address",
     "go", ("errno 99", "127.0.0.1:PORT")),
    ("redis-97", REDIS,
     "1:M 01 Jan 2025 10:00:00.001 # Warning: Could not create server TCP listening socket ::*:6379:"
     " unable to bind socket, errno: 97",
     "redis", ("errno 97", "bind * -::*")),
    ("busybox-97", BUSYBOX, "httpd: bind: Address family not supported by protocol",
     "shell", ("errno 97", "httpd -p 0.0.0.0:PORT")),
    ("socat-97", SOCAT, "2025/01/01 10:00:00 socat[7] E socket(10, 1, 6): Address family not supported by protocol",
     "shell", ("errno 97", "TCP4-LISTEN")),
]


@pytest.mark.parametrize(("log", "line", "eco", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_line_and_hint_per_ecosystem(log: str, line: str, eco: str, words: tuple[str, ...]) -> None:
    assert error_line(log.splitlines()) == line
    assert ecosystem(log, line) == eco
    got = hint(log, line)
    assert got is not None
    for word in words:
        assert word in got
    assert "\n" not in got
    assert not got.endswith(".")


def test_node_error_line_is_never_a_frame_or_boilerplate() -> None:
    line = error_line(NODE_97.splitlines())
    assert line is not None
    assert not line.startswith(("at ", "node:", "throw er", "^", "Emitted", "Node.js"))


def test_shell_and_generic_lines() -> None:
    assert error_line(SHELL_NOT_FOUND.splitlines()) == "/entrypoint.sh: line 3: envsubst: not found"
    assert error_line(["sh -c", "fatal: no config"]) == "fatal: no config"
    assert error_line(["starting", "config ok", "bye"]) == "bye"  # nothing error-ish: the last line
    assert error_line([EMERG_97]) == EMERG_97


def test_python_chain_during_handling_gives_the_first_exception() -> None:
    log = PYTHON_CHAIN.replace("The above exception was the direct cause of the following exception",
                               "During handling of the above exception, another exception occurred")
    log = log.replace("    raise RuntimeError", "    ~~~~~^^^^^^^^^^^^^^\n    raise RuntimeError")
    assert error_line(log.splitlines()) == "OSError: [Errno 99] Cannot assign requested address"
    two = PYTHON_97 + "retrying\n" + PYTHON_CHAIN  # two unrelated tracebacks: the last one's root
    assert error_line(two.splitlines()) == "OSError: [Errno 99] Cannot assign requested address"


def test_logged_errors_without_a_traceback() -> None:
    uvicorn = [
        "INFO:     Started server process [1]",
        "ERROR:    [Errno 99] error while attempting to bind on address ('::1', 8000, 0, 0): cannot assign requested"
        " address",
        "INFO:     Waiting for application shutdown.",
        "INFO:     Application shutdown complete.",
    ]
    assert error_line(uvicorn) == uvicorn[1]
    assert ecosystem("\n".join(uvicorn)) == "python"
    logrus = ['time="2025-01-01T10:00:00Z" level=info msg=starting',
              'time="2025-01-01T10:00:00Z" level=fatal msg="listen tcp [::]:9000: socket: address family not supported'
              ' by protocol"']
    assert error_line(logrus) == logrus[1]
    assert "errno 97" in str(hint("\n".join(logrus), logrus[1]))


def test_a_shell_entrypoint_does_not_hide_the_service_it_starts() -> None:
    assert ecosystem(NGINX) == "nginx"
    assert ecosystem("/entrypoint.sh: starting\n" + NODE_97) == "node"
    assert ecosystem(SHELL_NOT_FOUND) == "shell"
    assert "listen lines" in str(hint(NGINX, None))


def test_redis_failed_listening_alone_is_the_line() -> None:
    log = REDIS.splitlines()
    del log[2]
    assert error_line(log) == "1:M 01 Jan 2025 10:00:00.001 # Failed listening on port 6379 (tcp), aborting."


def test_nginx_emerg_beats_an_earlier_alert_and_warnings() -> None:
    assert error_line(["nginx: [alert] could not open error log file", "nginx: [warn] conflicting server name"]) == (
        "nginx: [alert] could not open error log file"
    )
    assert str(error_line(NGINX.splitlines())).startswith("nginx: [emerg]")


# ---------------------------------------------------------------- hints keyed to errno, phrased per ecosystem


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("OSError: [Errno 98] Address already in use", ("errno 98", "IPV6_V6ONLY")),
        ("Error: listen EADDRINUSE: address already in use :::8080", ("errno 98", "ipv6Only")),
        ("listen tcp 0.0.0.0:8080: bind: address already in use", ("errno 98", '"tcp6"')),
        ("nginx: [emerg] bind() to 0.0.0.0:8080 failed (98: Address already in use)", ("errno 98", "ipv6only=off")),
        ("nginx: [emerg] bind() to 0.0.0.0:80 failed (13: Permission denied)", ("errno 13", "nginx master")),
        ("Error: listen EACCES: permission denied 0.0.0.0:80", ("errno 13", "CAP_NET_BIND_SERVICE")),
        ("listen tcp :80: bind: permission denied", ("errno 13", "1024")),
        ("httpd: bind: Permission denied", ("errno 13",)),
        ("socket.gaierror: [Errno -2] Name or service not known", ("no DNS", "/etc/hosts")),
        ("Error: getaddrinfo ENOTFOUND api.internal", ("no DNS",)),
        ("dial tcp: lookup api on 127.0.0.11:53: no such host", ("no DNS",)),
        ("java.net.UnknownHostException: api.internal", ("no DNS",)),
        ("OSError: [Errno 30] Read-only file system: '/etc/app/app.conf'", ("read-only", "tmpfs")),
    ],
)
def test_hint_keyed_to_errno(line: str, words: tuple[str, ...]) -> None:
    got = hint(line, line)
    assert got is not None
    for word in words:
        assert word in got


def test_permission_denied_without_a_bind_is_not_a_port_hint() -> None:
    assert hint("", "cat: /etc/shadow: Permission denied") is None


def test_python_privileged_port_is_seen_through_the_frame() -> None:
    log = 'Traceback (most recent call last):\n  File "/app/s.py", line 3, in <module>\n    s.bind(("", 80))\n'
    log += "PermissionError: [Errno 13] Permission denied\n"
    assert error_line(log.splitlines()) == "PermissionError: [Errno 13] Permission denied"
    assert "errno 13" in str(hint(log, "PermissionError: [Errno 13] Permission denied"))


def test_same_errno_is_phrased_for_each_ecosystem() -> None:
    hints = {hint(log, error_line(log.splitlines())) for case, log, *_ in CASES if case.endswith("-97")}
    assert len(hints) == 7  # nginx, python, node, java, go, redis, shell: no two targets told the same thing


@pytest.mark.parametrize(
    ("stack", "words"),
    [("ipv6-kernel-off", ("SIGSYS", "seccomp")), (None, ("SIGSYS", "seccomp")), ("dual-stack", ("SIGSYS",))],
)
def test_sigsys_with_no_log_is_recognised_from_the_exit_code(stack: str | None, words: tuple[str, ...]) -> None:
    got = hint("", None, exit_code=159, stack=stack)
    assert got is not None
    for word in words:
        assert word in got


def test_sigsys_needs_the_exit_code_and_an_empty_log() -> None:
    assert hint("", None) is None
    assert hint("", None, exit_code=1, stack="ipv6-kernel-off") is None
    assert "SIGSYS" not in str(hint(EMERG_97, EMERG_97, exit_code=159, stack="ipv6-kernel-off"))


# ---------------------------------------------------------------- messy input: escape codes, empty, long, noisy


def test_ansi_codes_are_stripped_from_the_line_and_ignored_by_the_hint() -> None:
    lines = [
        "\x1b[32m2025-01-01T10:00:00.000Z\x1b[0m \x1b[1minfo\x1b[22m: starting",
        "\x1b[31mError: listen EADDRNOTAVAIL: address not available ::1:8080\x1b[39m",
        "\x1b[2m    at Server.setupListenHandle [as _listen2] (node:net:1917:21)\x1b[22m",
        "\x1b]0;title\x07done\r",
    ]
    assert error_line(lines) == "Error: listen EADDRNOTAVAIL: address not available ::1:8080"
    got = hint("\n".join(lines), None)
    assert got is not None
    assert got.startswith("IPv6 is disabled by sysctl (errno 99)")
    assert "server.listen" in got


def test_empty_logs() -> None:
    assert error_line([]) is None
    assert error_line(["", "   ", "\x1b[0m"]) is None
    assert hint("", None) is None
    assert hint("   \n", "") is None
    assert ecosystem("", None) == "other"


def test_early_error_beats_200_lines_of_noise() -> None:
    lines = ["booting", *PYTHON_97.splitlines()]
    lines += [f"worker {i}: Shutting down" for i in range(100)] + ["exit status 1"] * 90
    assert len(lines) >= 200
    assert error_line(lines) == "OSError: [Errno 97] Address family not supported by protocol"
    generic = ["loading config", "config: invalid listen address '[::]:x'", *(["Shutting down", "exit status 1"] * 100)]
    assert error_line(generic) == "config: invalid listen address '[::]:x'"


def test_timestamps_do_not_hide_frames_or_exceptions() -> None:
    stamp = "2025-01-01T10:00:00.123456789Z "
    lines = [stamp + line for line in NODE_97.splitlines()]
    assert error_line(lines) == stamp + "Error: listen EAFNOSUPPORT: address family not supported ::1:8080"
    lines = [stamp + line for line in JAVA.splitlines()]
    assert error_line(lines) == stamp + "Caused by: java.net.SocketException: Protocol family unavailable"


def test_only_the_tail_is_read() -> None:
    lines = [EMERG_97, *(f"request {i} served" for i in range(MAX_LINES))]
    assert error_line(lines) == f"request {MAX_LINES - 1} served"  # the [emerg] line is out of reach
    assert error_line(["\n".join(lines)]) == f"request {MAX_LINES - 1} served"  # one string of many lines
    assert error_line("line one\nsh: x: not found\n") == "sh: x: not found"  # a str is split, not iterated


def test_pathological_input_stays_linear() -> None:
    """Long runs that would make careless patterns quadratic: finishing at all is the test."""
    blob = "A" * 200_000
    assert str(hint(blob + " is required", None)).startswith("a required environment variable is not set")
    assert hint("\n" * 200_000 + "File", None) is None
    assert error_line([" " * 100_000 + "x" * 100_000, "at " + "(" * 100_000]) is not None
    assert hint("bind " * 50_000, "listen " * 50_000) is None


def test_deterministic() -> None:
    for _, log, *_ in CASES:
        first = (error_line(log.splitlines()), hint(log, error_line(log.splitlines())))
        for _ in range(3):
            assert (error_line(log.splitlines()), hint(log, error_line(log.splitlines()))) == first
        assert error_line(log) == first[0]  # the whole log as one string gives the same line


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("killed by the kernel: out of memory at the cell's memory limit (64m)", ("memory", "--ipv6-memory")),
        ("sh: can't fork: Resource temporarily unavailable", ("processes", "--ipv6-pids")),
        ("listen tcp :8080: socket: function not implemented", ("socketcall", "32-bit")),
        ("nginx: [emerg] socket() 0.0.0.0:80 failed (38: Function not implemented)", ("socketcall",)),
    ],
)
def test_bounds_and_i386_have_hints(line: str, words: tuple[str, ...]) -> None:
    got = hint(line, line)
    assert got is not None
    for word in words:
        assert word in got


# ---------------------------------------------------------------- hints.toml, one test per entry


@pytest.mark.parametrize(
    ("kind", "program", "text", "example"), HINT_ENTRIES, ids=[f"{k}-{p}" for k, p, _, _ in HINT_ENTRIES]
)
def test_every_hint_entry_is_what_its_example_gets(kind: str, program: str, text: str, example: str) -> None:
    """Each entry of hints.toml: its example log is recognised as its program and gets exactly its text."""
    if program == "other":  # the default: a program with no entry of its own for this kind
        assert ecosystem(example) not in {p for k, p, *_ in HINT_ENTRIES if k == kind and p != "other"}
    else:
        assert ecosystem(example) == program
    line = error_line(example.splitlines())
    assert hint(example, None) == text.format(name=_NAME_IN.get(kind, ""))
    assert hint(example, line) == text.format(name=_NAME_IN.get(kind, ""))  # as a verdict gives it


_NAME_IN = {"invalid": "PL_IPV6_DISABLE", "env": "PL_DOMAIN_NAME"}


def test_every_program_and_kind_of_hints_toml_is_known() -> None:
    for kind in {k for k, *_ in HINT_ENTRIES}:  # the default a program without its own entry gets
        assert (kind, "other") in {(k, p) for k, p, *_ in HINT_ENTRIES}, kind
    builtin = {"nginx", "python", "node", "go", "java", "redis", "shell", "other"}
    assert {p for _, p, *_ in HINT_ENTRIES} <= builtin | set(PROGRAMS)
    daemons = {"haproxy", "lighttpd", "dnsmasq", "mosquitto", "sshd", "chronyd", "memcached"}
    assert daemons <= {p for k, p, *_ in HINT_ENTRIES if k == "eafnosupport"}  # each names its own option
