"""Parse what the probe reports: the shim's attestation lines and the watcher's records.

Pure: text in, value objects out. The shim writes its lines on the target's own
output before the target runs, each tagged with a per-cell nonce the target never
sees; only tagged lines count, so nothing the target prints can imitate them. The
watcher's records arrive on a channel of their own, each sealed with a per-cell key
(see ``watch.c``, "The sealed channel"): :class:`SealedChannel` opens them, and
anything the target managed to write there is :class:`TamperError`, never a record.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from hashlib import sha256

from ..listeners import canonical_address
from ..model import Attestation, Family, Listener, ListenerChange, Outcome, Protocol, Reach, Result, Verdict
from ..stacks import Stack, attest, inet6_probe_fact

__all__ = [
    "KEY_VARIABLE",
    "MARK",
    "RECORDS",
    "STALL_S",
    "WATCH_GROUP",
    "SealedChannel",
    "ShimReport",
    "TamperError",
    "WatchReport",
    "is_shim_line",
]

MARK = "@@ipv6compat"
PROBE_BUDGET_S = 7.0  # per probe of one family: connect (2 s) + response (3 s) + slack
RECORDS = ("listener", "reach", "pod", "settled", "opened", "closed", "unsteady", "ready", "error")  # first words
HOLD_STRETCH = 3  # watch.c: the hold window, restarted by changes, ends by 3 x hold after the set settled

_RESULTS = {r.value: r for r in Result}

KEY_VARIABLE = "IPV6COMPAT_KEY"  # the watcher's environment: the cell's key, 64 hex digits
MAC_HEX = 32  # hex digits of the seal: the first 16 bytes of HMAC-SHA256
# The group the probe's watcher is shipped setgid to: exec'ing it changes the effective group of any user but
# this group's, which leaves the process non-dumpable from execve on (watch.c, "The sealed channel").
WATCH_GROUP = 65500
STALL_S = 3.0  # the watcher writes "alive" every 0.2 s: this long without a record, it was stopped
CHANNEL_RECORDS = ("start", "alive", "tamper", "end")  # the sealed channel's own records


class TamperError(ValueError):
    """Something other than the watcher wrote, cut or held back the watcher's records."""


@dataclass
class SealedChannel:
    """The watcher's sealed records, opened in order with this cell's key.

    :meth:`open` takes each line of the watcher's stream and returns the record it carries
    (``listener ...``), ``None`` for the channel's own records and for the engine's words
    before the watcher started (``exec failed ...``), and raises :class:`TamperError` for a
    line with a wrong seal or out of sequence, an unsealed record, any unsealed line once
    the watcher has started, a ``tamper`` record, or a line after ``end``.
    """

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    next_seq: int = 0
    protection: str | None = None  # "exec" or "prctl": when the watcher became non-dumpable (its start record)
    ended: bool = False
    last: str = "none"  # the last record opened, for messages

    @property
    def environment(self) -> str:
        """``NAME=value`` that gives the watcher this channel's key."""
        return f"{KEY_VARIABLE}={self.key.hex()}"

    @property
    def started(self) -> bool:
        return self.protection is not None

    def seal(self, record: str) -> str:
        """The line the watcher writes for ``record`` as record number ``next_seq`` (for tests)."""
        return f"{self.next_seq} {self._mac(self.next_seq, record)} {record}"

    def open(self, line: str) -> str | None:
        text = line.rstrip("\r")
        seq, _, rest = text.partition(" ")
        mac, _, record = rest.partition(" ")
        if not (seq.isdigit() and len(mac) == MAC_HEX):
            first = text.split(" ", 1)[0]
            if self.started or first in RECORDS or first in CHANNEL_RECORDS:
                raise TamperError(
                    f"the probe's report was tampered with: an unsealed line {_quote(text)} on the watcher's channel "
                    "(something in the target wrote to the watcher's output)"
                )
            return None  # the engine's own words, e.g. an exec into a container that is exiting
        if not hmac.compare_digest(mac, self._mac(int(seq), record)):
            raise TamperError(
                f"the probe's report was tampered with: a line with a wrong seal {_quote(text)} on the watcher's "
                "channel (something in the target wrote to the watcher's output)"
            )
        if not self.started and int(seq) > 0:  # sealed with this cell's key, so the watcher's: lost on the way
            raise TamperError(
                f"the engine lost the start of the probe's report: its first line was record {int(seq)} "
                f"({_quote(record)}), not record 0; no verdict without it"
            )
        if self.ended or int(seq) != self.next_seq:
            due = "none after the end record" if self.ended else f"record {self.next_seq} was due"
            raise TamperError(
                f"the probe's report was tampered with: record {int(seq)} ({_quote(record)}) came where {due}, "
                f"after {_quote(self.last)} (records dropped, replayed or reordered on the way)"
            )
        self.next_seq += 1
        self.last = record
        kind, _, value = record.partition(" ")
        if not self.started:
            if kind != "start" or value not in ("exec", "prctl"):
                raise TamperError(f"the probe's watcher began with {_quote(record)} instead of its start record")
            self.protection = value
            return None
        if kind == "tamper":
            raise TamperError(f"the target tampered with the probe's watcher: {value}")
        if kind == "end":
            self.ended = True
            return None
        return None if kind in ("alive", "start") else record

    def cut_short(self) -> str:
        """Why a stream that ended without ``end`` is not a report: for an error message."""
        if not self.started:
            return ("the probe's watcher never started its report (killed or stopped by something in the target "
                    "before its first record, or the exec failed)")
        return (f"the probe's watcher was killed: its report stopped after record {self.next_seq - 1} "
                f"({_quote(self.last)}) without its end record")

    def _mac(self, seq: int, record: str) -> str:
        return hmac.new(self.key, f"{seq} {record}".encode(), sha256).hexdigest()[:MAC_HEX]


def _quote(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def is_shim_line(line: str, nonce: str) -> bool:
    """True for a line the shim wrote for this cell (the target may have printed before it on the same line)."""
    return f"{MARK} {nonce} " in line


@dataclass
class ShimReport:
    """The shim's attestation facts, gathered line by line until ``attested``."""

    nonce: str
    facts: dict[str, str] = field(default_factory=dict)
    inet6_probe: str = ""
    missing: str | None = None  # the target's executable was not found: why
    attested: bool = False

    def feed(self, line: str) -> None:
        """Take one line of the container's output; lines without the nonce are ignored."""
        tag = f"{MARK} {self.nonce} "
        at = line.find(tag)
        if at < 0:
            return
        kind, _, rest = line[at + len(tag):].rstrip("\r").partition(" ")
        if kind == "fact":
            key, _, value = rest.partition("=")
            self.facts[key] = value
        elif kind == "probe":
            self.inet6_probe = rest.partition(" ")[2]
        elif kind == "missing":
            self.missing = rest
        elif kind == "attested":
            self.attested = True

    def attestation(self, stack: Stack) -> Attestation:
        """The stack as the shim saw it, checked against ``stack``'s claim."""
        facts = dict(self.facts)
        facts["inet6 socket"] = inet6_probe_fact(self.inet6_probe)
        return attest(stack, facts)


@dataclass
class WatchReport:
    """The watcher's records: the settled set and its probes, then every change during the hold, then ready.

    ``listeners`` is the set as it stands after the records read so far (the settled set, plus
    ``opened``, less ``closed``); ``reach`` holds the probes of those listeners only (a closed
    listener's no longer count); ``ever`` every listener seen. This class is the one place that
    reads the records, for every backend.
    """

    listeners: list[Listener] = field(default_factory=list)
    reach: list[Reach] = field(default_factory=list)
    settled: float | None = None
    ready: bool = False
    error: str | None = None
    changes: list[ListenerChange] = field(default_factory=list)
    ever: list[Listener] = field(default_factory=list)
    unsteady: float | None = None
    pod: tuple[Family, ...] = ()  # the families of the cell's pod address: each listener is probed over them too
    pod_reach: list[Reach] = field(default_factory=list)

    @property
    def listening(self) -> bool:
        """Settled, and something listens now (after every change so far)."""
        return self.settled is not None and bool(self.listeners)

    def feed(self, line: str) -> None:
        """Take one record; a malformed one raises :class:`ValueError` quoting it."""
        words = line.rstrip("\r").split(" ")
        try:
            if self.ready:
                raise ValueError("a record after ready")
            if words[0] == "listener" and len(words) == 6:
                if self.settled is not None:
                    raise ValueError("a listener record after settled (changes are opened/closed records)")
                self._add(_listener(*words[1:6]))
            elif words[0] in ("reach", "pod") and len(words) >= 8:
                listener = self._known(_listener(words[1], words[2], words[3], words[4], None))
                via, result, ok, detail = Family(words[5]), words[6], words[7], " ".join(words[8:])
                if words[0] == "reach" and via not in listener.serves:
                    raise ValueError(f"{listener} does not serve {via}")
                if words[0] == "pod" and via not in self.pod:
                    raise ValueError(f"the cell has no pod address of family {via}")
                if words[0] == "pod" and via not in listener.serves and (words[6], words[7]) != ("not-probed", "0"):
                    raise ValueError(f"{listener} does not serve {via}, so no probe over its pod address can succeed")
                probes = self.reach if words[0] == "reach" else self.pod_reach
                if any(r.listener == listener and r.via is via for r in probes):
                    raise ValueError(f"a second probe of {listener} over {via}")
                outcome = Result.ERROR if result.startswith("errno-") else _RESULTS[result]
                probes.append(Reach(listener, via, outcome, ok == "1", detail))
            elif words[0] in ("opened", "closed") and len(words) == 7:
                if self.settled is None:
                    raise ValueError("a change before settled")
                listener, at = _listener(*words[1:6]), _seconds(words[6])
                if words[0] == "opened":
                    if listener in self.listeners:
                        raise ValueError(f"{listener} opened while it was listening")
                    self._add(listener)
                else:
                    if listener not in self.listeners:
                        raise ValueError(f"{listener} closed while it was not listening")
                    self.listeners.remove(listener)
                    self.reach = [r for r in self.reach if r.listener != listener]
                    self.pod_reach = [r for r in self.pod_reach if r.listener != listener]
                self.changes.append(ListenerChange(listener, words[0] == "opened", at))
            elif words[0] == "settled" and len(words) == 2:
                if self.settled is not None:
                    raise ValueError("settled twice")
                self.settled = _seconds(words[1])
            elif words[0] == "unsteady" and len(words) == 2:
                self.unsteady = _seconds(words[1])
            elif words[0] == "ready" and len(words) == 1:
                self._check_ready()
                self.ready = True
            elif words[0] == "error":
                self.error = " ".join(words[1:]) or "unknown error"
            else:
                raise ValueError("unknown record")
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"the probe's watcher wrote a malformed record {line!r}: {exc}") from None

    def _check_ready(self) -> None:
        """An up verdict stands on its listeners, each probed over every family it serves."""
        # The watcher settles only on a non-empty set and reports it first: a ready without
        # them means records were lost on the way, and "up" with no listeners would be a lie.
        if self.settled is None or not self.ever:
            raise ValueError("ready before any listener and settled record")
        if not self.listeners:
            raise ValueError("ready while nothing listens (the watcher waits for a listener then)")
        probed = {(r.listener, r.via) for r in self.reach}
        over_pod = {(r.listener, r.via) for r in self.pod_reach}
        for listener in sorted(self.listeners):
            for family in sorted(listener.serves):
                if (listener, family) not in probed:
                    raise ValueError(f"ready, but {listener} has no probe result over {family}")
            for family in self.pod:
                if (listener, family) not in over_pod:
                    raise ValueError(f"ready, but {listener} has no probe result over the pod address of {family}")

    def report_deadline(self, settled_at: float, hold: float) -> float:
        """By when (on ``settled_at``'s clock) ``ready`` must have come: the longest hold window the
        watcher may stretch to, plus a budget per probe (those made and those a late listener needs)."""
        probes = len(self.reach) + len(self.pod_reach) + (2 + len(self.pod)) * len(self.listeners) + 2
        return settled_at + HOLD_STRETCH * hold + PROBE_BUDGET_S * probes + 5

    def verdict(
        self, outcome: Outcome, *, exit_code: int | None, error_line: str | None, logs: str, seconds: float
    ) -> Verdict:
        """A verdict with what the watcher saw: the final listeners and their probes when up, every
        listener it had seen when it exited, and the changes during the hold whatever the outcome."""
        up = outcome is Outcome.UP
        return Verdict(
            outcome,
            listeners=frozenset(self.listeners) if up else frozenset(),
            reach=tuple(self.reach) if up else (),
            pod_reach=tuple(self.pod_reach) if up else (),
            exit_code=exit_code,
            error_line=error_line if outcome is Outcome.EXITED else None,
            logs=logs,
            seconds=seconds,
            listened=frozenset(self.ever) if outcome is Outcome.EXITED else frozenset(),
            changes=tuple(self.changes),
            unsteady=self.unsteady if up else None,
        )

    def _add(self, listener: Listener) -> None:
        if listener in self.listeners:
            raise ValueError(f"{listener} reported twice")
        self.listeners.append(listener)
        if listener not in self.ever:
            self.ever.append(listener)

    def _known(self, partial: Listener) -> Listener:
        """The listening listener a reach record names (reach records omit v6only)."""
        for listener in self.listeners:
            if (listener.protocol, listener.family, listener.address, listener.port) == (
                partial.protocol, partial.family, partial.address, partial.port,
            ):
                return listener
        raise ValueError("names a listener that is not listening")


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1e6:
        raise ValueError(f"{text} seconds is out of range")
    return value


def _listener(protocol: str, family: str, address: str, port: str, v6only: str | None = "-") -> Listener:
    fam = Family(family)
    if fam is Family.INET and v6only not in ("-", None):
        raise ValueError("an IPv4 socket has no v6only flag")
    if fam is Family.INET6 and v6only not in ("0", "1", None):
        raise ValueError(f"v6only {v6only!r} is not 0 or 1")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {port} out of range")
    return Listener(fam, canonical_address(fam, address), number, Protocol(protocol), v6only=v6only != "0")
