"""Why did a target exit? The error line that explains it, and a one-line hint.

Pure text in, text out: no pytest, no Docker. Works for any kind of target, not only nginx:

* :func:`error_line` picks, from a log tail, the message that explains a failure: nginx's
  ``[emerg]``, the root of a Python or Java exception chain, Node's ``Error: ...``, Go's
  ``listen tcp ...: ...`` or ``panic:``, redis's reason for ``Failed listening``, a shell's
  ``sh: x: not found``, socat's ``E`` lines; else the last error-ish line. Stack frames and
  runtime boilerplate (``at ...``, ``File "..."``, ``throw er;``, ``exit status 1``) never win.
* :func:`hint` names the cause by errno and address family (97 EAFNOSUPPORT, 99 EADDRNOTAVAIL,
  98 EADDRINUSE, 13 on a privileged port, 30 EROFS, name resolution, knob values, required
  environment variables, SIGSYS) and phrases the fix for the :func:`ecosystem` that logged it.

Work is bounded: only the last :data:`MAX_LINES` lines (each cut to :data:`MAX_LINE_CHARS`) and
the last :data:`MAX_LOG_CHARS` of the logs are read, in one pass, with no nested unbounded repeats.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "HINT_ENTRIES", "MAX_LINES", "MAX_LINE_CHARS", "MAX_LOG_CHARS", "PROGRAMS", "Ecosystem", "ecosystem", "error_line",
    "hint",
]

MAX_LINES = 500
MAX_LINE_CHARS = 1000
MAX_LOG_CHARS = 1 << 18

Ecosystem = str  # a built-in ecosystem (nginx, python, node, go, java, redis, shell), a program of hints.toml, "other"

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]{0,512}(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Leading timestamps (docker --timestamps, Go's log, ISO 8601, bracketed), possibly two of them.
_TIMESTAMP = re.compile(
    r"(?:\[?\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?\]?[ \t]){1,2}"
)
_NOISE = re.compile(
    r"at \S.{0,900}(?:\)|:\d+)$"  # a Node or Java stack frame
    r"|\.\.\. \d+ (?:more|common frames omitted)$"
    r"|File \".{1,900}\", line \d+"  # a Python frame
    r"|Traceback \(most recent call last\):$"
    r"|node:[\w/]+:\d+$|throw er; // Unhandled 'error' event$|[~^]+$|Node\.js v\d"
    r"|Emitted 'error' event"
    r"|goroutine \d+ \[|exit status \d+$|\[process exited with code \d+\]$"
    r"|[{}\[\]()]$"
)
_CHAIN = re.compile(r"(?:During handling of the above exception|The above exception was the direct cause)")
_NGINX_LEVEL = re.compile(r"\[(emerg|alert|crit|error|warn|notice|info|debug)\]")
_NGINX_RANKS = {"emerg": (0, "nginx"), "alert": (1, "nginx"), "crit": (1, "nginx"), "error": (2, "nginx")}
_REDIS_FATAL = re.compile(r"Failed listening on port \d+")
_REDIS_CAUSE = re.compile(r"Could not create server \w+ listening socket")
_WARNING = re.compile(r"\bwarn(?:ing)?\b\W|level=warn|\"level\": ?\"warn", re.IGNORECASE)
_JAVA_TOP = re.compile(r"Exception in thread \"[^\"]{0,200}\" [\w$.]+")
_JAVA_CAUSE = re.compile(r"Caused by: [\w$.]+")
_EXCEPTION = re.compile(  # Python's and Node's final line, Java's first: "pkg.NameError: msg"
    r"(?:[A-Za-z_]\w{0,80}\.){0,8}(?:\w{0,80}Error|\w{1,80}error|\w{0,80}Exception|\w{1,80}Exit)"
    r"(?: \[[A-Z_]{1,64}\])?(?::\s|$)"
)
_GO_PANIC = re.compile(r"(?:panic|fatal error): ")
_NET_OP = re.compile(r"\b(?:listen|dial|accept|read|write) (?:tcp|udp|unix|ip)[46]?(?: \S{1,300})?: \S")
_SOCAT = re.compile(r"\bsocat\[\d+\] [EF] ")
_STRERROR = re.compile(
    r"address family not supported|protocol family unavailable|cannot assign requested address"
    r"|address already in use|read-only file system|permission denied|no such file or directory"
    r"|name or service not known|temporary failure in name resolution|no such host|host not found"
    r"|parameter (?:null or )?not set|: not found$|\bE(?:AFNOSUPPORT|ADDRNOTAVAIL|ADDRINUSE|ACCES|ROFS)\b",
    re.IGNORECASE,
)
_FATAL = re.compile(r"\b(?:FATAL|CRITICAL|PANIC)\b|\bfatal:|level=(?:fatal|panic)|\"level\": ?\"(?:fatal|panic)\"")
_ERROR = re.compile(r"\bERROR\b|level=error|\"level\": ?\"error\"|\berror:")
_ERRORISH = re.compile(
    r"error|fail|invalid|required|must be set|not set|cannot|can't|unable|denied|refused|abort|fatal|exception",
    re.IGNORECASE,
)


def _clean(raw: str) -> str:
    """The line as a terminal shows it, without escape codes or trailing space; leading space is kept."""
    line = _ANSI.sub("", raw[: MAX_LINE_CHARS * 4])
    if "\r" in line:  # a terminal shows what follows the last carriage return
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
    return _CONTROL.sub("", line).rstrip()[:MAX_LINE_CHARS]


def _body(line: str) -> tuple[bool, str]:
    """(indented, text) of a cleaned line after any leading timestamps."""
    rest = line[m.end() :] if (m := _TIMESTAMP.match(line)) else line
    return rest[:1].isspace(), rest.strip()


def _rank(indented: bool, body: str) -> tuple[int, str] | None:
    """(rank, kind) of a line as an explanation; lower is better; None: never chosen."""
    if _NOISE.match(body) or _CHAIN.match(body):
        return None
    if level := _NGINX_LEVEL.search(body):
        return _NGINX_RANKS.get(level.group(1))  # warn, notice, info, debug: never the reason
    if _REDIS_FATAL.search(body):
        return 0, "redis-fatal"
    if _REDIS_CAUSE.search(body):
        return 1, "redis-cause"
    if _WARNING.search(body):
        return 4, "warning"
    if not indented:
        if _JAVA_TOP.match(body):
            return 0, "exception"
        if _JAVA_CAUSE.match(body):
            return 0, "cause"
        if _GO_PANIC.match(body):
            return 0, "panic"
        if _EXCEPTION.match(body):
            return 0, "exception"
    rank = 3 if indented else 0
    if _NET_OP.search(body) or _SOCAT.search(body) or _STRERROR.search(body):
        return rank, "strerror"
    if _FATAL.search(body):
        return max(rank, 1), "fatal"
    if _ERROR.search(body):
        return max(rank, 2), "error"
    if _ERRORISH.search(body):
        return 3, "errorish"
    return None


def error_line(lines: Sequence[str]) -> str | None:
    """The line that best explains why a target failed, without escape codes; None for an empty log.

    Decisive messages (nginx ``[emerg]``, exceptions, Go ``listen``/``panic``, strerror texts) beat
    level-tagged lines, which beat any error-ish word; within a rank the last one wins, except that an
    exception chain gives its root cause (Java's last ``Caused by:``, Python's first exception) and
    redis's ``Failed listening`` gives the ``Could not create server ... socket`` line before it.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    split: list[str] = []
    for chunk in lines[-MAX_LINES:]:
        split += chunk.split("\n")
    text = [line for line in map(_clean, split[-MAX_LINES:]) if line.strip()]
    if not text:
        return None
    best: dict[int, int] = {}  # rank -> index of its last line
    stand_in: dict[int, int] = {}  # index -> index of the line to report instead
    chain_root = redis_cause = -1
    chained = False
    for i, line in enumerate(text):
        indented, body = _body(line)
        if _CHAIN.match(body):
            chained = True
        ranked = _rank(indented, body)
        if ranked is None:
            continue
        rank, kind = ranked
        best[rank] = i
        if kind == "cause" or (kind == "exception" and not (chained and chain_root >= 0)):
            chain_root = i
        if kind in ("cause", "exception"):
            stand_in[i], chained = chain_root, False
        elif kind == "redis-cause":
            redis_cause = i
        elif kind == "redis-fatal" and 0 <= i - redis_cause <= 8:
            stand_in[i] = redis_cause
    if best:
        chosen = best[min(best)]
        return text[stand_in.get(chosen, chosen)].strip()
    quiet = [line for line in text if not _NOISE.match(_body(line)[1])]
    return (quiet or text)[-1].strip()


def _load_hints() -> tuple[dict[str, str], dict[str, dict[str, str]], list[tuple[str, str, str, str]]]:
    """hints.toml: program patterns, kind -> program -> text, and every entry with its example."""
    data = tomllib.loads((Path(__file__).parent / "hints.toml").read_text(encoding="utf-8"))
    programs = {name: str(entry["pattern"]) for name, entry in data.get("program", {}).items()}
    table: dict[str, dict[str, str]] = {}
    entries = []
    for entry in data["hint"]:
        kind, program, text, example = (str(entry[k]) for k in ("kind", "program", "text", "example"))
        table.setdefault(kind, {})[program] = text
        entries.append((kind, program, text, example))
    return programs, table, entries


# kind -> program -> hint; "other" is the default. {name} is filled from the signature's match.
PROGRAMS, _HINTS, HINT_ENTRIES = _load_hints()


_ECOSYSTEMS = re.compile(
    "".join(f"(?P<{name}>{pattern})|" for name, pattern in PROGRAMS.items()) +
    r"(?P<nginx>\[(?:emerg|alert|crit)\]|\bnginx: \[|\[(?:error|warn|notice)\] \d+#\d+:)"
    r"|(?P<java>Exception in thread \"|Caused by: [\w$.]+|\bjava\.(?:net|lang|io|nio)\.|\.java:\d+\))"
    r"|(?P<node>\bnode:(?:internal|events|net|dns)\b|Node\.js v\d|\b(?:listen|connect|bind|getaddrinfo) E[A-Z]{3,}\b)"
    r"|(?P<go>goroutine \d+ \[|\b(?:listen|dial) (?:tcp|udp)[46]?\b|\.go:\d+ \+0x)"
    r"|(?P<python>Traceback \(most recent call last\)|\[Errno -?\d+\]|^[ \t]{0,16}File \"[^\"\n]{1,500}\", line \d+)"
    r"|(?P<redis>\bRedis version|\bredis-server\b|Could not create server \w+ listening socket"
    r"|Failed listening on port)"
    r"|(?P<shell>^(?:sh|ash|bash|dash|busybox|httpd|sed|nc|wget|[\w./-]{1,200}\.sh)(?:\[\d+\])?: "
    r"|\bsocat\[\d+\] [EWNIF] )",
    re.MULTILINE,
)


def ecosystem(logs: str, error_line: str | None = None) -> str:
    """Which kind of target wrote this: decided by the error line, else the earliest telling line of the logs."""
    for text in (_ANSI.sub("", error_line or ""), _ANSI.sub("", logs[-MAX_LOG_CHARS:])):
        shell = False
        for found in _ECOSYSTEMS.finditer(text):  # a shell entrypoint often speaks before the service
            if found.lastgroup != "shell":
                return str(found.lastgroup)
            shell = True
        if shell:
            return "shell"
    return "other"



_OOM = "killed by the kernel: out of memory at the cell's memory limit ({memory})"


def oom_error_line(memory: str) -> str:
    """The error line of a target the kernel killed at the cell's memory limit (its hint recognises it)."""
    return _OOM.format(memory=memory)


_SIGNATURES: tuple[tuple[str, re.Pattern[str], str], ...] = (  # (kind, signature, default for {name})
    ("eafnosupport-loopback", re.compile(  # a [::1] listener: its IPv4 fallback is 127.0.0.1, not 0.0.0.0
        r"(?<![\w:])\[?::1\]?(?![\w:])[^\n]{0,80}?(?:address family not supported|eafnosupport|\(97: |\[errno 97\])",
        re.IGNORECASE), ""),
    ("eafnosupport", re.compile(
        r"address family not supported|eafnosupport|protocol family unavailable"
        r"|errno[:=]? ?-?97\b|\(97: |\[errno 97\]", re.IGNORECASE), ""),
    ("eaddrnotavail", re.compile(
        r"cannot assign requested address|eaddrnotavail|address not available"
        r"|errno[:=]? ?-?99\b|\(99: |\[errno 99\]", re.IGNORECASE), ""),
    ("erofs", re.compile(r"read-only file system|\berofs\b|\(30: |\[errno 30\]", re.IGNORECASE), ""),
    ("dns", re.compile(
        r"host not found in (?:upstream|resolver)|no resolver defined|could not be resolved|bad address '|no such host"
        r"|name or service not known|temporary failure in name resolution|nodename nor servname"
        r"|getaddrinfo (?:ENOTFOUND|EAI_AGAIN)|UnknownHostException", re.IGNORECASE), ""),
    ("invalid", re.compile(r"invalid value for [\'\"]?(?P<name>[\w.-]{1,100})|invalid value", re.IGNORECASE),
     "the knob"),
    ("env", re.compile(
        r"(?:\b(?P<name>[A-Z][A-Z0-9_]{0,99})[:\s]{1,4})?(?:is required|must be set|parameter (?:null or )?not set)"),
     "a required environment variable"),
    ("eaddrinuse", re.compile(
        r"address already in use|eaddrinuse|errno[:=]? ?-?98\b|\(98: |\[errno 98\]", re.IGNORECASE), ""),
    ("eacces", re.compile(r"permission denied|\beacces\b", re.IGNORECASE), ""),
    ("oom", re.compile(r"out of memory at the cell's memory limit"), ""),  # oom_error_line()'s words
    ("pids", re.compile(r"can't fork|fork(?:\(\))?: resource temporarily unavailable|pthread_create"
                        r"|unable to create (?:new )?native thread", re.IGNORECASE), ""),
    ("enosys", re.compile(r"socket\W[^\n]{0,80}?(?:\(38: )?function not implemented|\benosys\b", re.IGNORECASE), ""),
)
# A signature that counts only with this text near it (same line, or the frame before or after it).
_CONTEXT = {"eacces": re.compile(r"\b(?:bind|listen)", re.IGNORECASE)}
_CONTEXT_BEFORE, _CONTEXT_AFTER = 300, 200


def _search(kind: str, pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    context = _CONTEXT.get(kind)
    for found in pattern.finditer(text):
        if context is None:
            return found
        if context.search(text, max(0, found.start() - _CONTEXT_BEFORE), found.end() + _CONTEXT_AFTER):
            return found
    return None


_SIGSYS = 128 + 31


def hint(logs: str, error_line: str | None, *, exit_code: int | None = None, stack: str | None = None) -> str | None:
    """A one-line hint for a known failure signature, phrased for the target's ecosystem; or None.

    The error line wins over the logs; within the logs the earliest signature (the root cause) wins.
    ``exit_code`` and ``stack`` (a stack name) add what text cannot show: a target killed by SIGSYS
    before writing anything (exit code 159), as a 32-bit x86 binary is under ``ipv6-kernel-off``.
    """
    logs = _ANSI.sub("", logs[-MAX_LOG_CHARS:])
    line = _ANSI.sub("", error_line or "")
    if exit_code == _SIGSYS and not logs.strip() and not line:
        return _sigsys(stack)
    for text in (line, logs):
        found = [(m.start(), i, m) for i, (k, p, _) in enumerate(_SIGNATURES) if (m := _search(k, p, text))]
        if found:
            _, i, match = min(found, key=lambda f: f[:2])
            kind, _, default = _SIGNATURES[i]
            table = _HINTS[kind]
            text_hint = table.get(ecosystem(logs, line), table["other"])
            return text_hint.format(name=match.groupdict().get("name") or default)
    return None


def _sigsys(stack: str | None) -> str:
    return (
        "killed by SIGSYS (exit code 159) before writing anything: a seccomp filter refused a system call,"
        " often a 32-bit binary's; use a build for the host's architecture"
    )
