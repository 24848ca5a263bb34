"""Value objects shared by every module: no Docker, no pytest."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

# Target, variant and outcome names: they become parts of test ids, grid rows and Markdown cells.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


class Family(str, enum.Enum):
    """Address family of a socket, or of the loopback a probe used; never collapsed into a bare port."""

    INET = "inet"
    INET6 = "inet6"

    def __str__(self) -> str:
        return self.value


class Protocol(str, enum.Enum):
    """Transport of a listener."""

    TCP = "tcp"
    UDP = "udp"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, order=True)
class Listener:
    """A listening socket: TCP in LISTEN state, or UDP bound and not connected.

    ``family`` is the socket's own family and ``address`` the canonical text of the
    address it is bound to ("0.0.0.0", "127.0.0.1", "::", "::1", "::ffff:127.0.0.1").
    An IPv6 socket on ``::`` also serves IPv4 unless it is ``v6only`` (nginx sets
    v6only; Python, Node, Go and Java usually do not). It is written ``*:PORT`` when
    it serves both, as ``ss`` does, and ``[::]:PORT`` when it serves IPv6 only. For
    any other address ``v6only`` changes nothing, so it is normalised to True.
    """

    family: Family
    address: str
    port: int
    protocol: Protocol = Protocol.TCP
    v6only: bool = True

    def __post_init__(self) -> None:
        if not (self.family is Family.INET6 and self.address == "::"):
            object.__setattr__(self, "v6only", True)

    @property
    def serves(self) -> frozenset[Family]:
        """The families whose clients this socket accepts."""
        if self.family is Family.INET or self.address.startswith("::ffff:"):
            return frozenset({Family.INET})
        if self.address == "::" and not self.v6only:
            return frozenset({Family.INET, Family.INET6})
        return frozenset({Family.INET6})

    def __str__(self) -> str:
        prefix = "udp/" if self.protocol is Protocol.UDP else ""
        if self.family is Family.INET:
            return f"{prefix}{self.address}:{self.port}"
        if self.address == "::" and not self.v6only:
            return f"{prefix}*:{self.port}"
        return f"{prefix}[{self.address}]:{self.port}"


PROBE_NONE = "probe none"  # the detail of a not-probed record when the run's probe is none


class Result(str, enum.Enum):
    """What connecting to a listener over one family's loopback did."""

    ACCEPTED = "accepted"  # connected (TCP), or a datagram was not refused (UDP)
    REFUSED = "refused"
    NO_LOOPBACK = "no-loopback"  # that family has no loopback address here (no ::1)
    TIMEOUT = "timeout"
    ERROR = "error"  # another errno; the detail says which
    NOT_PROBED = "not-probed"  # probe "none", or an address no loopback reaches

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Reach:
    """One probe of one listener over the loopback of one family (``via``)."""

    listener: Listener
    via: Family
    result: Result
    ok: bool  # accepted, and for http/https an accepted status line
    detail: str  # the status line, "(accepted, no response)", or the client's error


@dataclass(frozen=True)
class ListenerChange:
    """A listener that appeared (``opened``) or closed after the listener set first settled."""

    listener: Listener
    opened: bool
    at: float  # seconds since the watcher started, which is about when the target started

    def __str__(self) -> str:
        return f"{'+' if self.opened else '-'}{self.listener} at {self.at:.2f} s"


class Outcome(str, enum.Enum):
    UP = "up"
    EXITED = "exited"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Attestation:
    """What the target's network namespace showed before the target ran."""

    stack: str
    ok: bool
    facts: tuple[tuple[str, str], ...]  # ordered (name, observed value)
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        lines = [f"stack {self.stack}: {'attested' if self.ok else 'NOT attested'}"]
        lines += [f"  {name} = {value}" for name, value in self.facts]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    """What a started target did.

    ``listeners``: for ``up``, the set at the END of the hold window (it stood
    unchanged for the last ``hold`` seconds unless ``unsteady``). ``listened``: for an
    ``exited`` target, every listener it had open before it exited (within the hold
    window); empty if it never listened. ``changes``: every change of the listener set
    after it first settled, in order, whatever the outcome. ``unsteady``: the hold
    window reached its bound while the set still changed; the final set had stood for
    only this many seconds. ``logs`` is a bounded tail of the target's own output,
    never the probe's.
    """

    outcome: Outcome
    listeners: frozenset[Listener] = frozenset()
    reach: tuple[Reach, ...] = ()
    exit_code: int | None = None
    error_line: str | None = None
    logs: str = ""
    seconds: float = 0.0
    listened: frozenset[Listener] = frozenset()
    changes: tuple[ListenerChange, ...] = ()
    unsteady: float | None = None
    pod_reach: tuple[Reach, ...] = ()  # the same probes over the cell's pod address (``via``: its family)

    def change_text(self) -> str | None:
        """``listener set changed during the hold: +0.0.0.0:8081 at 0.31 s, ...``, or None without changes."""
        if not self.changes:
            return None
        return "listener set changed during the hold: " + ", ".join(map(str, self.changes))

    def unsteady_text(self) -> str | None:
        """Why the listeners named may not be the target's final set, naming the settings; or None."""
        if self.unsteady is None:
            return None
        return (
            f"the listener set was still changing when the hold window reached its bound (3 x hold after it"
            f" settled): the final set had stood for only {self.unsteady:.2f} s; a target that opens or closes"
            " listeners over a longer start-up needs a longer hold (run setting hold, --ipv6-hold), or a longer"
            " settle (run setting settle, --ipv6-settle) before the window starts"
        )

    def answered(self, listener: Listener) -> bool | None:
        """Did ``listener`` succeed over every family it serves whose loopback exists?

        False when no family it serves has a loopback here (``[::]`` without ``::1``);
        None when it was not probed (probe ``none``) or not seen at all.
        """
        mine = [r for r in self.reach if r.listener == listener]
        tried = [r for r in mine if r.result not in (Result.NO_LOOPBACK, Result.NOT_PROBED)]
        if tried:
            return all(r.ok for r in tried)
        if mine and all(r.result is Result.NO_LOOPBACK for r in mine):
            return False
        return None

    def beyond_loopback(self, listener: Listener) -> bool:
        """True when no loopback can reach ``listener`` (it is bound to the pod address, say) but it was probed:
        a plain expectation is then judged by its answer over the pod address (:meth:`judged_answer`)."""
        mine = [r for r in self.reach if r.listener == listener]
        return bool(mine) and all(r.result is Result.NOT_PROBED and r.detail != PROBE_NONE for r in mine)

    def judged_answer(self, listener: Listener) -> bool | None:
        """What an expectation's "answers" (no ``/silent``) is judged by: :meth:`answered`, or, for a listener
        no loopback reaches, :meth:`pod_answered`; None only when it was not probed at all (probe ``none``)."""
        if self.beyond_loopback(listener):
            return self.pod_answered(listener)
        return self.answered(listener)

    def pod_answered(self, listener: Listener) -> bool | None:
        """Did ``listener`` succeed over the pod address of every family it serves that the stack has one of
        (and is there at least one)? That is how a peer reaches it.

        False when it is bound to neither the pod address nor a wildcard of its family (``127.0.0.1``), when the
        stack has no pod address of a family it serves (``0.0.0.0`` on ``ipv6-only``), or a probe failed; None
        where the cell has no pod address, or it was not probed (probe ``none``).
        """
        mine = [r for r in self.pod_reach if r.listener == listener]
        if not mine or any(r.result is Result.NOT_PROBED and r.detail == PROBE_NONE for r in mine):
            return None
        served = [r for r in mine if r.via in listener.serves]
        return bool(served) and all(r.ok for r in served)


@dataclass(frozen=True)
class KnobSetting:
    """One setting of the knob: unset, empty, or a literal value."""

    value: str | None  # None means the variable is not in the environment

    @property
    def label(self) -> str:
        """Key used in matrix files and reports: ``unset``, ``empty`` or ``=VALUE``."""
        if self.value is None:
            return "unset"
        if self.value == "":
            return "empty"
        return f"={self.value}"

    def id_for(self, knob: str) -> str:
        if self.value is None:
            return f"{knob}-unset"
        if self.value == "":
            return f"{knob}-empty"
        return f"{knob}={self.value}"

    @classmethod
    def from_label(cls, label: str) -> KnobSetting:
        """``unset``, ``empty`` or ``=VALUE``; a VALUE is printable text (it is part of test ids, the
        terminal grid and Markdown: a line break, an escape code or a format character is refused)."""
        if label == "unset":
            return cls(None)
        if label == "empty":
            return cls("")
        if label.startswith("="):
            if not label.isprintable():
                raise ValueError(
                    f"knob setting {label!r} holds a control or format character (a line break, an escape code): "
                    "test ids, terminals and Markdown do not carry it"
                )
            return cls(label[1:])
        raise ValueError(f"knob setting {label!r} must be 'unset', 'empty' or '=VALUE'")


@dataclass(frozen=True)
class Expectation:
    """The verdict a cell should produce."""

    outcome: Outcome
    listeners: frozenset[Listener] = frozenset()
    silent: frozenset[Listener] = frozenset()  # listed listeners expected NOT to answer
    pod: frozenset[Listener] = frozenset()  # listed listeners that must answer over the pod address too
    exit_code: int | None = None  # None: any non-zero code
    error_contains: str | None = None
    source: str = ""  # the text it was parsed from


@dataclass(frozen=True)
class Cell:
    """One point of a matrix: (variant, stack[, knob setting][, config mode]).

    A matrix without a knob has ``knob == ""`` and the setting ``unset``; its ids
    and grid then have no knob part.
    """

    target: str
    variant: str
    stack: str
    knob: str
    setting: KnobSetting
    expectation: Expectation
    config_mode: str = "rw"  # "rw", or "ro" for a read-only mounted config dir
    where: str = ""  # file:line-ish origin, for error messages

    @property
    def id(self) -> str:
        parts = [self.variant, self.stack]
        if self.config_mode != "rw":
            parts.append(f"config-{self.config_mode}")
        if self.knob:
            parts.append(self.setting.id_for(self.knob))
        return "-".join(parts)


@dataclass(frozen=True)
class Mismatch:
    """Why a verdict does not meet an expectation; empty ``reasons`` means it matches."""

    reasons: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.reasons)
