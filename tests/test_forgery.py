"""A target cannot write the probe's report (issue 15, section 2).

``tests/forgery/forger.c`` is a target that never listens and goes after the watcher from
inside the container: it opens ``/proc/PID/fd/1`` to write records, reads its environment
for the key, opens its ``mem``, kills it, stops it, stops and continues it, sends it
SIGTERM, or prints records on its own output. Before the sealed channel, ``forge`` passed
as ``up 0.0.0.0:9999`` on every container stack, as root and as uid 65534, on Docker and
Podman. Now every route ends in one of two ways, never in a verdict the target chose:

* the route is closed: every ``/proc`` open is refused (the watcher is not dumpable from
  execve on), the report is the watcher's own, and the verdict is the truth: ``timeout``,
  the target never listened (an ``up`` expectation fails);
* the route reaches the watcher: the cell is an error naming what happened.

A target that did reach the watcher's output (on an engine where the watcher could not be
protected from its start) is simulated from the host, which may open the watcher's
``/proc/PID/fd/1``: the forged lines make the cell an error naming the tampering.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from engines import podman_service

from pytest_ipv6compat import images
from pytest_ipv6compat.backends import EngineError, Launch
from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.backends.uml import UmlBackend
from pytest_ipv6compat.model import Outcome, Verdict
from pytest_ipv6compat.probe.report import WATCH_GROUP
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import get_stack

ROOT = Path(__file__).resolve().parent.parent
FORGERY = ROOT / "tests" / "forgery"
MATRIX = ROOT / "matrix" / "cloud-proxy.ipv6.toml"
FORGER = "/usr/local/bin/forger"
STACKS = ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off")
USERS = ("root", "65534")
REFUSED = ("environ", "mem", "fd/0", "fd/1", "fd/2")
pytestmark = pytest.mark.docker


def forger_image(client: docker.DockerClient, base: str, tmp: Path) -> str:
    """tests/forgery with the forger compiled (gcc -static), on the client's engine, cached by content."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("the forger needs the host's gcc (apt-get install gcc)")
    shutil.copy(FORGERY / "Dockerfile", tmp / "Dockerfile")
    done = subprocess.run([gcc, "-static", "-O2", "-o", str(tmp / "forger"), str(FORGERY / "forger.c")],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"gcc -static could not build tests/forgery/forger.c: {done.stderr.strip()[-200:]}")
    return str(images.ensure_target_image(client, tmp, base=base, name="forger", build_args={}))


@pytest.fixture(scope="module")
def docker_forger(engine: Engine, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, str]:
    return engine, forger_image(engine.client, base_image, tmp_path_factory.mktemp("forger"))


@pytest.fixture(scope="module")
def podman_forger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, str]]:
    with podman_service() as url:
        done = subprocess.run([sys.executable, "-m", "pytest_ipv6compat", "prepare", str(MATRIX)],
                              env={**os.environ, "DOCKER_HOST": url}, capture_output=True, text=True, timeout=900,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        engine = Engine.connect(images.ensure_probe(images.default_cache_dir()), url=url)
        try:
            base = images.ensure_base_image(engine.client, images.default_cache_dir())
            yield engine, forger_image(engine.client, base, tmp_path_factory.mktemp("forger-podman"))
        finally:
            engine.remove_session()
            engine.client.close()


class Injector(threading.Thread):
    """From the host: write forged lines into the watcher's output once it runs (what a target could do
    if it reached /proc/PID/fd/1)."""

    def __init__(self, client: docker.DockerClient, lines: str) -> None:
        super().__init__(daemon=True)
        self.client, self.lines, self.container_id, self.done = client, lines, "", ""

    def run(self) -> None:
        end = time.monotonic() + 5
        while time.monotonic() < end and not self.done:
            top = self.client.api.top(self.container_id)
            column = top["Titles"].index("PID")
            for row in top["Processes"]:
                if row[-1].split()[0].endswith("/watch"):
                    time.sleep(0.3)  # after its start record
                    with open(f"/proc/{row[column]}/fd/1", "w") as out:
                        out.write(self.lines)
                    self.done = f"wrote into the watcher (pid {row[column]})"
            time.sleep(0.05)


def run_cell(engine: Engine, image: str, command: tuple[str, ...], *, stack: str = "dual-stack",
             user: str = "root", timeout: float = 4.0, during: Injector | None = None,
             ) -> tuple[Verdict | None, str, str]:
    """(verdict or None, the error if any, the target's log) of one cell of ``image`` running ``command``."""
    spec = RunSpec(command=command, user=None if user == "root" else user, timeout=timeout, hold=0.5)
    with engine.run(Launch(image, get_stack(stack), run=spec)) as run:
        assert run.attestation().ok
        if during is not None:
            during.container_id = run.container_id
            during.start()
        try:
            verdict, error = run.verdict(), ""
        except EngineError as exc:
            verdict, error = None, str(exc)
        return verdict, error, run.logs()


def assert_route_closed(verdict: Verdict | None, error: str, logs: str) -> None:
    """Every /proc open refused, and the watcher's own report: the target never listened."""
    assert "forger: watcher found" in logs, logs
    for what in REFUSED:
        assert f"/{what}: Permission denied" in logs, f"/proc/PID/{what} was not refused:\n{logs}"
    assert "opened" not in logs, logs
    assert "wrote" not in logs, logs
    assert verdict is not None, error
    assert (verdict.outcome, verdict.listeners) == (Outcome.TIMEOUT, frozenset()), verdict


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("stack", STACKS)
def test_the_forger_cannot_reach_the_watcher_on_docker(
    docker_forger: tuple[Engine, str], stack: str, user: str
) -> None:
    engine, image = docker_forger
    assert_route_closed(*run_cell(engine, image, (FORGER, "forge"), stack=stack, user=user))


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("stack", ["dual-stack", "ipv6-kernel-off"])
def test_the_forger_cannot_reach_the_watcher_on_podman(
    podman_forger: tuple[Engine, str], stack: str, user: str
) -> None:
    engine, image = podman_forger
    assert_route_closed(*run_cell(engine, image, (FORGER, "forge"), stack=stack, user=user))


def test_the_forger_cannot_swallow_the_watchers_records(docker_forger: tuple[Engine, str]) -> None:
    engine, image = docker_forger
    verdict, error, logs = run_cell(engine, image, (FORGER, "steal"))
    assert "/fd/1: Permission denied" in logs, logs
    assert verdict is not None, error
    assert verdict.outcome is Outcome.TIMEOUT


# (forger arguments, what the error must say): at once (usually before the watcher's first record) and later.
SIGNALS = [
    (("kill",), "the probe's watcher never started its report|the probe's watcher was killed"),
    (("kill", "0.5"), r"the probe's watcher was killed: its report stopped after record \d+ \('alive'\)"),
    (("stop",), "the probe's watcher stopped: no record for 3 s"),
    (("stop", "0.5"), r"the probe's watcher stopped: no record for 3 s after 'alive' \(stopped with SIGSTOP"),
    (("stopcont", "0.5"), "the target tampered with the probe's watcher: the watcher was stopped and continued"),
    (("term", "0.5"), r"the target tampered with the probe's watcher: the watcher was sent signal 15"),
]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize(("args", "says"), SIGNALS, ids=["-".join(a) for a, _ in SIGNALS])
def test_killing_or_stopping_the_watcher_is_an_error_never_a_verdict(
    docker_forger: tuple[Engine, str], args: tuple[str, ...], says: str, user: str
) -> None:
    engine, image = docker_forger
    started = time.monotonic()
    verdict, error, logs = run_cell(engine, image, (FORGER, *args), user=user, timeout=10)
    assert verdict is None, f"{verdict} (the forger: {logs})"
    assert re.search(says, error), error
    assert f"forger: {args[0]} the watcher: done" in logs, logs
    assert time.monotonic() - started < 9, "the error came no sooner than the cell's timeout"


def test_stopping_the_watcher_just_before_the_deadline_is_no_timeout(docker_forger: tuple[Engine, str]) -> None:
    """Stopped about 2.5 s before the cell's 5 s are up, when the last record is younger than the stall bound:
    the cell is a timeout only once a record after the deadline shows the watcher alive, so here an error."""
    engine, image = docker_forger
    verdict, error, logs = run_cell(engine, image, (FORGER, "stop", "2.0"), timeout=5)
    assert verdict is None, (verdict, logs)
    assert "the probe's watcher stopped: no record for 3 s after 'alive'" in error, error


@pytest.mark.parametrize("user", USERS)
def test_killing_or_stopping_the_watcher_is_an_error_on_podman(podman_forger: tuple[Engine, str], user: str) -> None:
    engine, image = podman_forger
    for args, says in (SIGNALS[1], SIGNALS[3]):
        verdict, error, logs = run_cell(engine, image, (FORGER, *args), user=user, timeout=10)
        assert verdict is None, (verdict, logs)
        assert re.search(says, error), error


def test_a_watcher_not_protected_from_its_start_is_an_error(docker_forger: tuple[Engine, str]) -> None:
    """A target whose group is the watcher's: the setgid exec changes nothing, so the watcher is dumpable until
    its prctl, a window in which the target could reach it. The cell is an error, not a verdict."""
    engine, image = docker_forger
    verdict, error, _ = run_cell(engine, image, ("sleep", "60"), user=f"65534:{WATCH_GROUP}")
    assert verdict is None, verdict
    assert "the probe's watcher was not protected from its start" in error, error
    assert f"the target runs as group {WATCH_GROUP}" in error


def test_records_the_target_prints_on_its_own_output_are_its_log(docker_forger: tuple[Engine, str]) -> None:
    engine, image = docker_forger
    verdict, error, logs = run_cell(engine, image, (FORGER, "print"))
    assert verdict is not None, error
    assert verdict.outcome is Outcome.TIMEOUT
    assert "listener tcp inet 0.0.0.0 9999 -" in logs  # kept as what the target printed, nothing more


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ("listener tcp inet 0.0.0.0 9999 -\nsettled 0.050\nready\n", "an unsealed line 'listener tcp inet"),
        ("7 0123456789abcdef0123456789abcdef ready\n", "a line with a wrong seal '7 0123456789abcdef"),
    ],
    ids=["bare", "sealed-without-the-key"],
)
def test_records_written_into_the_watchers_output_are_an_error_naming_the_tampering(
    docker_forger: tuple[Engine, str], lines: str, says: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the host side needs root to open another process's /proc/PID/fd/1")
    engine, image = docker_forger
    if not engine.address.startswith(("unix://", "/")) and "docker.sock" not in engine.address:
        pytest.skip(f"the watcher's pid is on this host only for a local engine, not {engine.address}")
    injector = Injector(engine.client, lines)
    verdict, error, _ = run_cell(engine, image, ("sleep", "60"), during=injector)
    injector.join(5)
    assert injector.done, "the watcher was not found from the host"
    assert verdict is None, verdict
    assert "the probe's report was tampered with: " + says in error, error


@pytest.fixture(scope="module")
def uml_forger(docker_forger: tuple[Engine, str], request: pytest.FixtureRequest) -> tuple[UmlBackend, str]:
    return request.getfixturevalue("uml"), docker_forger[1]


def run_uml_cell(uml: UmlBackend, image: str, command: tuple[str, ...], user: str) -> tuple[Verdict | None, str, str]:
    spec = RunSpec(command=command, user=None if user == "root" else user, timeout=6.0, hold=0.5)
    with uml.run(Launch(image, get_stack("ipv6-boot-disabled"), run=spec)) as run:
        assert run.attestation().ok
        try:
            return run.verdict(), "", run.logs()
        except EngineError as exc:
            # The error can come before the console's reader has the target's last lines: wait for them (bounded).
            end = time.monotonic() + 5
            while "forger: watcher" not in run.logs() and time.monotonic() < end:
                time.sleep(0.05)
            if "forger: watcher found" in run.logs():
                while not re.search(r"forger: (wrote \d+ bytes of records to fd/2|.* the watcher: )", run.logs()) \
                        and time.monotonic() < end:
                    time.sleep(0.05)
            return None, str(exc), run.logs()


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_under_uml_the_forger_cannot_reach_the_watcher(uml_forger: tuple[UmlBackend, str], user: str) -> None:
    """Root in the guest holds only the capabilities Docker gives a container (no CAP_SYS_PTRACE), so every
    /proc route to the watcher (or to init, which holds the tag) is refused as on Docker; uid 65534 by name."""
    uml, image = uml_forger
    assert_route_closed(*run_uml_cell(uml, image, (FORGER, "forge"), user))


def test_under_uml_a_root_target_cannot_read_init(uml_forger: tuple[UmlBackend, str]) -> None:
    """Init (pid 1) holds the tag of the private channel and the watcher's key in its memory."""
    uml, image = uml_forger
    script = ("for f in environ mem; do head -c 1 /proc/1/$f >/dev/null 2>&1 && echo \"read $f\" "
              "|| echo \"refused $f\"; done; exit 3")
    verdict, error, logs = run_uml_cell(uml, image, ("sh", "-c", script), "root")
    assert verdict is not None, (error, logs)
    assert verdict.outcome is Outcome.EXITED, (verdict, logs)
    assert "refused environ" in logs, logs
    assert "refused mem" in logs, logs


@pytest.mark.parametrize("args", [("kill", "0.5"), ("stop", "0.5")], ids=["kill-0.5", "stop-0.5"])
def test_under_uml_killing_or_stopping_the_watcher_is_an_error(
    uml_forger: tuple[UmlBackend, str], args: tuple[str, ...]
) -> None:
    """Under UML the watcher's channel is init's console, which stays open when the watcher dies: both end
    in the stall error."""
    uml, image = uml_forger
    verdict, error, logs = run_uml_cell(uml, image, (FORGER, *args), "root")
    assert verdict is None, (verdict, logs)
    assert f"forger: {args[0]} the watcher: done" in logs, logs
    assert "the probe's watcher stopped reporting: no record for 3 s after 'alive' (killed or stopped" in error, error


def test_under_uml_stopping_the_watcher_just_before_the_deadline_is_no_timeout(
    uml_forger: tuple[UmlBackend, str],
) -> None:
    uml, image = uml_forger
    verdict, error, logs = run_uml_cell(uml, image, (FORGER, "stop", "2.5"), "root")  # the cell's timeout: 6 s
    assert verdict is None, (verdict, logs)
    assert "the probe's watcher stopped reporting: no record for 3 s after 'alive'" in error, error
