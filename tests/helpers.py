"""Helpers shared by test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker
import pytest

from pytest_ipv6compat.backends import Launch
from pytest_ipv6compat.backends.docker_api import remove
from pytest_ipv6compat.matrix import Matrix
from pytest_ipv6compat.model import Cell
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import Stack

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "matrix" / "cloud-proxy.ipv6.toml"
CLOUD_PROXY = ROOT / "matrix" / "cloud-proxy"


def cloud_proxy_matrix(dest: Path, *replacements: tuple[str, str]) -> Path:
    """The cloud-proxy matrix copied to ``dest``, its paths made absolute, with text replaced."""
    text = MATRIX.read_text(encoding="utf-8")
    text = text.replace('build = "cloud-proxy"', f'build = "{CLOUD_PROXY}"')
    text = text.replace('config_source = "cloud-proxy/proxy"', f'config_source = "{CLOUD_PROXY / "proxy"}"')
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} is not in the matrix exactly once"
        text = text.replace(old, new)
    path = dest / "cloud-proxy.ipv6.toml"
    path.write_text(text, encoding="utf-8")
    return path


def copy_matrix(pytester: pytest.Pytester, *replacements: tuple[str, str]) -> Path:
    """:func:`cloud_proxy_matrix` into a pytester directory."""
    return cloud_proxy_matrix(pytester.path, *replacements)


def launch(
    image: str, stack: Stack, *, env: dict[str, str] | None = None, timeout: float = 30.0, settle: float = 0.1,
    hold: float = 0.0, **run: Any,
) -> Launch:
    """A :class:`Launch` for backend-level tests: short settle, no hold unless asked."""
    return Launch(image, stack, env=env or {}, run=RunSpec(timeout=timeout, settle=settle, hold=hold, **run))


def cell_env(matrix: Matrix, cell: Cell) -> dict[str, str | None]:
    """A cell's environment as its matrix states it: the target's env and the knob (None: unset)."""
    env: dict[str, str | None] = dict(matrix.target.env)
    if cell.knob:
        env[cell.knob] = cell.setting.value
    return env


def engine_alone(client: docker.DockerClient, image: str, argv: Sequence[str], **run: Any) -> str:
    """What the engine itself gives ``argv`` in ``image``, without the probe, on --network none: its output (ground
    truth taken apart from the plugin). ``run``: the engine's create settings (user, environment, sysctls ...).
    The container is removed however it ends, also when it cannot start; its labels name this process, so the
    suite's leak check would find it."""
    container = client.containers.create(image, list(argv), network_mode="none", **run,
                                         labels={"ipv6compat.session": "test-engine-alone",
                                                 "ipv6compat.pid": str(os.getpid())})
    try:
        container.start()
        container.wait(timeout=60)
        return bytes(container.logs(stdout=True, stderr=True)).decode()
    finally:
        remove(client, container.id, container.name)
