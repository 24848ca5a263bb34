"""The zoo: every target on every stack, the plugin's verdict and ground truth in the same run.

``test_ground_truth`` starts the zoo image WITHOUT the plugin, with plain ``docker run``
semantics matching the plugin's (``--network none``, the stack's sysctls and seccomp profile from
``pytest_ipv6compat.stacks``, not privileged, the session label), takes ground truth with
``groundtruth.py`` (it waits for events, bounded by the target's timeout: the exit, or the socket
table reaching the expected listeners and holding them for the hold) and compares it with the
expectation in ``zoo_table.py``: the table is true.

``test_plugin_verdict`` starts the same target through ``ipv6_target_factory`` and, while the
plugin still holds the container, takes ground truth from that very container; then it checks
the plugin's verdict against the table (with the plugin's own judge), the plugin's verdict
against ground truth (outcome, exit code, listeners with their families, per-family connect
result, probe success and status), and the table against that ground truth.

What each cell showed is kept as user properties (``ground truth``, ``plugin``), so
``--junitxml`` records it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from groundtruth import facts, observe
from zoo_compare import disagreements, mismatch, parse_expectation, plugin_text
from zoo_table import STACKS, TARGETS, ZooTarget

from pytest_ipv6compat import TargetFactory, images, matrix
from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.model import Outcome, Verdict
from pytest_ipv6compat.stacks import get_stack

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "tests" / "zoo"
TLS = ROOT / "matrix" / "cloud-proxy" / "tls"
pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("ground_truth_tools")]


def compile_zoosrv(dest: Path) -> None:
    """``gcc -static -O2`` the zoo's server to ``dest``; skip (with the reason) when that cannot work here."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("the zoo needs the host's gcc to compile tests/zoo/src/zoosrv.c (apt-get install gcc)")
    done = subprocess.run([gcc, "-static", "-O2", "-o", str(dest), str(ZOO / "src" / "zoosrv.c")],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["(no output)"]
        pytest.skip(f"gcc -static could not build tests/zoo/src/zoosrv.c (static libc missing? "
                    f"apt-get install libc6-dev): {last[0]}")


@pytest.fixture(scope="session")
def zoo_image(client: docker.DockerClient, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one zoo image: tests/zoo plus the compiled server and the test certificate, cached by content."""
    context = tmp_path_factory.mktemp("zoo-context")
    shutil.copytree(ZOO, context, dirs_exist_ok=True, ignore=shutil.ignore_patterns("src", "__pycache__"))
    compile_zoosrv(context / "zoosrv")
    shutil.copytree(TLS, context / "tls")
    return str(images.ensure_target_image(client, context, base=base_image, name="zoo", build_args={}))


@contextlib.contextmanager
def started(client: docker.DockerClient, engine: Engine, image: str, target: ZooTarget, stack: str) -> Iterator[Any]:
    """``docker run -d --network none`` with the stack's settings; always removed."""
    st = get_stack(stack)
    container = client.containers.create(
        image, list(target.command[1:]), entrypoint=[target.command[0]], network_mode="none",
        sysctls=st.sysctls(), security_opt=st.security_opt(), labels=engine.labels, privileged=False,
        extra_hosts=dict(target.extra_hosts) or None, user=target.user or "",
    )
    try:
        container.start()
        yield container
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)


# The 100 MB log costs ~10 s a cell and its truth does not depend on the stack: in the
# plugin-free test it runs on dual-stack only (test_plugin_verdict runs it on every stack).
GROUND_TRUTH_CELLS = [
    pytest.param(target, stack, id=f"{target.name}-{stack}")
    for target in TARGETS
    for stack in STACKS
    if target.name != "logs-100mb" or stack == "dual-stack"
]


@pytest.mark.parametrize(("target", "stack"), GROUND_TRUTH_CELLS)
def test_ground_truth(
    target: ZooTarget, stack: str, zoo_image: str, client: docker.DockerClient, engine: Engine,
    record_property: Any, request: pytest.FixtureRequest,
) -> None:
    expected = parse_expectation(target.expectation(stack), source=f"zoo_table {target.name} on {stack}")
    with started(client, engine, zoo_image, target, stack) as container:
        wanted = frozenset(t.removesuffix("/silent") for t in expected.listeners) if expected.outcome == "up" else None
        truth = observe(container, target.probe, expect=wanted, hold=target.hold or 1.0, timeout=target.timeout)
        logs = container.logs(tail=200).decode("utf-8", "replace") if truth.outcome == "exited" else ""
    record_property("ground truth", truth.render(target.probe))
    request.node.add_report_section("call", "ground truth", truth.describe(target.probe))
    if truth.outcome == "exited":
        assert " ".join(truth.had_listened) == target.listened.get(stack, ""), "had listened on, before the exit"
    if truth.has_v6_loopback is not None:  # the stack as the namespace shows it, not as the shim reports it
        assert truth.has_v6_loopback is (stack == "dual-stack"), f"::1 on lo does not fit {stack}"
    problem = mismatch(expected, truth, target.probe, logs)
    assert problem is None, f"{target.name} on {stack}: {problem}\n{truth.describe(target.probe)}"


LOG_BOUND = 200 * 1001  # the core keeps the last 200 lines of at most 1000 characters


def log_problems(target: ZooTarget, stack: str, verdict: Verdict) -> list[str]:
    """The verdict's log is the target's own (bounded, nothing of the probe's) and error lines explain."""
    problems = []
    logs = verdict.logs
    if len(logs) > LOG_BOUND:
        problems.append(f"{len(logs)} characters kept, more than the bound {LOG_BOUND}")
    probe_lines = [line for line in logs.splitlines() if "@@ipv6compat" in line or line.strip() == "Terminated"]
    if probe_lines and not target.log_shows:
        problems.append(f"the probe's lines are in the target's log: {probe_lines[:3]}")
    problems += [f"{text!r} the target printed is missing" for text in target.log_shows if text not in logs]
    expected = parse_expectation(target.expectation(stack), source="zoo_table")
    if verdict.outcome is Outcome.EXITED:
        if expected.text and expected.text not in (verdict.error_line or ""):
            problems.append(f"error line {verdict.error_line!r} does not say {expected.text!r}")
        listened = " ".join(sorted(map(str, verdict.listened)))
        if listened != target.listened.get(stack, ""):
            problems.append(f"had listened on {listened or 'nothing'}, ground truth {target.listened.get(stack)}")
    return problems


def hold_problems(target: ZooTarget, verdict: Verdict) -> list[str]:
    """What the hold window must show: an expectation this target must fail, naming the change it saw.

    The change must be named when the watcher saw it during the hold. A target whose ports open 0.3 s
    apart can have opened them all before the watcher first read the table (a watcher starved of CPU
    on a loaded machine: seen at load average 15); then there is no change to name, and the expectation
    must still fail."""
    if target.fails is None:
        return []
    expectation, text = target.fails
    reasons = matrix.judge(matrix.parse_expectation(expectation), verdict).reasons
    if not reasons:
        return [f"the plugin passed {expectation!r}, which this target must fail"]
    seen = any(str(change).startswith(text) for change in verdict.changes)
    if seen and not any(text in reason for reason in reasons):
        return [f"the failure of {expectation!r} does not say {text!r}: {reasons}"]
    if not seen and not target.fails_without_change:
        return [f"the hold saw no change starting {text!r} (changes: {list(map(str, verdict.changes))})"]
    return []


# Disagreements with the plugin that are reported to the core (strict: an xpass fails, so a fix is noticed).
KNOWN_PLUGIN_BUGS: dict[tuple[str, str], str] = {}  # (target, stack) -> why the plugin is wrong there
PLUGIN_CELLS = [
    pytest.param(target, stack, id=f"{target.name}-{stack}",
                 marks=[pytest.mark.xfail(reason=KNOWN_PLUGIN_BUGS[target.name, stack], strict=True)]
                 if (target.name, stack) in KNOWN_PLUGIN_BUGS else [])
    for target in TARGETS
    for stack in STACKS
]


@pytest.mark.parametrize(("target", "stack"), PLUGIN_CELLS)
def test_plugin_verdict(
    target: ZooTarget, stack: str, zoo_image: str, ipv6_target_factory: TargetFactory,
    client: docker.DockerClient, record_property: Any, request: pytest.FixtureRequest,
) -> None:
    table = target.expectation(stack)
    with ipv6_target_factory.start(zoo_image, stack=stack, **target.run_settings()) as started:
        container = client.containers.get(started.container)
        truth = facts(container, target.probe)  # the plugin's own container, while it still holds it
        logs = container.logs(tail=200).decode("utf-8", "replace")
    verdict = started.verdict
    record_property("plugin", plugin_text(verdict))
    record_property("ground truth", truth.render(target.probe))
    evidence = f"plugin: {started.describe()}\n{truth.describe(target.probe)}"
    request.node.add_report_section("call", "plugin and ground truth", evidence)
    problems = disagreements(table, verdict, truth, target.probe, logs, name="table")
    problems += [f"plugin's log: {p}" for p in log_problems(target, stack, verdict)]
    problems += hold_problems(target, verdict)
    assert not problems, f"{target.name} on {stack}:\n  " + "\n  ".join(problems) + f"\n{evidence}"
