"""pytest-ipv6compat: prove what a containerised service listens on, with IPv6 on, off, or absent."""

from __future__ import annotations

from .fixtures import StartedTarget, TargetFactory
from .listeners import parse_listener
from .matrix import Matrix, MatrixError, Target, judge, load_matrix, parse_expectation
from .model import (
    Attestation,
    Cell,
    Expectation,
    Family,
    KnobSetting,
    Listener,
    Outcome,
    Protocol,
    Reach,
    Result,
    Verdict,
)
from .spec import RunSpec
from .stacks import STACKS, Stack


def listener_set(*specs: str) -> frozenset[Listener]:
    """``listener_set("0.0.0.0:80", "[::]:80")``: listeners to compare with a target's."""
    return frozenset(parse_listener(spec) for spec in specs)


__all__ = [
    "STACKS",
    "Attestation",
    "Cell",
    "Expectation",
    "Family",
    "KnobSetting",
    "Listener",
    "Matrix",
    "MatrixError",
    "Outcome",
    "Protocol",
    "Reach",
    "Result",
    "RunSpec",
    "Stack",
    "StartedTarget",
    "Target",
    "TargetFactory",
    "Verdict",
    "judge",
    "listener_set",
    "load_matrix",
    "parse_expectation",
    "parse_listener",
]
