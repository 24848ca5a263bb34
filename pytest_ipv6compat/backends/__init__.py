"""Where a cell runs: one small protocol, one module per kind of backend.

Items and fixtures talk to :class:`Backend` and :class:`Run` only; the Docker API
backend (:mod:`.docker_api`, for Docker and Podman, local or remote) implements them.
Every backend runs the same probe (``probe/shim.sh`` then ``probe/watch.c``) and
parses its report with :mod:`pytest_ipv6compat.probe.report`, so ``up``, ``exited``,
``timeout``, listeners, probes and hold mean the same thing everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..model import Attestation, Verdict
from ..spec import RunSpec
from ..stacks import Stack

__all__ = ["Backend", "EngineError", "Launch", "Run", "StackUnsupported", "UnknownUser"]


class EngineError(Exception):
    """The backend could not do what was asked (not a verdict); the message says what and why."""


class StackUnsupported(EngineError):
    """This backend cannot realise the cell's stack at all (a skip, not an error); the message says why."""


class UnknownUser(EngineError):
    """The image has no user (or group) of the name the cell's ``user`` setting gives.

    The syntax is checked where the setting is written (:mod:`..spec`); whether the image's
    ``/etc/passwd`` and ``/etc/group`` have the name is known only when the cell starts.
    Docker, Podman and the User-mode Linux backend say it in the same words, found here.
    """

    _WORDS = re.compile(r"unable to find (user|group) (\S+?):? no matching entries in (?:passwd|group)(?: file)?")

    def __init__(self, user: str, image: str, words: str, kind: str, name: str) -> None:
        super().__init__(f"user = {user!r}: {words}")
        self.user, self.image, self.words, self.kind, self.name = user, image, words, kind, name

    @classmethod
    def find(cls, user: str | None, image: str, text: str) -> UnknownUser | None:
        """The error an engine's ``text`` reports for the cell's ``user``, or None if it says something else."""
        found = cls._WORDS.search(text)
        if not user or found is None:
            return None
        return cls(user, image, found.group(0), found.group(1), found.group(2))

    def line(self, where: str) -> str:
        """One line naming where ``user`` was written, the value, and the image."""
        table = "/etc/passwd" if self.kind == "user" else "/etc/group"
        return (f"{where}: user = {self.user!r}: image {self.image!r} has no {self.kind} {self.name!r} in its "
                f"{table} (the engine: {self.words})")


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one target: image, stack, environment and run settings."""

    image: str
    stack: Stack
    env: Mapping[str, str] = field(default_factory=dict)
    run: RunSpec = field(default_factory=RunSpec)
    name: str | None = None


class Run(Protocol):
    """A started target being observed. Methods block until they know (bounded by the launch's timeout)."""

    keep: bool  # leave it in place for inspection when the run ends (a failed cell, --ipv6-keep-failed)
    container_id: str

    @property
    def name(self) -> str: ...

    def inspection(self) -> list[str]:
        """Shell commands that show a kept run once it has ended (``keep``), each working from a plain shell."""
        ...

    def attestation(self) -> Attestation:
        """The stack as the target's namespace showed it; :class:`EngineError` if it never reported."""
        ...

    def verdict(self) -> Verdict:
        """``up`` after the hold window, ``exited``, or ``timeout``; :class:`EngineError` on a backend fault."""
        ...


class Backend(Protocol):
    """Prepares nothing itself (images are built by :mod:`..images`); starts, observes and cleans up."""

    def info(self) -> dict[str, str]:
        """Facts for the report header (engine, version, ...)."""
        ...

    def image_config(self, image: str) -> dict[str, Any]:
        """The image's config (``Env``, ``Entrypoint``, ``Cmd``, ``User`` ...)."""
        ...

    def run(self, launch: Launch) -> AbstractContextManager[Run]:
        """Start ``launch``; the run is always cleaned up when the context ends."""
        ...

    def sweep(self) -> list[str]:
        """Remove what dead sessions on this host left; never a live session's."""
        ...

    def remove_session(self, keep: Collection[str] = ()) -> int:
        """Remove what this process started and still has, except ``keep`` (names)."""
        ...
