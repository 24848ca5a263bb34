"""Record mode, init and the published grid against real containers (pytester + Docker).

The target is busybox httpd (``tests/data/busybox-httpd``), not the cloud proxy.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from helpers import copy_matrix
from test_htmlgrid import Tables

from pytest_ipv6compat import images

ROOT = Path(__file__).resolve().parent.parent
HTTPD = ROOT / "tests" / "data" / "busybox-httpd"
README_IMAGE = "example/httpd:1.0"  # the image the README's commands name
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def httpd_image(client: docker.DockerClient, base_image: str) -> str:
    """busybox httpd with the HTTPD_IPV6 knob, built (or found) by content."""
    return images.ensure_target_image(client, HTTPD, base=base_image, name="busybox-httpd", build_args={})


@pytest.fixture
def readme_image(client: docker.DockerClient, httpd_image: str) -> Iterator[str]:
    """The httpd image, also tagged as the README names it, for one test (so xdist workers do not race)."""
    repo, tag = README_IMAGE.rsplit(":", 1)
    client.images.get(httpd_image).tag(repo, tag)
    yield README_IMAGE
    client.images.remove(README_IMAGE, noprune=True)


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- five-minutes:.*?-->\n```sh\n(.*?)```\n<!-- /five-minutes -->", text, re.S)
    assert m, "README.md has no five-minutes block"
    return [line for line in m[1].splitlines() if line.strip()]


@pytest.mark.usefixtures("readme_image")
def test_your_own_service_in_five_minutes(pytester: pytest.Pytester) -> None:
    """init + one recorded run + one plain run: exactly the README's commands."""
    init, record, check = (shlex.split(line) for line in readme_commands())
    assert init[:3] == ["python", "-m", "pytest_ipv6compat"]
    made = pytester.run(sys.executable, *init[1:])
    assert made.ret == 0, made.stderr.str()
    path = pytester.path / "httpd.ipv6.toml"
    header = path.read_text().splitlines()[0]

    assert record[0] == "pytest"
    recorded = pytester.runpytest_subprocess(*record[1:])
    # Every cell differed from its placeholder, so the recording run fails them: it is not a check.
    recorded.assert_outcomes(failed=21)
    recorded.stdout.fnmatch_lines(
        [
            "ipv6compat: --ipv6-record: observed verdicts are written into the matrix files at the end",
            "*IPv6 compatibility grid*",
            "*ipv6compat: expectations recorded (--ipv6-record)*",
            "default-dual-stack-HTTPD_IPV6-unset: timeout -> up [*]:8080/pod",  # one [::] socket serving both
            "default-ipv6-kernel-off-HTTPD_IPV6=0: timeout -> up 0.0.0.0:8080/pod",  # a peer reaches it
            'default-ipv6-kernel-off-HTTPD_IPV6=maybe: timeout -> exited 2 "httpd: invalid HTTPD_IPV6 value *"',
            "httpd.ipv6.toml: 21 cells recorded, 21 changed",
        ]
    )
    text = path.read_text()
    assert text.splitlines()[0] == header
    assert "timeout" not in text.split("[expect.", 1)[1]

    assert check == ["pytest", "httpd.ipv6.toml"]
    checked = pytester.runpytest_subprocess(*check[1:])
    checked.assert_outcomes(passed=21)
    assert "recorded" not in checked.stdout.str()
    assert path.read_text() == text  # without --ipv6-record nothing is written


def test_init_and_record_without_a_knob(pytester: pytest.Pytester, httpd_image: str) -> None:
    """A stacks-only matrix: [expect.VARIANT] maps each stack to its expectation."""
    made = pytester.run(sys.executable, "-m", "pytest_ipv6compat", "init", "--variant", f"stock={httpd_image}",
                        "--name", "httpd")  # fmt: skip
    assert made.ret == 0, made.stderr.str()
    recorded = pytester.runpytest_subprocess("--ipv6-record", "-p", "no:cacheprovider")
    recorded.assert_outcomes(failed=3)
    recorded.stdout.fnmatch_lines(
        [
            "stock-dual-stack: timeout -> up [*]:8080/pod",
            "stock-ipv6-sysctl-off: timeout -> up [*]:8080/pod",
            "stock-ipv6-kernel-off: timeout -> up 0.0.0.0:8080/pod",
            "httpd.ipv6.toml: 3 cells recorded, 3 changed",
        ]
    )
    text = (pytester.path / "httpd.ipv6.toml").read_text()
    assert '[expect.stock]\ndual-stack = "up *:8080/pod"\n' in text
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_record_starts_from_a_file_with_only_a_target(pytester: pytest.Pytester, httpd_image: str) -> None:
    """No [expect] at all: the recording run fills in every cell it ran, and placeholders for the rest."""
    path = pytester.path / "httpd.ipv6.toml"
    path.write_text(
        f'[target]\nname = "httpd"\nimages = {{ stock = "{httpd_image}" }}\nvariants = ["stock"]\n'
        'knob = "HTTPD_IPV6"\nsettings = ["unset", "=0"]\nstacks = ["dual-stack", "ipv6-kernel-off"]\n'
    )
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert plain.ret == pytest.ExitCode.INTERRUPTED  # a collection error, naming the way out
    plain.stdout.fnmatch_lines(["*missing the [[]expect[]] table (pytest --ipv6-record can fill it in)*"])
    recorded = pytester.runpytest_subprocess("--ipv6-record", "--ipv6-stacks=dual-stack", "-p", "no:cacheprovider")
    recorded.assert_outcomes(failed=2)
    recorded.stdout.fnmatch_lines(
        [
            "stock-dual-stack-HTTPD_IPV6-unset: timeout -> up [*]:8080/pod",
            "stock-dual-stack-HTTPD_IPV6=0: timeout -> up 0.0.0.0:8080/pod",
            "httpd.ipv6.toml: 2 cells recorded, 2 changed",
        ]
    )
    text = path.read_text()
    assert '[expect.stock.ipv6-kernel-off]\nunset = "timeout"\n"=0" = "timeout"\n' in text  # not run: placeholders
    pytester.runpytest_subprocess("--ipv6-stacks=dual-stack", "-p", "no:cacheprovider").assert_outcomes(passed=2)


MATRIX = """\
# httpd, recorded by hand once
[target]
name = "httpd"
variants = ["stock", "gone"]
knob = "HTTPD_IPV6"
settings = ["unset", "=0"]
stacks = ["dual-stack", "ipv6-kernel-off"]

[target.images]
stock = "{image}"
gone = "ipv6compat/absent:nope"

[outcomes]
# IPv4 only: the knob says so, or the kernel has no IPv6
v4 = "up 0.0.0.0:8080"

[expect.stock.dual-stack]
unset = "timeout"            # placeholder
"=0" = "v4"                  # named, and still true

[expect.stock.ipv6-kernel-off]
unset = "up 0.0.0.0:8080 [::]:8080"   # wrong: becomes the name v4
"=0" = "v4"

[expect.gone.dual-stack]
unset = "timeout"
"=0" = "timeout"

[expect.gone.ipv6-kernel-off]
unset = "timeout"
"=0" = "timeout"
"""


def test_record_keeps_comments_and_names_and_reports_changes(pytester: pytest.Pytester, httpd_image: str) -> None:
    path = pytester.path / "httpd.ipv6.toml"
    path.write_text(MATRIX.format(image=httpd_image))
    result = pytester.runpytest_subprocess("--ipv6-record", "-n", "2", "-p", "no:cacheprovider")
    # The 'gone' image does not exist: its cells are errors, and errors are never recorded.
    result.assert_outcomes(passed=2, failed=2, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*ipv6compat: expectations recorded (--ipv6-record)*",
            "stock-dual-stack-HTTPD_IPV6-unset: timeout -> up *8080/pod",
            "stock-ipv6-kernel-off-HTTPD_IPV6-unset: up 0.0.0.0:8080 [[]::[]]:8080 -> v4",
            "httpd.ipv6.toml: 4 cells recorded, 2 changed; 4 not recorded (error or skipped)",
        ]
    )
    text = path.read_text()
    before, after = MATRIX.format(image=httpd_image).splitlines(), text.splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert [a for a, _ in changed] == [
        'unset = "timeout"            # placeholder',
        'unset = "up 0.0.0.0:8080 [::]:8080"   # wrong: becomes the name v4',
    ]
    assert re.fullmatch(r'unset = "up \S+:8080/pod"            # placeholder', changed[0][1])
    assert changed[1][1] == 'unset = "v4"   # wrong: becomes the name v4'

    again = pytester.runpytest_subprocess("--ipv6-variants=stock", "-p", "no:cacheprovider")
    again.assert_outcomes(passed=4)


def test_grid_in_pytest_html_and_the_github_summary(
    pytester: pytest.Pytester, httpd_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_html")
    pytester.makefile(
        ".ipv6.toml",
        httpd=f"""
        [target]
        name = "httpd"
        images = {{ stock = "{httpd_image}" }}
        variants = ["stock"]
        knob = "HTTPD_IPV6"
        settings = ["=0", "=maybe"]

        [outcomes]
        v4 = "up 0.0.0.0:8080"
        bad = "exited 2 'invalid HTTPD_IPV6 value'"

        [expect.stock.dual-stack]
        "=0" = "v4"
        "=maybe" = "bad"

        [expect.stock.ipv6-sysctl-off]
        "=0" = "v4"
        "=maybe" = "bad"

        [expect.stock.ipv6-kernel-off]
        "=0" = "v4"
        "=maybe" = "up 0.0.0.0:8080"
        """,
    )
    summary = pytester.path / "step-summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest_subprocess("--html=report.html", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)

    parser = Tables(strict=False)  # the report's own markup is not ours to check
    parser.feed((pytester.path / "report.html").read_text(encoding="utf-8"))
    grids = [t for t in parser.tables if t and t[0][:1] == ["variant"]]
    assert len(grids) == 1
    assert grids[0] == [
        ["variant", "dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off"],
        ["stock", "v4: =0\nexit 2: =maybe", "v4: =0\nexit 2: =maybe", "v4: =0\n✗ exit 2 (want v4): =maybe"],
    ]

    markdown = summary.read_text(encoding="utf-8")
    assert markdown.startswith("# earlier step\n## IPv6 compatibility grid\n")
    assert "| stock | v4: =0<br>exit 2: =maybe |" in markdown
    assert "6 cells: 5 passed, 1 failed, 0 errors, 0 skipped" in markdown


def _blank(text: str, stack: str) -> tuple[str, int]:
    """``text`` with every expectation of ``stack``'s tables replaced by the placeholder ``timeout``."""
    out, blanked, inside = [], 0, False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            inside = line.startswith(("[expect.", "[expect_config_ro.")) and line.rstrip().endswith(f".{stack}]")
        elif inside and " = " in line:
            line = line.split(" = ", 1)[0] + ' = "timeout"\n'
            blanked += 1
        out.append(line)
    return "".join(out), blanked


@pytest.mark.usefixtures("proxy_image")
def test_recording_the_reference_matrix_gives_back_the_hand_written_file(pytester: pytest.Pytester) -> None:
    """Named outcomes are found again: placeholders recorded become the reviewed file, byte for byte."""
    path = copy_matrix(pytester)
    reviewed = path.read_text()
    blank, n = _blank(reviewed, "ipv6-kernel-off")
    assert n == 35  # 3 variants x 7 settings, and 2 x 7 read-only config cells
    path.write_text(blank)
    result = pytester.runpytest_subprocess("--ipv6-record", "--ipv6-stacks=ipv6-kernel-off", "-n", "2")
    result.assert_outcomes(failed=n)
    result.stdout.fnmatch_lines(
        [
            "unpatched-ipv6-kernel-off-PL_IPV6_DISABLE-unset: timeout -> no-af-inet6",
            f"cloud-proxy.ipv6.toml: {n} cells recorded, {n} changed",
        ]
    )
    assert path.read_text() == reviewed
