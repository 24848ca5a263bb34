"""Ground truth about a running container, by a path independent of the plugin's shim.

- ``docker inspect`` gives the container's host PID, whether it runs, and its exit code;
- ``nsenter -t PID -n ss -H -l -n -t -u`` gives its listeners in ``ss``'s own notation:
  ``0.0.0.0:80``, ``[::]:80`` (an IPv6 socket with v6only on), ``*:80`` (an IPv6 socket with
  v6only off, serving both families), ``udp/`` in front of UDP ones;
- the host's Python, run with ``nsenter -t PID -n`` (``groundtruth_client.py``), connects to
  each listener over the loopback of each family it serves and says what happened.

:func:`parse_proc_net` reads an IPv4 ``/proc/net/tcp`` or ``/proc/net/udp`` table into the same
notation, for kernels whose ``ss`` cannot be run (User-mode Linux, read over ``mconsole.py``).

Nothing here imports ``pytest_ipv6compat.probe`` or reads the shim's output. The parsers and the
judgement are pure; :func:`observe` and :func:`facts` talk to Docker and nsenter.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIENT = Path(__file__).resolve().parent / "groundtruth_client.py"
SUCCESS_STATUS = ("2", "3")  # status classes that count as success for http and https


class GroundTruthError(Exception):
    """A fact could not be taken (nsenter failed, ss printed something unexpected); the message says which."""


@dataclass(frozen=True)
class SsListener:
    """One listening socket as ``ss`` prints it."""

    proto: str  # "tcp" | "udp"
    address: str  # "0.0.0.0", "127.0.0.1", "[::]", "*", "[::1]", ...
    port: int

    @property
    def notation(self) -> str:
        """``0.0.0.0:80``, ``*:80``, ``[::]:80``; ``udp/`` in front for UDP."""
        return ("udp/" if self.proto == "udp" else "") + f"{self.address}:{self.port}"

    @property
    def families(self) -> tuple[int, ...]:
        """The address families this socket serves: ``*`` is one IPv6 socket with v6only off."""
        if self.address == "*":
            return (4, 6)
        if self.address.startswith("[::ffff:") and "." in self.address:
            return (4,)  # an IPv6 socket bound to a v4-mapped address
        return (6,) if self.address.startswith("[") else (4,)

    def reaches_loopback(self, family: int) -> bool:
        """Can a client on this family's loopback reach this socket at all (address-wise)?"""
        if self.address in ("*", "0.0.0.0", "[::]"):
            return True
        return self.address in (("127.0.0.1",) if family == 4 else ("[::1]",))


def parse_ss(text: str, *, source: str = "ss output") -> tuple[SsListener, ...]:
    """Parse ``ss -H -l -n -t -u`` (``Netid State Recv-Q Send-Q Local Peer``), sorted and deduplicated."""
    found: set[SsListener] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        cols = line.split()
        if len(cols) < 6 or cols[0] not in ("tcp", "udp"):
            raise GroundTruthError(f"{source} line {number}: not 'Netid State Recv-Q Send-Q Local Peer': {raw!r}")
        local = cols[4]
        address, sep, port = local.rpartition(":")
        if not sep or not port.isdigit():
            raise GroundTruthError(f"{source} line {number}: local address {local!r} has no port")
        if "%" in address:  # a scope: 127.0.0.53%lo -> 127.0.0.53, [fe80::1%lo] -> [fe80::1]
            address = address.split("%", 1)[0] + ("]" if address.startswith("[") else "")
        found.add(SsListener(cols[0], address, int(port)))
    return tuple(sorted(found, key=lambda s: (s.port, s.proto, s.address)))


_TCP_LISTEN, _UDP_UNCONNECTED = "0A", "07"  # /proc/net/tcp and /proc/net/udp "st" column


def parse_proc_net(text: str, proto: str, *, source: str = "/proc/net") -> tuple[SsListener, ...]:
    """Listeners in ``/proc/net/tcp`` (state 0A, LISTEN) or ``/proc/net/udp`` (state 07, bound, not
    connected), in :func:`parse_ss`'s notation, sorted and deduplicated.

    IPv4 tables only: ``/proc/net/tcp6`` cannot tell a ``[::]`` socket with v6only on from one
    serving both families (``*``), so it is refused rather than guessed at. Addresses are the
    kernel's ``%08X`` of the 32-bit word as it lies in memory (host byte order); ports are plain hex.
    """
    if proto not in ("tcp", "udp"):
        raise GroundTruthError(f"{source}: protocol {proto!r} is not tcp or udp")
    state = _TCP_LISTEN if proto == "tcp" else _UDP_UNCONNECTED
    found: set[SsListener] = set()
    rows = text.splitlines()
    if not rows or rows[0].split()[:2] != ["sl", "local_address"]:
        raise GroundTruthError(f"{source}: not a /proc/net/{proto} table: {text[:80]!r}")
    for number, raw in enumerate(rows[1:], 2):
        cols = raw.split()
        if not cols:
            continue
        if len(cols) < 4 or not cols[0].endswith(":"):
            raise GroundTruthError(f"{source} line {number}: not 'sl: local rem st ...': {raw!r}")
        local, remote, st = cols[1], cols[2], cols[3]
        address, sep, port = local.partition(":")
        if not sep or len(address) != 8 or len(port) != 4:
            raise GroundTruthError(f"{source} line {number}: local address {local!r} is not an IPv4 HEX:PORT "
                                   "(an IPv6 table cannot say v6only, so it is not read)")
        if st != state or (proto == "udp" and not remote.endswith(":0000")):
            continue
        try:
            ip = socket.inet_ntoa(struct.pack("=I", int(address, 16)))
            found.add(SsListener(proto, ip, int(port, 16)))
        except ValueError:
            raise GroundTruthError(f"{source} line {number}: {local!r} is not hexadecimal") from None
    return tuple(sorted(found, key=lambda s: (s.port, s.proto, s.address)))


@dataclass(frozen=True)
class Probe:
    """How a target is checked: the kind for its TCP listeners, and the HTTP path."""

    kind: str = "tcp"  # tcp | http | https | none
    path: str = "/"


@dataclass(frozen=True)
class FamilyResult:
    family: int
    result: str  # see groundtruth_client.py
    detail: str

    def success(self, proto: str, probe: Probe) -> bool | None:
        """None: the family has no loopback here, or the probe is ``none`` (not judged)."""
        if self.result == "no-loopback" or probe.kind == "none":
            return None
        if proto == "udp":  # no generic UDP request exists: a datagram that is not refused is success
            return self.result in ("reply", "no-reply")
        if probe.kind == "tcp":
            return self.result == "accepted"
        code = self.detail.split(" ")[1] if self.result == "status" and " " in self.detail else ""
        return code[:1] in SUCCESS_STATUS and len(code) == 3


@dataclass(frozen=True)
class ListenerTruth:
    listener: SsListener
    results: tuple[FamilyResult, ...]

    def judged(self, probe: Probe) -> str:
        """``answers``, ``silent``, ``partial`` (some served families succeed, some fail), or ``unjudged``."""
        if probe.kind == "none":
            return "unjudged"
        verdicts = [r.success(self.listener.proto, probe) for r in self.results]
        judged = [v for v in verdicts if v is not None]
        if judged and all(judged):
            return "answers"
        if not any(judged):
            return "silent"  # incl. a listener none of whose families has a loopback here
        return "partial"

    def token(self, probe: Probe) -> str:
        judged = self.judged(probe)
        return self.listener.notation + {"silent": "/silent", "partial": "/partial"}.get(judged, "")

    def describe(self) -> str:
        parts = [f"IPv{r.family} {r.result}" + (f" ({r.detail})" if r.detail else "") for r in self.results]
        return f"{self.listener.notation}: " + "; ".join(parts)


@dataclass(frozen=True)
class Truth:
    """What a container really did, taken without the plugin."""

    outcome: str  # up | exited | timeout
    exit_code: int | None = None
    listeners: tuple[ListenerTruth, ...] = ()
    had_listened: tuple[str, ...] = ()  # for exited: the listeners seen before the exit
    has_v6_loopback: bool | None = None
    logs_tail: str = ""
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())
    changes: tuple[str, ...] = ()  # "+0.0.0.0:8081 at 0.31 s": the table's changes after it first had a listener

    def render(self, probe: Probe) -> str:
        """In the expectation syntax: ``up LISTENER...``, ``exited CODE``, ``timeout``."""
        if self.outcome == "up":
            return " ".join(["up", *sorted(lt.token(probe) for lt in self.listeners)])
        if self.outcome == "exited":
            return f"exited {self.exit_code}"
        return "timeout"

    def describe(self, probe: Probe) -> str:
        v6 = {True: "::1 present", False: "::1 absent", None: "::1 not checked"}[self.has_v6_loopback]
        when = f" after {self.seconds:.1f}s" if self.seconds else " (a snapshot)"
        lines = [f"ground truth: {self.render(probe)}{when} ({v6})"]
        lines += [f"  {lt.describe()}" for lt in self.listeners]
        if self.had_listened:
            lines.append(f"  had listened on: {' '.join(self.had_listened)}")
        if self.changes:
            lines.append(f"  listener table changed: {', '.join(self.changes)}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.logs_tail:
            lines.append("  log tail: " + self.logs_tail.replace("\n", "\n    "))
        return "\n".join(lines)


def checks_for(listeners: Sequence[SsListener], probe: Probe) -> list[dict[str, Any]]:
    """The client checks: one per listener and family it serves."""
    return [
        {"proto": s.proto, "family": fam, "port": s.port, "probe": probe.kind, "path": probe.path}
        for s in listeners
        for fam in s.families
    ]


def combine(listeners: Sequence[SsListener], results: Sequence[Mapping[str, str]]) -> tuple[ListenerTruth, ...]:
    """Pair the client's results (in :func:`checks_for` order) with their listeners."""
    out: list[ListenerTruth] = []
    it = iter(results)
    for s in listeners:
        fam_results = []
        for fam in s.families:
            r = next(it)
            if not s.reaches_loopback(fam):
                r = {"result": "no-loopback", "detail": f"bound to {s.address}, not this family's loopback"}
            fam_results.append(FamilyResult(fam, r["result"], r.get("detail", "")))
        out.append(ListenerTruth(s, tuple(fam_results)))
    return tuple(out)


# --- facts from a live container (Docker and nsenter) ---------------------------------------------


def _nsenter(pid: int, argv: Sequence[str], *, timeout: float) -> str:
    try:
        done = subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GroundTruthError(f"nsenter -t {pid} -n {argv[0]} took over {timeout:g}s") from None
    if done.returncode != 0:
        raise GroundTruthError(f"nsenter -t {pid} -n {' '.join(argv[:2])}... exited {done.returncode}: "
                               f"{done.stderr.strip()[:200]}")
    return done.stdout


def state(container: Any) -> tuple[bool, int, int | None]:
    """(running, host PID, exit code) from ``docker inspect``."""
    container.reload()
    st = container.attrs["State"]
    running = bool(st.get("Running"))
    return running, int(st.get("Pid") or 0), (None if running else int(st.get("ExitCode", -1)))


def listeners_of(pid: int) -> tuple[SsListener, ...]:
    text = _nsenter(pid, ["ss", "-H", "-l", "-n", "-t", "-u"], timeout=10)
    return parse_ss(text, source=f"ss in the namespace of PID {pid}")


def _exited(pid: int) -> bool:
    """Has ``pid`` exited? A zombie (not yet reaped by the engine's shim) has no namespaces left."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] in ("Z", "X") or not Path(f"/proc/{pid}/ns/net").exists()


def _listeners_while_running(container: Any, pid: int) -> tuple[SsListener, ...] | None:
    """The listeners of ``pid``, or None once it has exited (then the engine has noticed, too)."""
    try:
        return listeners_of(pid)
    except GroundTruthError:
        if not _exited(pid):
            raise
    container.wait(timeout=10)  # it exited under us, maybe before the engine noticed: let it catch up
    return None


def has_v6_loopback(pid: int) -> bool:
    """Is ``::1`` on lo in the namespace of ``pid``? (``/proc/PID/net/if_inet6`` is that namespace's.)"""
    try:
        text = Path(f"/proc/{pid}/net/if_inet6").read_text()
    except OSError:
        return False
    return any(line.split()[0] == "0" * 31 + "1" for line in text.splitlines() if line.strip())


def reach(pid: int, listeners: Sequence[SsListener], probe: Probe) -> tuple[ListenerTruth, ...]:
    checks = checks_for(listeners, probe)
    if not checks:
        return ()
    out = _nsenter(pid, [sys.executable, str(CLIENT), json.dumps(checks)], timeout=5 + 3 * len(checks))
    return combine(listeners, json.loads(out))


def pod_reach(pid: int, listeners: Sequence[SsListener], pod: Mapping[int, str]) -> dict[str, bool | None]:
    """Per listener (``ss`` notation): does a real client reach it over the pod address ``pod`` gives of each
    family it serves (TCP connect, or a UDP datagram not refused)? False where no pod address is of a family
    it serves; None with no pod address at all.

    A listener bound to neither that address nor a wildcard of its family is not reached, whatever the
    client gets on that port (another socket may answer it).
    """
    checks, owners = [], []
    for s in listeners:
        for fam in s.families:
            if fam in pod:
                checks.append({"proto": s.proto, "family": fam, "port": s.port, "probe": "tcp", "address": pod[fam]})
                owners.append((s, fam))
    out: dict[str, bool | None] = {s.notation: None if not pod else False for s in listeners}
    reached: dict[str, bool] = {}
    if not checks:
        return out
    results = json.loads(_nsenter(pid, [sys.executable, str(CLIENT), json.dumps(checks)], timeout=5 + 3 * len(checks)))
    for (s, fam), r in zip(owners, results, strict=True):
        bound = s.address.strip("[]")
        wildcard = "0.0.0.0" if fam == 4 else "::"
        covers = s.address == "*" or bound in (wildcard, pod[fam], f"::ffff:{pod[fam]}")
        ok = covers and r["result"] in ("accepted", "reply", "no-reply")
        reached[s.notation] = reached.get(s.notation, True) and ok
    return out | reached


def logs_tail(container: Any, lines: int = 8) -> str:
    raw = container.logs(tail=lines)
    return bytes(raw).decode("utf-8", "replace").strip()


def _changes(before: Sequence[SsListener], after: Sequence[SsListener], at: float) -> list[str]:
    gone = sorted(set(before) - set(after), key=lambda s: s.notation)
    new = sorted(set(after) - set(before), key=lambda s: s.notation)
    return [f"-{s.notation} at {at:.2f} s" for s in gone] + [f"+{s.notation} at {at:.2f} s" for s in new]


def observe(container: Any, probe: Probe, *, hold: float, timeout: float,
            expect: frozenset[str] | None = None, poll: float = 0.02) -> Truth:
    """Follow a started container until an event decides, never a fixed window; ``timeout`` bounds it.

    - it exits: ``exited`` (``had_listened`` says every listener seen before);
    - ``expect`` given (an ``up`` expectation, in ``ss`` notation): the listener table reaches exactly
      that set, and the target stays running with the table unchanged for ``hold`` s: ``up``. A change
      during the hold is recorded and the wait starts over;
    - ``timeout`` s pass first: ``timeout`` when nothing listens then, else ``up`` with the table as
      it stands (reached then), with a note that it did not hold ``expect``. Without ``expect`` (an
      ``exited`` or ``timeout`` expectation) only the exit or the timeout decides.

    Each listener set the table shows is reached (connected to over each family) when it appears, as
    a client would; every change of the table after it first showed a listener is kept in ``changes``.
    """
    started = time.monotonic()
    ever: set[str] = set()
    changes: list[str] = []
    seen: tuple[SsListener, ...] = ()
    pid = 0
    held_from: float | None = None  # when the table became ``expect``, once reached
    v6: bool | None = None
    reached: tuple[ListenerTruth, ...] = ()

    def exited(code: int | None, notes: tuple[str, ...] = ()) -> Truth:
        return Truth("exited", code, had_listened=tuple(sorted(ever)), logs_tail=logs_tail(container),
                     seconds=time.monotonic() - started, changes=tuple(changes), notes=notes)

    while True:
        running, pid, code = state(container)
        now_seen = _listeners_while_running(container, pid) if running else None
        if now_seen is None:
            _, _, code = state(container)
            return exited(code)
        at = time.monotonic() - started
        if now_seen != seen:
            if ever:
                changes += _changes(seen, now_seen, at)
            seen = now_seen
            held_from = None
            if seen:  # a client reaches what appears, as one would (and as the plugin's probe does)
                v6 = has_v6_loopback(pid)
                try:
                    reached = reach(pid, seen, probe)
                except GroundTruthError:
                    if not _exited(pid):
                        raise
                    container.wait(timeout=10)
                    return exited(state(container)[2], ("it exited while it was being reached",))
        ever.update(s.notation for s in seen)
        if expect is not None and {s.notation for s in seen} == expect:
            if held_from is None:
                held_from = time.monotonic()
            elif time.monotonic() - held_from >= hold:
                return Truth("up", listeners=reached, has_v6_loopback=v6, logs_tail=logs_tail(container),
                             seconds=time.monotonic() - started, changes=tuple(changes))
        if time.monotonic() - started > timeout:
            v6 = has_v6_loopback(pid)
            if not seen:
                return Truth("timeout", has_v6_loopback=v6, logs_tail=logs_tail(container),
                             seconds=time.monotonic() - started, changes=tuple(changes),
                             notes=("nothing listened when the time ran out",))
            wanted = " ".join(sorted(expect)) if expect is not None else "nothing (no up expectation)"
            return Truth("up", listeners=reached, has_v6_loopback=v6, logs_tail=logs_tail(container),
                         seconds=time.monotonic() - started, changes=tuple(changes),
                         notes=(f"the time ran out before the table held {wanted} for {hold:g} s",))
        time.sleep(poll)


def facts(container: Any, probe: Probe) -> Truth:
    """A snapshot of a container someone else started and is still holding (the plugin's, in phase 2)."""
    running, pid, code = state(container)
    seen = _listeners_while_running(container, pid) if running else None
    if seen is None:
        _, _, code = state(container)
        return Truth("exited", code, logs_tail=logs_tail(container))
    return Truth("up" if seen else "timeout", listeners=reach(pid, seen, probe), has_v6_loopback=has_v6_loopback(pid),
                 logs_tail=logs_tail(container))
