"""Value objects shared by every module: no Docker, no pytest."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Family(str, enum.Enum):
    """Address family of a listener; never collapsed into a bare port."""

    INET = "inet"
    INET6 = "inet6"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, order=True)
class Listener:
    """A TCP socket in LISTEN state: (family, address, port).

    ``address`` is the canonical text form ("0.0.0.0", "127.0.0.1", "::",
    "::1", "::ffff:127.0.0.1"). A ``[::]`` listener does not cover IPv4.
    """

    family: Family
    address: str
    port: int

    def __str__(self) -> str:
        if self.family is Family.INET6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Reach:
    """Whether one listener answered a request over loopback of its family."""

    listener: Listener
    answered: bool
    detail: str  # first response line, or the client's error


class Outcome(str, enum.Enum):
    UP = "up"
    EXITED = "exited"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Attestation:
    """What the container's network namespace showed before the target ran."""

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
    """What a started target did."""

    outcome: Outcome
    listeners: frozenset[Listener] = frozenset()
    reach: tuple[Reach, ...] = ()
    exit_code: int | None = None
    error_line: str | None = None
    logs: str = ""
    seconds: float = 0.0

    def answered(self, listener: Listener) -> bool | None:
        for r in self.reach:
            if r.listener == listener:
                return r.answered
        return None


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
        if label == "unset":
            return cls(None)
        if label == "empty":
            return cls("")
        if label.startswith("="):
            return cls(label[1:])
        raise ValueError(f"knob setting {label!r} must be 'unset', 'empty' or '=VALUE'")


@dataclass(frozen=True)
class Expectation:
    """The verdict a cell should produce."""

    outcome: Outcome
    listeners: frozenset[Listener] = frozenset()
    silent: frozenset[Listener] = frozenset()  # listed listeners expected NOT to answer
    exit_code: int | None = None  # None: any non-zero code
    error_contains: str | None = None
    source: str = ""  # the text it was parsed from


@dataclass(frozen=True)
class Cell:
    """One point of a matrix: (variant, stack, knob setting[, config mode])."""

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
        parts.append(self.setting.id_for(self.knob))
        return "-".join(parts)


@dataclass(frozen=True)
class Mismatch:
    """Why a verdict does not meet an expectation; empty ``reasons`` means it matches."""

    reasons: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.reasons)
