"""A result is complete or says so: crashed workers, interrupted shards, merges of real shards, a full cache,
and ``settle >= timeout`` from every source.

The engine-backed tests run a three-cell matrix (the adaptive cloud proxy, knob unset, on the three
container stacks) so each run takes seconds; the kill and the interrupt are driven by events (a
conftest hook keyed on one cell id, a file it writes), never by a fixed wait.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_ipv6compat.matrix import MatrixError, load_matrix

STACKS = ("dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off")
SYSCTL_CELL = "tiny[adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset]"


def tiny_matrix(dest: Path, image: str, extra: str = "") -> Path:
    path = dest / "tiny.ipv6.toml"
    path.write_text(
        f"""[target]
name = "tiny"
images = {{ adaptive = "{image}" }}
variants = ["adaptive"]
knob = "PL_IPV6_DISABLE"
settings = ["unset"]
stacks = {json.dumps(list(STACKS))}
env = {{ PL_DOMAIN_NAME = "proxy.ipv6compat.test" }}
probe = "https"
http_path = "/healthz"

[expect.adaptive.dual-stack]
unset = "up 0.0.0.0:56000 [::]:56000"

[expect.adaptive.ipv6-sysctl-off]
unset = "up 0.0.0.0:56000 [::]:56000/silent"

[expect.adaptive.ipv6-kernel-off]
unset = "up 0.0.0.0:56000"
{extra}""",
        encoding="utf-8",
    )
    return path


def _merge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_ipv6compat", "merge", *map(str, args)],
        capture_output=True, text=True, check=False, timeout=60,
    )


# ---------------------------------------------------------------- settle >= timeout, from every source


def test_settle_not_shorter_than_timeout_in_a_matrix_file_names_the_file_and_table(tmp_path: Path) -> None:
    path = tiny_matrix(tmp_path, "x", '\n[variant.adaptive]\ntimeout = 2\n').resolve()
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('probe = "https"', 'probe = "https"\nsettle = 3'), encoding="utf-8")
    with pytest.raises(MatrixError) as caught:
        load_matrix(path)
    assert str(caught.value) == f"{path}: [variant.adaptive]: settle = 3 must be shorter than timeout = 2"
    path.write_text(text.replace('probe = "https"', 'probe = "https"\nsettle = 31'), encoding="utf-8")
    with pytest.raises(MatrixError, match=r"tiny.ipv6.toml: \[variant.adaptive\]: settle = 31 must be shorter than "
                                          r"timeout = 2$"):
        load_matrix(path)
    path.write_text(text.replace('probe = "https"', 'probe = "https"\nsettle = 5\ntimeout = 5'), encoding="utf-8")
    with pytest.raises(MatrixError, match=r"tiny.ipv6.toml: \[target\]: settle = 5 must be shorter than timeout = 5$"):
        load_matrix(path)


def test_settle_against_the_timeout_option_is_a_collection_error(pytester: pytest.Pytester) -> None:
    path = tiny_matrix(pytester.path, "ipv6compat/absent:nope")
    path.write_text(path.read_text().replace('probe = "https"', 'probe = "https"\nsettle = 2'), encoding="utf-8")
    result = pytester.runpytest("--ipv6-timeout=1.5", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run
    result.stdout.fnmatch_lines([
        "*tiny.ipv6.toml: [[]target[]]: settle = 2 must be shorter than timeout = 1.5 "
        "(with --ipv6-settle/--ipv6-timeout as given)",
    ])
    assert "Traceback" not in result.stdout.str()


def test_settle_in_a_marker_is_checked_against_the_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ipv6_target(image="ipv6compat/absent:nope", settle=40)
        def test_it(ipv6_target):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*marker ipv6_target: settle = 40 must be shorter than timeout = 30"])
    assert "Traceback" not in result.stdout.str()


# ---------------------------------------------------------------- a cache that cannot be written


def test_a_full_cache_is_an_error_naming_the_path(pytester: pytest.Pytester) -> None:
    """A real full filesystem: a 64 KiB tmpfs, filled, in a private mount namespace of the run only."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rm", "true"], check=False).returncode != 0:
        pytest.skip("needs unshare -rm (user and mount namespaces) to mount a full tmpfs privately")
    tiny_matrix(pytester.path, "ipv6compat/absent:nope")
    cache = pytester.path / "cache"
    cache.mkdir()
    script = ('mount -t tmpfs -o size=64k tmpfs "$1" && (head -c 1048576 /dev/zero > "$1/fill"; true) && '
              'shift && exec "$@"')
    done = subprocess.run(
        [unshare, "-rm", "sh", "-c", script, "sh", str(cache), sys.executable, "-m", "pytest", "-p",
         "no:cacheprovider", f"--ipv6-cache-dir={cache}", "-rA"],
        cwd=pytester.path, capture_output=True, text=True, check=False, timeout=300,
    )
    out = done.stdout
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, out + done.stderr
    line = f"the cache directory {cache} cannot be written: No space left on device"
    assert f"ipv6compat: {line} (free space there, or point --ipv6-cache-dir elsewhere); cells will be errors" in out
    assert "3 cells: 0 passed, 0 failed, 3 errors, 0 skipped" in out
    assert "skipped" not in out.splitlines()[-1]
    assert out.count("ERROR tiny.ipv6.toml::tiny[") == 3


# ---------------------------------------------------------------- JUnit of a crashed worker's cells (no engine needed)

KILL_ON = """
import os, signal

def pytest_runtest_setup(item):  # before the cell starts a container: nothing is left behind
    if os.environ.get("PYTEST_XDIST_WORKER") and item.name == {name!r}:
        os.kill(os.getpid(), signal.SIGKILL)
"""


def _cases(path: Path) -> dict[str, ET.Element]:
    return {c.get("name", ""): c for c in ET.parse(path).getroot().iter("testcase")}


def _ipv6_props(case: ET.Element) -> list[tuple[str, str]]:
    return [(p.get("name", ""), p.get("value", "")) for p in case.iter("property")
            if p.get("name", "").startswith("ipv6.")]


def test_a_crashed_cell_carries_its_ipv6_properties_in_junit(pytester: pytest.Pytester) -> None:
    """The real plugin and xdist: the worker running one cell SIGKILLs itself; its cells need no image."""
    tiny_matrix(pytester.path, "ipv6compat/absent:nope")
    pytester.makeconftest(KILL_ON.format(name=SYSCTL_CELL))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--junitxml=j.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running*"])
    cases = _cases(pytester.path / "j.xml")
    assert len(cases) == 3
    crashed = cases[SYSCTL_CELL]
    error = crashed.find("error")
    assert error is not None
    assert "crashed while running" in error.get("message", "")
    props = _ipv6_props(crashed)
    assert len(props) == len(dict(props))  # each once
    worker = dict(props)["ipv6.crashed"]
    assert worker.startswith("gw")
    assert props == [
        ("ipv6.target", "tiny"), ("ipv6.cell", "adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset"),
        ("ipv6.variant", "adaptive"), ("ipv6.stack", "ipv6-sysctl-off"), ("ipv6.knob", "PL_IPV6_DISABLE"),
        ("ipv6.setting", "unset"), ("ipv6.config", "rw"), ("ipv6.status", "error"),
        ("ipv6.expected", "up 0.0.0.0:56000 [::]:56000/silent"), ("ipv6.verdict", "none"), ("ipv6.listeners", ""),
        ("ipv6.pod", ""), ("ipv6.crashed", worker),
        ("ipv6.error", f"worker {worker} crashed while running this cell (killed, or it died); no verdict was reached"),
    ]
    common = [n for n, _ in props if n not in ("ipv6.crashed", "ipv6.error")]
    for name, case in cases.items():  # the cells that ran carry the same names, as junitxml wrote them
        if name != SYSCTL_CELL:
            names = [n for n, _ in _ipv6_props(case) if n != "ipv6.error"]
            # and what ran it, which a crashed cell's worker took with it
            assert [n for n in names if not n.startswith("ipv6.ran_on.")] == common
            assert "ipv6.ran_on.backend" in names


def test_cells_a_lost_worker_held_are_junit_errors_with_their_properties(pytester: pytest.Pytester) -> None:
    """With restarts disabled, the cells the killed worker held never run: each is an error test case."""
    tiny_matrix(pytester.path, "ipv6compat/absent:nope")
    first = "tiny[adaptive-dual-stack-PL_IPV6_DISABLE-unset]"
    pytester.makeconftest(KILL_ON.format(name=first))
    result = pytester.runpytest_subprocess("-n", "1", "--max-worker-restart=0", "-p", "no:cacheprovider",
                                           "--junitxml=j.xml", "--junitprefix=ci")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    suite = next(ET.parse(pytester.path / "j.xml").getroot().iter("testsuite"))
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("3", "3", "0")
    cases = _cases(pytester.path / "j.xml")
    assert list(cases) == [first, SYSCTL_CELL, "tiny[adaptive-ipv6-kernel-off-PL_IPV6_DISABLE-unset]"]
    assert dict(_ipv6_props(cases[first]))["ipv6.crashed"] == "gw0"
    why = "no result: no result reached this process (a worker may have been lost)"
    for name in list(cases)[1:]:
        case = cases[name]
        assert case.get("classname") == "ci.tiny.ipv6.toml"  # as junitxml names the others
        error = case.find("error")
        assert error is not None
        assert error.get("message") == why
        props = dict(_ipv6_props(case))
        assert props["ipv6.cell"] == name.removeprefix("tiny[").removesuffix("]")
        assert (props["ipv6.knob"], props["ipv6.setting"]) == ("PL_IPV6_DISABLE", "unset")
        assert props["ipv6.status"] == "error"
        assert props["ipv6.expected"].startswith("up 0.0.0.0:56000")
        assert props["ipv6.error"] == why
        assert "ipv6.crashed" not in props


# ---------------------------------------------------------------- engine-backed: crashes, interrupts, real shards


@pytest.mark.docker
def test_a_killed_worker_makes_its_cell_an_error_in_every_report(
    pytester: pytest.Pytester, proxy_image: dict[str, str],
) -> None:
    tiny_matrix(pytester.path, proxy_image["adaptive"])
    pytester.makeconftest(
        f"""
        import os, signal

        def pytest_runtest_setup(item):  # before the cell starts a container: nothing is left behind
            if os.environ.get("PYTEST_XDIST_WORKER") and item.name == {SYSCTL_CELL!r}:
                os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--ipv6-json=r.json", "--ipv6-markdown=r.md", "--junitxml=j.xml",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*IPv6 compatibility grid*", "3 cells: 2 passed, 0 failed, 1 error, 0 skipped"])
    doc = json.loads((pytester.path / "r.json").read_text())
    cells = {c["id"]: c for c in doc["cells"]}
    crashed = cells["adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset"]
    assert crashed["status"] == "error"
    assert "crashed while running this cell" in crashed["reasons"][0]
    assert doc["totals"] == {"pass": 2, "fail": 0, "error": 1, "skipped": 0}
    assert doc["run"]["matrices"][0]["selected"] == doc["run"]["matrices"][0]["collected"]
    md = (pytester.path / "r.md").read_text()
    assert "crashed while running this cell" in md
    assert "**3 cells: 2 passed, 0 failed, 1 error, 0 skipped**" in md
    case = next(c for c in ET.parse(pytester.path / "j.xml").getroot().iter("testcase")
                if "sysctl-off" in c.get("name", ""))
    assert "crashed while running" in ET.tostring(case, encoding="unicode")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert (props["ipv6.cell"], props["ipv6.status"]) == ("adaptive-ipv6-sysctl-off-PL_IPV6_DISABLE-unset", "error")
    assert (props["ipv6.knob"], props["ipv6.setting"]) == ("PL_IPV6_DISABLE", "unset")
    assert props["ipv6.expected"] == "up 0.0.0.0:56000 [::]:56000/silent"
    assert props["ipv6.crashed"].startswith("gw")
    done = _merge(pytester.path / "r.json")
    assert done.returncode == 1, done.stderr  # merges (it is complete), but not green
    assert "3 cells: 2 passed, 0 failed, 1 error" in done.stdout


@pytest.mark.docker
def test_an_interrupted_shard_says_so_and_does_not_merge(
    pytester: pytest.Pytester, proxy_image: dict[str, str],
) -> None:
    tiny_matrix(pytester.path, proxy_image["adaptive"])
    pytester.makeconftest(
        f"""
        import pathlib, time

        def pytest_runtest_setup(item):
            if item.name == {SYSCTL_CELL!r}:
                pathlib.Path("blocked").write_text("now")
                time.sleep(600)  # the test sends SIGTERM when it sees the file
        """
    )
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--ipv6-json=r.json", "--ipv6-markdown=r.md"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},  # the INCOMPLETE line on one line
    )
    try:
        deadline = time.monotonic() + 300
        while not (pytester.path / "blocked").exists():
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "the first cell did not finish in 300 s"
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == pytest.ExitCode.INTERRUPTED, out
    why = "the run was interrupted (Ctrl-C or SIGTERM); 2 of 3 selected cells have no result"
    assert f"INCOMPLETE: {why}" in out
    assert "3 cells: 1 passed, 0 failed, 2 errors, 0 skipped" in out
    doc = json.loads((pytester.path / "r.json").read_text())
    assert (doc["run"]["complete"], doc["run"]["incomplete"]) == (False, why)
    assert [c["status"] for c in doc["cells"]] == ["pass", "error", "error"]
    assert doc["cells"][2]["reasons"] == ["no result: the run was interrupted (Ctrl-C or SIGTERM)"]
    assert f"**INCOMPLETE: {why}**" in (pytester.path / "r.md").read_text()
    done = _merge(pytester.path / "r.json", "--partial")
    assert done.returncode == 2
    assert done.stderr == f"error: {pytester.path / 'r.json'}: incomplete shard ({why}); re-run it\n"


@pytest.mark.docker
def test_readme_recipe_shards_merge_only_when_they_add_up(
    pytester: pytest.Pytester, proxy_image: dict[str, str],
) -> None:
    """One shard per stack, as README's recipe; then 2 of 3, an edited matrix, and a forged pass."""
    matrix = tiny_matrix(pytester.path, proxy_image["adaptive"])
    whole = pytester.runpytest("-p", "no:cacheprovider", "--ipv6-markdown=whole.md")
    whole.assert_outcomes(passed=3)
    shards = []
    for stack in STACKS:
        shard = pytester.runpytest("-p", "no:cacheprovider", f"--ipv6-stacks={stack}", f"--ipv6-json={stack}.json")
        shard.assert_outcomes(passed=1)
        shards.append(pytester.path / f"{stack}.json")
    done = _merge(*shards, "--markdown", pytester.path / "merged.md")
    assert done.returncode == 0, done.stderr
    assert (pytester.path / "merged.md").read_text() == (pytester.path / "whole.md").read_text()

    done = _merge(*shards[:2])
    assert (done.returncode, done.stderr) == (
        2, "error: tiny.ipv6.toml: 1 of its 3 cells are in no shard "
           "(first: tiny[adaptive-ipv6-kernel-off-PL_IPV6_DISABLE-unset]); add the shards that run them, "
           "or pass --partial\n")

    matrix.write_text(matrix.read_text() + "# edited after the other shards ran\n", encoding="utf-8")
    edited = pytester.runpytest("-p", "no:cacheprovider", "--ipv6-stacks=ipv6-kernel-off", "--ipv6-json=edited.json")
    edited.assert_outcomes(passed=1)
    done = _merge(*shards[:2], pytester.path / "edited.json")
    assert done.returncode == 2
    assert "edited.json: ran tiny.ipv6.toml with sha256 " in done.stderr
    assert "the shards come from different versions of the matrix" in done.stderr

    doc = json.loads(shards[2].read_text())
    doc["cells"][0]["verdict"].update(outcome="timeout", listeners=[], answered=[], reach=[])
    shards[2].write_text(json.dumps(doc))
    done = _merge(*shards)
    assert done.returncode == 2
    assert done.stderr == (
        f"error: {shards[2]}: cell tiny[adaptive-ipv6-kernel-off-PL_IPV6_DISABLE-unset] says pass, but its verdict "
        "does not meet its expectation: expected up, but the target timed out\n")


@pytest.mark.docker
def test_a_run_stopped_by_x_accounts_for_the_cells_it_did_not_run(pytester: pytest.Pytester) -> None:
    tiny_matrix(pytester.path, "ipv6compat/absent:nope")  # the first cell errors at once: no such image
    result = pytester.runpytest("-x", "-p", "no:cacheprovider", "--ipv6-json=r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    doc = json.loads((pytester.path / "r.json").read_text())
    assert [c["status"] for c in doc["cells"]] == ["error", "error", "error"]
    assert doc["cells"][1]["reasons"][0].startswith("no result: the run stopped early (")
    assert doc["run"]["complete"] is False
    assert doc["run"]["incomplete"].endswith("; 2 of 3 selected cells have no result")
    result.stdout.fnmatch_lines(["3 cells: 0 passed, 0 failed, 3 errors, 0 skipped",
                                 "INCOMPLETE: the run stopped early*"])


def test_a_run_stopped_by_a_collection_error_says_so(pytester: pytest.Pytester) -> None:
    tiny_matrix(pytester.path, "ipv6compat/absent:nope")
    (pytester.path / "broken.ipv6.toml").write_text("[target]\n", encoding="utf-8")
    result = pytester.runpytest("-p", "no:cacheprovider", "--ipv6-json=r.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    doc = json.loads((pytester.path / "r.json").read_text())
    assert [c["reasons"] for c in doc["cells"]] == [["no result: the run was stopped: 1 error during collection"]] * 3
    assert doc["run"]["incomplete"] == (
        "the run was stopped: 1 error during collection; 3 of 3 selected cells have no result")
