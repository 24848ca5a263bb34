"""Ending a cell or test with one clear line: no traceback, no chained exception."""

from __future__ import annotations

from typing import NoReturn

import pytest


def fail(message: str) -> NoReturn:
    """``pytest.fail`` without the exception being handled in the report ("During handling of...")."""
    raise pytest.fail.Exception(message, pytrace=False) from None


def skip(message: str) -> NoReturn:
    """``pytest.skip`` with one line and no chained exception."""
    raise pytest.skip.Exception(message) from None


def unavailable(reason: object, *, require_docker: bool) -> NoReturn:
    """No engine: skip, or fail when --ipv6-require-docker is set (or the reason is an error in itself)."""
    if getattr(reason, "error", False):
        fail(str(reason))
    if require_docker:
        fail(f"{reason} (--ipv6-require-docker is set)")
    raise pytest.skip.Exception(f"{reason} (pass --ipv6-require-docker to make this an error)") from None


def unsupported(reason: object, *, require_docker: bool) -> NoReturn:
    """The engine cannot realise the cell's stack (a remote Podman and a seccomp profile): skip, or fail when
    --ipv6-require-docker is set, on every engine alike."""
    if require_docker:
        fail(f"{reason} (--ipv6-require-docker is set: a stack the engine cannot realise is an error)")
    raise pytest.skip.Exception(f"{reason} (pass --ipv6-require-docker to make this an error)") from None
