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

from pytest_ipv6compat import matrix
from pytest_ipv6compat.backends import EngineError
from pytest_ipv6compat.backends.docker_api import DockerBackend
from pytest_ipv6compat.backends.uml import UmlBackend
from pytest_ipv6compat.model import Family, Listener, Outcome
from pytest_ipv6compat.probe.report import WatchReport
from pytest_ipv6compat.spec import RunSpec
from pytest_ipv6compat.stacks import STACKS

DUAL = STACKS["dual-stack"]
HTTPD = "busybox httpd -f -p 8080"
STAR = Listener(Family.INET6, "::", 8080, v6only=False)


@pytest.mark.docker
def test_a_target_that_exits_within_the_hold_window_is_exited_and_says_what_it_listened_on(
    engine: DockerBackend, base_image: str
) -> None:
    # It lives 2 s after it starts httpd: long enough, on a loaded machine too, for the control's
    # watcher (an exec session) to start, settle and hold 0.1 s before the exit.
    cmd = ("sh", "-c", f"{HTTPD} & sleep 2; echo 'giving up' >&2; exit 3")
    with engine.run(launch(base_image, DUAL, command=cmd, hold=4.0)) as run:
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
@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_container_stopped_or_killed_from_outside_is_an_error_not_an_exit(
    engine: DockerBackend, base_image: str, client: Any, how: str
) -> None:
    """``docker kill`` (SIGKILL) or ``docker stop`` (SIGTERM, then SIGKILL) mid-cell: not ``exited 137``."""
    with engine.run(launch(base_image, DUAL, command=("sleep", "30"), timeout=20)) as run:
        run.attestation()
        act = (lambda: client.api.kill(run.container_id)) if how == "kill" else \
            (lambda: client.api.stop(run.container_id, timeout=1))
        actor = threading.Timer(0.3, act)
        actor.start()
        try:
            with pytest.raises(EngineError, match=r"was stopped or killed from outside the cell \(the engine sent "
                                                  r"signal (9|15, 9)"):
                run.verdict()
        finally:
            actor.join()


@pytest.mark.docker
def test_a_target_killed_from_inside_is_its_own_exit(engine: DockerBackend, base_image: str) -> None:
    """The same exit code, 137, from a SIGKILL inside the target (a child it waits for, as a wrapper script
    does; PID 1 itself ignores it): a verdict, not an error."""
    script = "sleep 0.3; sh -c 'kill -9 $$'; exit $?"
    with engine.run(launch(base_image, DUAL, command=("sh", "-c", script), timeout=20)) as run:
        verdict = run.verdict()
    assert (verdict.outcome, verdict.exit_code) == (Outcome.EXITED, 137), verdict


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
def test_neither_a_listener_that_never_answers_nor_a_crash_loop_passes_as_up(
    pytester: pytest.Pytester, base_image: str
) -> None:
    flap = "while :; do busybox httpd -f -p 8080 & p=$!; sleep 0.3; kill $p; wait $p; sleep 0.1; done"
    # pod: httpd bound to the pod address only (no loopback reaches it), and the path probed does not exist, so
    # every answer is a 404. flap: httpd killed and restarted every 0.4 s, so its set never stands for the 1 s
    # hold; each final set the window can end on is the one expected. Both passed before.
    pytester.makefile(
        ".ipv6.toml",
        holes=f"""
        [target]
        name = "holes"
        images = {{ pod = "{base_image}", flap = "{base_image}" }}
        variants = ["pod", "flap"]
        stacks = ["dual-stack"]

        [variant.pod]
        probe = "http"
        http_path = "/no-such-page"
        command = ["busybox", "httpd", "-f", "-p", "10.69.0.2:8080", "-h", "/"]

        [variant.flap]
        command = ["sh", "-c", "{flap}"]

        [expect.pod]
        dual-stack = "up 10.69.0.2:8080"

        [expect.flap]
        dual-stack = "up *:8080"
        """,
    )
    result = pytester.runpytest("-v", "--ipv6-require-docker")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random([
        "*10.69.0.2:8080 did not answer over the pod address (no loopback reaches it; inet: accepted, HTTP/1.? 404*",
        "*the listener set never stood unchanged for the hold window, so up is not proven*",
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


# --- the hold window: the listener set is followed until the verdict (pure: records in, verdict out) ---

V4 = [Listener(Family.INET, "0.0.0.0", port) for port in (8080, 8081, 8082)]
SETTLED = ["listener tcp inet 0.0.0.0 8080 -", "settled 0.051", "reach tcp inet 0.0.0.0 8080 inet accepted 1 ok"]


def _report(*records: str) -> WatchReport:
    report = WatchReport()
    for record in records:
        report.feed(record)
    return report


def _up(report: WatchReport) -> Any:
    return report.verdict(Outcome.UP, exit_code=None, error_line=None, logs="", seconds=2.0)


def test_listeners_opened_during_the_hold_are_in_the_verdict_with_their_probes_and_the_changes() -> None:
    report = _report(
        *SETTLED,
        "opened tcp inet 0.0.0.0 8081 - 0.312", "opened tcp inet 0.0.0.0 8082 - 1.013",
        "reach tcp inet 0.0.0.0 8081 inet accepted 1 ok", "reach tcp inet 0.0.0.0 8082 inet accepted 1 ok", "ready",
    )
    verdict = _up(report)
    assert verdict.listeners == set(V4)
    assert all(verdict.answered(x) for x in V4)
    assert verdict.change_text() == (
        "listener set changed during the hold: +0.0.0.0:8081 at 0.31 s, +0.0.0.0:8082 at 1.01 s"
    )
    assert not matrix.judge(matrix.parse_expectation("up 0.0.0.0:8080 0.0.0.0:8081 0.0.0.0:8082"), verdict)
    reasons = matrix.judge(matrix.parse_expectation("up 0.0.0.0:8080"), verdict).reasons
    assert reasons[-1] == verdict.change_text()  # a failure says what changed during the hold


def test_a_listener_closed_during_the_hold_is_gone_from_the_verdict_and_the_failure_says_when() -> None:
    report = _report(
        "listener tcp inet 0.0.0.0 8080 -", "listener tcp inet 0.0.0.0 8081 -", "settled 0.05",
        "reach tcp inet 0.0.0.0 8080 inet accepted 1 ok", "reach tcp inet 0.0.0.0 8081 inet accepted 1 ok",
        "closed tcp inet 0.0.0.0 8080 - 0.301", "ready",
    )
    verdict = _up(report)
    assert verdict.listeners == {V4[1]}
    assert [str(r.listener) for r in verdict.reach] == ["0.0.0.0:8081"]  # the closed one's probe no longer counts
    reasons = matrix.judge(matrix.parse_expectation("up 0.0.0.0:8080 0.0.0.0:8081"), verdict).reasons
    assert reasons == (
        "missing listeners: 0.0.0.0:8080",
        "a port that no listener had when the hold window ended: one the target opens more than hold seconds"
        " after its previous listener change needs a longer hold (run setting hold, --ipv6-hold)",
        "listener set changed during the hold: -0.0.0.0:8080 at 0.30 s",
    )


def test_every_listener_closed_means_not_listening_and_a_timeout_names_the_change() -> None:
    report = _report(*SETTLED, "closed tcp inet 0.0.0.0 8080 - 0.300")
    assert report.settled is not None
    assert not report.listening
    with pytest.raises(ValueError, match="ready while nothing listens"):
        _report(*SETTLED, "closed tcp inet 0.0.0.0 8080 - 0.300", "ready")
    verdict = report.verdict(Outcome.TIMEOUT, exit_code=None, error_line=None, logs="", seconds=3.0)
    assert verdict.listeners == set()
    reasons = matrix.judge(matrix.parse_expectation("up 0.0.0.0:8080"), verdict).reasons
    assert reasons == (
        "expected up, but the target timed out",
        "listener set changed during the hold: -0.0.0.0:8080 at 0.30 s",
    )
    # An exit after it closed still says what it had listened on.
    exited = report.verdict(Outcome.EXITED, exit_code=1, error_line=None, logs="", seconds=1.0)
    assert exited.listened == {V4[0]}


def test_a_listener_in_a_verdict_without_a_probe_for_each_family_it_serves_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"ready, but 0.0.0.0:8081 has no probe result over inet"):
        _report(*SETTLED, "opened tcp inet 0.0.0.0 8081 - 0.3", "ready")
    with pytest.raises(ValueError, match=r"ready, but \*:8080 has no probe result over inet6"):
        _report("listener tcp inet6 :: 8080 0", "settled 0.05", "reach tcp inet6 :: 8080 inet accepted 1 ok", "ready")
    # A listener that closed and came back is probed again: its earlier probe is gone with it.
    with pytest.raises(ValueError, match="has no probe result"):
        _report(*SETTLED, "closed tcp inet 0.0.0.0 8080 - 0.3", "opened tcp inet 0.0.0.0 8080 - 0.4", "ready")


@pytest.mark.parametrize(
    ("records", "why"),
    [
        (["listener tcp inet 0.0.0.0 8080 -", "opened tcp inet 0.0.0.0 8081 - 0.3"], "a change before settled"),
        ([*SETTLED, "opened tcp inet 0.0.0.0 8080 - 0.3"], "opened while it was listening"),
        ([*SETTLED, "closed tcp inet 0.0.0.0 8081 - 0.3"], "closed while it was not listening"),
        ([*SETTLED, "listener tcp inet 0.0.0.0 8081 -"], "a listener record after settled"),
        ([*SETTLED, "reach tcp inet 0.0.0.0 8080 inet accepted 1 again"], "a second probe"),
        ([*SETTLED, "reach tcp inet 0.0.0.0 8080 inet6 accepted 1 x"], "does not serve inet6"),
        ([*SETTLED, "opened tcp inet 0.0.0.0 8081 - soon"], "could not convert"),
        ([*SETTLED, "unsteady -1"], "out of range"),
        ([*SETTLED, "ready", "closed tcp inet 0.0.0.0 8080 - 2.0"], "a record after ready"),
    ],
)
def test_a_change_record_out_of_place_is_malformed(records: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=f"malformed record.*{why}"):
        _report(*records)


def test_a_set_still_changing_at_the_bound_says_so_and_names_settle_and_hold() -> None:
    report = _report(*SETTLED, "opened tcp inet 0.0.0.0 8081 - 2.9",
                     "reach tcp inet 0.0.0.0 8081 inet accepted 1 ok", "unsteady 0.150", "ready")
    verdict = _up(report)
    assert verdict.unsteady == pytest.approx(0.15)
    text = verdict.unsteady_text() or ""
    assert "still changing" in text
    assert "0.15 s" in text
    assert "--ipv6-hold" in text
    assert "--ipv6-settle" in text
    assert text in matrix.judge(matrix.parse_expectation("up 0.0.0.0:8080"), verdict).reasons


def test_the_report_deadline_covers_the_longest_hold_window() -> None:
    report = _report(*SETTLED)
    assert report.report_deadline(100.0, 1.0) >= 100.0 + 3 * 1.0 + 7.0 * 2


# --- the same on the real engine (busybox httpd in the base image; the zoo does it against ground truth) ---

PORTS_APART = (
    "busybox httpd -f -p 8080 & sleep 0.3; busybox httpd -f -p 8081 & sleep 0.7; exec busybox httpd -f -p 8082"
)


@pytest.mark.docker
def test_ports_opened_0_3_and_0_7_s_apart_are_all_up_with_the_default_settle_and_hold(
    engine: DockerBackend, base_image: str
) -> None:
    defaults = RunSpec()
    cmd = ("sh", "-c", PORTS_APART)
    with engine.run(launch(base_image, DUAL, command=cmd, probe="tcp", settle=defaults.settle,
                           hold=defaults.hold)) as run:
        verdict = run.verdict()
    stars = {Listener(Family.INET6, "::", port, v6only=False) for port in (8080, 8081, 8082)}
    assert verdict.outcome is Outcome.UP, verdict
    assert verdict.listeners == stars
    assert all(verdict.answered(x) for x in stars)
    # Which ports opened after the set first settled depends on when the watcher started (an exec session).
    assert {str(c).split(" at ")[0] for c in verdict.changes} <= {"+*:8081", "+*:8082"}


@pytest.mark.docker
def test_a_target_that_closes_its_only_listener_is_never_up(engine: DockerBackend, base_image: str) -> None:
    # busybox nc -l closes its listening socket when it accepts: after the watcher's probe, inside the hold.
    cmd = ("sh", "-c", "busybox nc -l -p 8080 >/dev/null; exec sleep 60")
    started = time.monotonic()
    with engine.run(launch(base_image, DUAL, command=cmd, probe="tcp", hold=1.0, timeout=3.0)) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.TIMEOUT
    assert [str(c).split(" at ")[0] for c in verdict.changes] == ["-*:8080"]
    assert time.monotonic() - started < 15
    reasons = matrix.judge(matrix.parse_expectation("up *:8080"), verdict).reasons
    assert any(r.startswith("listener set changed during the hold: -*:8080 at ") for r in reasons), reasons


@pytest.mark.docker
def test_under_user_mode_linux_too_the_hold_follows_the_set(uml: UmlBackend, base_image: str) -> None:
    """The same records, read by the same parser, from the UML backend: the late ports are in, a closed one is gone."""
    defaults = RunSpec()
    boot = STACKS["ipv6-boot-disabled"]
    with uml.run(launch(base_image, boot, command=("sh", "-c", PORTS_APART), probe="tcp", settle=defaults.settle,
                        hold=defaults.hold)) as run:
        verdict = run.verdict()
    fours = {Listener(Family.INET, "0.0.0.0", port) for port in (8080, 8081, 8082)}
    assert verdict.outcome is Outcome.UP, verdict.logs
    assert verdict.listeners == fours
    assert all(verdict.answered(x) for x in fours)
    closes = "busybox nc -l -p 8080 >/dev/null & exec busybox httpd -f -p 8081"  # nc closes 8080 on its client
    with uml.run(launch(base_image, boot, command=("sh", "-c", closes), probe="tcp", hold=1.0)) as run:
        verdict = run.verdict()
    assert verdict.outcome is Outcome.UP, verdict.logs
    assert verdict.listeners == {Listener(Family.INET, "0.0.0.0", 8081)}
    assert [str(c).split(" at ")[0] for c in verdict.changes] == ["-0.0.0.0:8080"]
