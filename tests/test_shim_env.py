"""The shim runs in the target's own process before it execs the target (probe/shim.sh), so a shell variable
it (or, under User-mode Linux, the init that starts it) assigns whose name the image or the cell exports would
reach the target with the shim's value. Property: every name the shim and the init assign, exported by the cell
with a value of its own, reaches the target unchanged, on the engine and under User-mode Linux; the ground truth
is the engine alone (`docker run` of the image, no shim)."""

from __future__ import annotations

import re
from pathlib import Path

import docker
import pytest
from helpers import engine_alone, launch

from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.backends.uml import UmlBackend
from pytest_ipv6compat.model import Outcome
from pytest_ipv6compat.probe import __file__ as probe_init
from pytest_ipv6compat.stacks import get_stack

pytestmark = pytest.mark.docker
PROBE = Path(probe_init).parent
# The shim's, and under User-mode Linux the init's (probe/uml_init.sh: its shell is the target's parent, and the
# cell's environment is exported in a subshell of it).
SHIM = (PROBE / "shim.sh").read_text() + (PROBE / "uml_init.sh").read_text()
# Every name the shim may assign: NAME=..., `local`/`for`/`read` targets, loop variables. IFS is the shell's own
# (a shell never takes it from the environment); PATH and HOME it only reads; IPV6COMPAT_NAME and IPV6COMPAT_PATH
# are the shim's own names (never passed on: README).
NAMES = sorted((
    {m for m in re.findall(r"(?:^|[\s;{(])([A-Za-z_][A-Za-z0-9_]*)=", SHIM)}
    | {m for m in re.findall(r"\bfor ([A-Za-z_][A-Za-z0-9_]*) in\b", SHIM)}
    | {w for line in re.findall(r"\bread -r(?: -n \d+)? ([A-Za-z_ ]+)", SHIM) for w in line.split()})
    - {"IFS", "_", "PATH", "HOME", "IPV6COMPAT_NAME", "IPV6COMPAT_PATH"})


def test_the_names_are_found() -> None:
    assert {"nonce", "found", "release", "line", "raw", "tables", "cmdline", "P", "BB", "RUN", "C"} <= set(NAMES), NAMES


def _printed(logs: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in logs.splitlines() if "=" in line and line.split("=", 1)[0] in NAMES)


@pytest.mark.parametrize("kind", ["engine", "uml"])
def test_nothing_the_shim_assigns_reaches_the_target(kind: str, engine: Engine, uml: UmlBackend,
                                                     client: docker.DockerClient, base_image: str) -> None:
    env = {name: f"kept {name}" for name in NAMES}
    script = "for each_name in " + " ".join(NAMES) + '; do eval "echo $each_name=\\${$each_name-unset}"; done'
    assert "each_name" not in NAMES
    truth = engine_alone(client, base_image, ["sh", "-c", script], environment=env)
    stack = get_stack("ipv6-boot-disabled" if kind == "uml" else "dual-stack")
    backend = uml if kind == "uml" else engine
    with backend.run(launch(base_image, stack, env=env, command=("sh", "-c", script))) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.EXITED, verdict.logs
    assert _printed(truth) == {name: f"kept {name}" for name in NAMES}
    assert _printed(verdict.logs) == _printed(truth)
