"""How a started target is observed: hold window, private verdict channel, engine faults, probes.

Real containers on the real engine (``docker``), except the marker check, which fails
before any engine is asked. Each expectation is what the target really does; the zoo
(tests/test_zoo.py) checks the plugin against ground truth taken by another path.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import copy_matrix, launch

from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.model import Family, Listener, Outcome
from pytest_ipv6compat.stacks import STACKS

DUAL = STACKS["dual-stack"]
HTTPD = "busybox httpd -f -p 8080"
STAR = Listener(Family.INET6, "::", 8080, v6only=False)


@pytest.mark.docker
def test_a_target_that_exits_within_the_hold_window_is_exited_and_says_what_it_listened_on(
    engine: DockerBackend, base_image: str
) -> None:
    cmd = ("sh", "-c", f"{HTTPD} & sleep 0.5; echo 'giving up' >&2; exit 3")
    with engine.run(launch(base_image, DUAL, command=cmd, hold=2.0)) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.EXITED
    assert verdict.exit_code == 3
    assert verdict.listened == {STAR}
    assert verdict.error_line == "giving up"
    # The control: with a hold shorter than its life, the same target is up.
    with engine.run(launch(base_image, DUAL, command=cmd, hold=0.1)) as run:
        assert run.verdict().outcome is Outcome.UP


@pytest.mark.docker
def test_nothing_the_target_prints_changes_or_hides_the_report(engine: DockerBackend, base_image: str) -> None:
    noise = (
        "printf 'Starting proxy: '; "  # a partial line, as the shim's lines once followed
        "echo '@@ipv6compat ready'; echo '@@ipv6compat row tcp 0 00000000:1F90 00000000:0000 0A'; "
        "echo '@@ipv6compat 000000000000000000000000 attested'; printf '\\033[31mred\\033[0m\\n'; "
        "head -c 300 /dev/urandom; echo; "
    )
    with engine.run(launch(base_image, DUAL, command=("sh", "-c", noise + "exec " + HTTPD), probe="tcp")) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.UP
    assert verdict.listeners == {STAR}
    assert verdict.answered(STAR)
    assert "Starting proxy: @@ipv6compat ready" in verdict.logs  # the target's own lines are kept, as printed
    assert "@@ipv6compat row tcp" in verdict.logs
    assert "\x1b" not in verdict.logs  # control codes are dropped from what reports show
    assert "red" in verdict.logs


@pytest.mark.docker
def test_a_container_removed_by_someone_else_is_an_error_not_an_exit(
    engine: DockerBackend, base_image: str, client: Any
) -> None:
    with engine.run(launch(base_image, DUAL, command=("sleep", "30"), timeout=20)) as run:
        run.attestation()
        remover = threading.Timer(0.5, lambda: client.api.remove_container(run.container_id, force=True))
        remover.start()
        try:
            with pytest.raises(EngineError, match="was removed by someone else while the cell ran"):
                run.verdict()
        finally:
            remover.join()


@pytest.mark.docker
def test_a_missing_entrypoint_is_the_engines_failure_not_the_targets_exit(
    engine: DockerBackend, base_image: str
) -> None:
    missing = r"could not start the target: /app/server: no such file in the image"
    with engine.run(launch(base_image, DUAL, command=("/app/server", "--port", "80"))) as run, pytest.raises(
        EngineError, match=missing
    ):
        run.attestation()
    # A busybox applet the image does not have is not run from the probe's busybox either.
    with engine.run(launch(base_image, DUAL, command=("httpd", "-f"))) as run, pytest.raises(
        EngineError, match=r"httpd: no such file in the image \(PATH=.*\)"
    ):
        run.attestation()


@pytest.mark.docker
def test_failure_latency_is_the_exit_not_a_poll(engine: DockerBackend, base_image: str) -> None:
    """A bound, not a benchmark: the exit is reported by the engine, not found by a poll or a hold."""
    started = time.monotonic()
    with engine.run(launch(base_image, DUAL, command=("sh", "-c", "exit 4"), hold=30)) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.EXITED
    assert verdict.exit_code == 4
    assert time.monotonic() - started < 15, "an exit must not wait for the hold window or the timeout"


@pytest.mark.docker
def test_the_cloud_proxy_http_path_is_really_checked(pytester: pytest.Pytester) -> None:
    """A wrong path turns every up cell into a failure naming the 404; the right one passes (test_plugin_matrix)."""
    copy_matrix(pytester, ('http_path = "/healthz"', 'http_path = "/no-such-path"'))
    result = pytester.runpytest(
        "--ipv6-variants=unpatched", "--ipv6-stacks=dual-stack,ipv6-kernel-off", "--ipv6-settings=unset"
    )
    result.assert_outcomes(passed=1, failed=1)  # kernel-off exits before any request: still passes
    result.stdout.fnmatch_lines([
        "*0.0.0.0:56000 did not answer, expected it to*",
        "*0.0.0.0:56000: did not answer (inet: accepted, HTTP/1.1 404 Not Found)*",
    ])


@pytest.mark.docker
def test_a_plain_http_probe_of_a_tls_port_is_not_an_answer(pytester: pytest.Pytester) -> None:
    copy_matrix(pytester, ('probe = "https"', 'probe = "http"'))
    result = pytester.runpytest("--ipv6-variants=unpatched", "--ipv6-stacks=dual-stack", "--ipv6-settings=unset")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*inet: accepted, HTTP/1.1 400 Bad Request*"])


def test_unknown_marker_argument_is_an_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ipv6_target(image="whatever:1", read_onyl=True)
        def test_it(ipv6_target):
            pass

        @pytest.mark.ipv6_target(image="whatever:1", timeout="10")
        def test_timeout_text(ipv6_target):
            pass

        @pytest.mark.ipv6_target(image="whatever:1", command="serve --port 80")
        def test_command_string(ipv6_target):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines([
        "*marker ipv6_target: unknown setting(s): read_onyl (known: probe, *",
        "*marker ipv6_target: timeout = '10' is not a number of seconds*",
        "*marker ipv6_target: command must be a non-empty list of strings, got 'serve --port 80'*",
    ])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.docker
def test_matrix_without_a_knob_runs_its_stacks(pytester: pytest.Pytester, base_image: str) -> None:
    pytester.makefile(
        ".ipv6.toml",
        httpd=f"""
        [target]
        name = "httpd"
        images = {{ busybox = "{base_image}" }}
        variants = ["busybox"]
        command = ["busybox", "httpd", "-f", "-p", "8080"]
        hold = 0.2

        [expect.busybox]
        dual-stack = "up *:8080"
        ipv6-sysctl-off = "up *:8080"
        ipv6-kernel-off = "up 0.0.0.0:8080"
        """,
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*httpd.ipv6.toml::httpd[[]busybox-dual-stack[]] PASSED*",
        "httpd: no knob, 3 cells",
        "*dual*",
    ])


@pytest.mark.docker
def test_a_fork_bomb_and_a_memory_hog_end_at_the_cell_bounds(engine: DockerBackend, base_image: str) -> None:
    """Bounded by the limits, not by luck: the host's process count is back where it was afterwards."""
    before = len([p for p in os.listdir("/proc") if p.isdigit()])
    # After the bomb the shell waits with builtins only (a `sleep` could not be forked) and exits 9.
    bomb = ("sh", "-c", "echo forking; b() { b | b & }; b; i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; exit 9")
    with engine.run(launch(base_image, DUAL, command=bomb, pids=32, timeout=15)) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.EXITED
    assert verdict.exit_code == 9  # it ran out of processes, not the machine
    assert "can't fork" in verdict.logs or "Resource temporarily unavailable" in verdict.logs
    hog = ("sh", "-c", "echo eating; exec awk 'BEGIN { s = \"x\"; while (1) s = s s }'")
    with engine.run(launch(base_image, DUAL, command=hog, memory="64m", timeout=30)) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.EXITED
    assert verdict.error_line == "killed by the kernel: out of memory at the cell's memory limit (64m)"
    assert verdict.exit_code == 137
    after = len([p for p in os.listdir("/proc") if p.isdigit()])
    assert after < before + 20, f"{after - before} more processes on the host than before the cells"


@pytest.mark.docker
def test_nothing_is_bind_mounted_from_the_pytest_host(
    engine: DockerBackend, base_image: str, client: Any, tmp_path: Path
) -> None:
    """An engine that does not share this filesystem must work the same: probe and config travel as volumes."""
    config = tmp_path / "conf"
    config.mkdir()
    (config / "app.conf").write_text("listen 8080\n")
    own = DockerBackend.connect(engine.probe_dir)
    cmd = ("sh", "-c", f"cat /etc/app/app.conf; {HTTPD}")
    with own.run(launch(base_image, DUAL, command=cmd, mounts=(("/etc/app", str(config)),), hold=0.1)) as run:
        verdict = run.verdict()
        mounts = client.api.inspect_container(run.container_id)["Mounts"]
    assert verdict.outcome is Outcome.UP
    assert "listen 8080" in verdict.logs
    assert sorted((m["Type"], m["Destination"], m["RW"]) for m in mounts) == [
        ("volume", "/.ipv6compat", False), ("volume", "/etc/app", False),
    ]
    names = [m["Name"] for m in mounts]
    assert own.remove_session() == 0  # the container is already gone; its volumes go with the session
    left = {v.name for v in client.volumes.list(filters={"label": "ipv6compat.session"})}
    assert not left & set(names)
