"""Podman as a first-class engine: the containers.conf README gives is the one tested, a session leaves no
``conmon`` behind, and ``--ipv6-require-docker`` makes a stack the engine cannot realise an error, a remote
Podman included.

The Podman service is the one ``tests/engines.py`` starts (rootful, on a private socket, with its own storage
and run directories); "remote" is the same service reached through a tcp:// address, which shares none of
this machine's files as far as the plugin can tell.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest
import requests
from engines import PODMAN_CONF, monitors, podman_service, tcp_forward
from helpers import MATRIX, copy_matrix

from pytest_ipv6compat.backends.docker_api import remove
from pytest_ipv6compat.outcomes import unsupported

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = ("--ipv6-variants=unpatched,adaptive", "--ipv6-settings=unset", "--ipv6-stacks=dual-stack,ipv6-sysctl-off")
CONMON_BOUND_S = 30.0  # conmon of an ended exec session exits at once with exit_command_delay = 0


def _prepare(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_ipv6compat", "prepare", str(MATRIX)],
        env={**os.environ, "DOCKER_HOST": url}, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _state_dir(url: str) -> str:
    return url.removeprefix("unix://").rsplit("/", 1)[0]


def _monitors_after(state: str, bound: float) -> list[str]:
    """The conmon processes of ``state`` still there once they had ``bound`` seconds to go (polled)."""
    deadline = time.monotonic() + bound
    while (left := monitors(state)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _exec_monitor(cmdline: str) -> bool:
    args = cmdline.split()
    return "-c" in args and "-u" in args and args[args.index("-c") + 1] != args[args.index("-u") + 1]


@pytest.fixture(scope="module")
def podman() -> Iterator[str]:
    with podman_service() as url:
        _prepare(url)
        yield url


def _settings(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_gives_the_containers_conf_the_tests_use() -> None:
    found = re.search(r"```toml\n(# containers\.conf for pytest-ipv6compat.*?)```", README.read_text(), re.S)
    assert found, "README has no containers.conf block"
    assert _settings(found[1]) == _settings(PODMAN_CONF)


def test_an_unrealisable_stack_skips_and_is_an_error_with_require_docker() -> None:
    with pytest.raises(pytest.skip.Exception, match="pass --ipv6-require-docker"):
        unsupported("stack ipv6-kernel-off needs a seccomp profile", require_docker=False)
    with pytest.raises(pytest.fail.Exception, match=r"needs a seccomp profile .*--ipv6-require-docker is set"):
        unsupported("stack ipv6-kernel-off needs a seccomp profile", require_docker=True)


@pytest.mark.docker
def test_no_conmon_is_left_once_a_session_ends(
    podman: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", podman)
    copy_matrix(pytester)
    result = pytester.runpytest(*SMALL, "--ipv6-require-docker")
    result.assert_outcomes(passed=5, deselected=121)  # each cell ran its watcher as an exec session
    result.stdout.fnmatch_lines([f"ipv6compat: Podman * at {podman} (from DOCKER_HOST), runtime runc, *"])
    assert _monitors_after(_state_dir(podman), CONMON_BOUND_S) == []


@pytest.mark.docker
def test_without_exit_command_delay_0_conmon_outlives_the_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the README's ``exit_command_delay = 0`` is for: without it, the watcher's exec session keeps two
    conmon processes per cell after the session has ended (for 300 s, Podman's default)."""
    conf = PODMAN_CONF.replace("exit_command_delay = 0\n", "")
    assert conf != PODMAN_CONF
    with podman_service(conf) as url:
        _prepare(url)
        monkeypatch.setenv("DOCKER_HOST", url)
        copy_matrix(pytester)
        result = pytester.runpytest("--ipv6-variants=adaptive", "--ipv6-settings=unset", "--ipv6-stacks=dual-stack")
        cells = result.parseoutcomes().get("passed", 0)
        assert cells > 0, result.stdout.str()[-3000:]
        assert result.ret == 0, result.stdout.str()[-3000:]
        left = _monitors_after(_state_dir(url), 3.0)
        # two per cell, each an exec session's (its -u names the session, not the container -c names)
        assert len(left) == 2 * cells, left
        assert all(_exec_monitor(line) for line in left), left

        # (podman_service ends them by pid when it stops)


@pytest.mark.docker
def test_require_docker_makes_a_remote_podmans_kernel_off_cells_errors(
    podman: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tcp_forward(podman) as remote:
        monkeypatch.setenv("DOCKER_HOST", remote)
        copy_matrix(pytester)
        chosen = ("--ipv6-variants=unpatched", "--ipv6-settings=unset", "--ipv6-stacks=ipv6-kernel-off", "-rs")
        lenient = pytester.runpytest(*chosen)
        counts = {k: v for k, v in lenient.parseoutcomes().items() if k != "deselected"}
        skipped = counts.get("skipped", 0)
        assert skipped > 0, lenient.stdout.str()[-3000:]
        assert set(counts) == {"skipped"}, lenient.stdout.str()[-3000:]
        lenient.stdout.fnmatch_lines([f"ipv6compat: Podman * at {remote} (from DOCKER_HOST), *, remote *",
                                      "SKIPPED*a remote Podman takes only as a file*pass --ipv6-require-docker*"])
        assert lenient.ret == 0
        strict = pytester.runpytest(*chosen, "--ipv6-require-docker")
        strict.assert_outcomes(errors=skipped, deselected=lenient.parseoutcomes()["deselected"])
        strict.stdout.fnmatch_lines([
            "stack ipv6-kernel-off needs a seccomp profile, which a remote Podman takes only as a file*"
            "--ipv6-require-docker is set: a stack the engine cannot realise is an error)"
        ])
        assert strict.ret == 1


class _BusyApi:
    """A stand-in for docker-py's API object whose removal fails as Podman 4.3's does when it meets its own
    clean-up process, ``busy`` times, then succeeds (pure retry logic: no engine involved)."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    def remove_container(self, container_id: str, **_: object) -> None:
        self.calls += 1
        if self.calls <= self.busy:
            response = requests.Response()
            response.status_code = 500
            raise docker.errors.APIError(
                "500 Server Error", response,
                explanation=f"removing container {container_id} root filesystem: 1 error occurred: * unlinkat "
                            "/var/tmp/x/storage/overlay-containers/c/userdata/shm: device or resource busy",
            )


class _Client:
    def __init__(self, api: _BusyApi) -> None:
        self.api = api


@pytest.mark.parametrize(("busy", "removed", "calls"), [(0, True, 1), (2, True, 3), (9, False, 6)])
def test_removal_that_meets_podmans_cleanup_is_retried(busy: int, removed: bool, calls: int) -> None:
    api = _BusyApi(busy)
    assert remove(_Client(api), "c", "ipv6compat-x-1") is removed  # type: ignore[arg-type]
    assert api.calls == calls
