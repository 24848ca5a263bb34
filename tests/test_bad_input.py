"""Bad input end to end: each mistake is one line naming the problem and where it came from, never a traceback.

Matrix mistakes stop collection (the file and the table are named); what can only be
found at run time (a missing image or build context, an unreachable engine) is an
error or a skip of the cells concerned; an engine that ignores sysctls or seccomp is
caught by attestation and is an ERROR, never a pass. The loader's messages are unit
tested in tests/test_matrix.py, attestation's logic in tests/test_stacks.py: here the
user sees them through pytest.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cloud_proxy_matrix, launch

from pytest_ipv6compat.backends.docker_api import DockerBackend as Engine
from pytest_ipv6compat.stacks import STACKS, Stack

MATRIX = """\
[target]
name = "svc"
images = { a = "IMAGE" }
variants = ["a"]
knob = "SVC_V6"
settings = ["unset", "=1"]
stacks = ["dual-stack"]
env = { SVC_NAME = "svc" }

[expect.a.dual-stack]
unset = "up 0.0.0.0:80 [::]:80"
"=1" = "up 0.0.0.0:80"
"""
UNREACHABLE = "tcp://127.0.0.1:9"  # the discard port on this host's loopback: nothing listens


@pytest.fixture
def here(pytester: pytest.Pytester, real_cache_dir: Path) -> pytest.Pytester:
    """A pytester directory using the real cache: no probe is rebuilt for each run."""
    pytester.makeini(f"[pytest]\nipv6_cache_dir = {real_cache_dir}\n")
    return pytester


def write(pytester: pytest.Pytester, *replacements: tuple[str, str], image: str = "ipv6compat/absent:nope") -> Path:
    text = MATRIX.replace("IMAGE", image)
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = pytester.path / "svc.ipv6.toml"
    path.write_text(text)
    return path


def section(result: pytest.RunResult, title: str) -> list[str]:
    """The non-blank lines of the report section whose ``___ title ___`` header matches ``title``."""
    lines = result.stdout.lines
    starts = [i for i, line in enumerate(lines) if fnmatch.fnmatch(line.strip("_ "), title)]
    assert starts, f"no section {title!r} in:\n{result.stdout.str()}"
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith(("___", "===", "---")) and line.rstrip().endswith(("_", "=", "-")):
            break
        if line.strip():
            body.append(line)
    return body


def assert_no_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    for sign in ("Traceback", "During handling of the above exception", "The above exception was the direct cause"):
        assert sign not in text, f"{sign!r} in the output:\n{text}"


def one_line(result: pytest.RunResult, title: str) -> str:
    body = section(result, title)
    assert len(body) == 1, f"expected one line under {title!r}, got:\n" + "\n".join(body)
    return body[0]


# --- matrix mistakes: one collection error naming the file, the table and the value ----------------

MISTAKES = [
    pytest.param(("[target]", "[target"), "{path}: not valid TOML: Expected ']' at the end of a table declaration*",
                 id="malformed-toml"),
    pytest.param(('knob = "SVC_V6"\n', ""),
                 "{path}: [[]target[]]: 'knob' and 'settings' go together (or leave both out)", id="missing-key"),
    pytest.param(('stacks = ["dual-stack"]', 'stacks = ["ipv6-off"]'),
                 "{path}: [[]target.stacks[]]: unknown stack 'ipv6-off' (known: dual-stack, ipv6-sysctl-off, "
                 "ipv6-kernel-off, ipv6-only, ipv6-boot-disabled)", id="unknown-stack"),
    pytest.param(("[expect.a.dual-stack]", "[expect.a.ipv6-kernel-off]"),
                 "{path}: [[]expect.a.ipv6-kernel-off[]]: unknown stack 'ipv6-kernel-off' (declared: dual-stack)",
                 id="undeclared-stack"),
    pytest.param(("[expect.a.dual-stack]", "[expect.b.dual-stack]"),
                 "{path}: [[]expect.b[]]: unknown variant 'b' (declared: a)", id="unknown-variant"),
    pytest.param(('"=1" = ', '"=2" = '),
                 "{path}: [[]expect.a.dual-stack[]]: unknown knob setting '=2' (declared: unset, =1)",
                 id="unknown-setting"),
    pytest.param(('"=1" = "up 0.0.0.0:80"\n', ""),
                 "{path}: [[]expect.a.dual-stack.=1[]]: no expectation for this cell"
                 " (pytest --ipv6-record can fill it in)",
                 id="missing-cell"),
    pytest.param(('"=1" = "up 0.0.0.0:80"', '"=1" = "up 0.0.0.0:80"\nunset = "timeout"'),
                 "{path}: not valid TOML: Cannot overwrite a value (at line 13, column *)", id="duplicate-cell"),
    pytest.param(('"=1" = "up 0.0.0.0:80"', '"=1" = "up 0.0.0.0:80"\n[expect.a.dual-stack]\nunset = "timeout"'),
                 "{path}: not valid TOML: Cannot declare ('expect', 'a', 'dual-stack') twice (at line 13, column *)",
                 id="duplicate-table"),
    pytest.param(('settings = ["unset", "=1"]', 'settings = ["unset", "=1", "=1"]'),
                 "{path}: [[]target.settings[]] lists '=1' twice", id="duplicate-setting"),
    pytest.param(('env = { SVC_NAME = "svc" }', 'env = { "SVC-NAME" = "svc" }'),
                 "{path}: [[]target.env[]]: 'SVC-NAME' is not a valid environment variable name", id="bad-env-name"),
    pytest.param(('knob = "SVC_V6"', 'knob = "SVC V6"'),
                 "{path}: [[]target.knob[]]: 'SVC V6' is not a valid environment variable name", id="bad-knob-name"),
    pytest.param(('settings = ["unset", "=1"]', 'settings = ["unset", "=1", "empty", "="]'),
                 "{path}: [[]target.settings[]]: '=' is the same setting as 'empty'", id="same-setting-twice"),
    pytest.param(('settings = ["unset", "=1"]', 'settings = ["unset", "=1", "=a\\nb"]'),
                 "{path}: [[]target.settings[]]: knob setting '=a\\nb' holds a control or format character "
                 "(a line break, an escape code): test ids, terminals and Markdown do not carry it",
                 id="newline-in-setting"),
    pytest.param(('"=1" = "up 0.0.0.0:80"', '"=1" = "exited 256"'),
                 "{path}: [[]expect.a.dual-stack.=1[]]: expectation 'exited 256': exit code 256 is not 0-255",
                 id="exit-code-256"),
    pytest.param(('"=1" = "up 0.0.0.0:80"', '"=1" = "v4-only"'),
                 "{path}: [[]expect.a.dual-stack.=1[]]: 'v4-only' is neither an expectation nor a named outcome "
                 "(named: none)", id="undefined-outcome"),
    pytest.param(('images = { a = "ipv6compat/absent:nope" }', "images = { a = 3 }"),
                 "{path}: [[]target.images[]] must map every variant (a) to an image name", id="image-not-a-string"),
    pytest.param(('env = { SVC_NAME = "svc" }', 'config_dir = "etc/app"\nconfig_source = "."'),
                 "{path}: [[]target.config_dir[]]: 'etc/app' is not an absolute path", id="relative-config-dir"),
    pytest.param(('env = { SVC_NAME = "svc" }', 'config_dir = "/etc/app"\nconfig_source = 7'),
                 "{path}: [[]target.config_source[]] must be a path string, got 7", id="config-source-not-a-string"),
    pytest.param(('env = { SVC_NAME = "svc" }', 'config_dir = "/etc/app"\nconfig_source = "absent"'),
                 "{path}: [[]target.config_source[]]: '*/absent' is not a directory", id="missing-config-source"),
    pytest.param(('env = { SVC_NAME = "svc" }', 'timeout = "10"'),
                 "{path}: [[]target[]]: timeout = '10' is not a number of seconds", id="timeout-as-text"),
    pytest.param(('unset = "up 0.0.0.0:80 [::]:80"', 'unset = "up 0.0.0.0:80 [::]:99999"'),
                 "{path}: [[]expect.a.dual-stack.unset[]]: expectation 'up 0.0.0.0:80 [[]::[]]:99999': "
                 "listener '[[]::[]]:99999': port out of range",
                 id="bad-listener"),
]


@pytest.mark.parametrize(("replacement", "message"), MISTAKES)
def test_matrix_mistake_is_one_collection_error(
    here: pytest.Pytester, replacement: tuple[str, str], message: str
) -> None:
    path = write(here, replacement)
    result = here.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    line = one_line(result, "ERROR collecting svc.ipv6.toml")
    assert fnmatch.fnmatch(line, message.format(path=path)), line
    result.stdout.fnmatch_lines(["ERROR svc.ipv6.toml*", "*Interrupted: 1 error during collection*"])
    assert_no_traceback(result)


def test_unknown_stack_on_the_command_line_names_the_option(here: pytest.Pytester) -> None:
    write(here)
    result = here.runpytest("--ipv6-stacks=dual-stack,ipv6-off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --ipv6-stacks=dual-stack,ipv6-off: unknown stack 'ipv6-off' (known: dual-stack, *)"]
    )
    assert_no_traceback(result)


# --- run-time mistakes: the cells concerned say what is wrong, in one line ---------------------------

CELLS = ("svc[[]a-dual-stack-SVC_V6-unset[]]", "svc[[]a-dual-stack-SVC_V6=1[]]")


@pytest.mark.docker
def test_missing_image_is_a_cell_error_naming_the_image(here: pytest.Pytester) -> None:
    write(here, image="ipv6compat/absent:nope")
    result = here.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    for cell in CELLS:  # 'unset' also reads the image's ENV: that path must say the same
        assert one_line(result, f"ERROR at setup of {cell}*") == (
            "image 'ipv6compat/absent:nope' is not present in the Docker engine"
        )
    assert_no_traceback(result)


@pytest.mark.docker
def test_missing_build_context_is_a_cell_error_naming_the_directory(here: pytest.Pytester) -> None:
    write(here, ('images = { a = "ipv6compat/absent:nope" }', 'build = "no-such-context"'))
    result = here.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    for cell in CELLS:
        line = one_line(result, f"ERROR at setup of {cell}*")
        assert line == f"build context {here.path / 'no-such-context'} does not exist"
    assert_no_traceback(result)


def test_unreachable_engine_skips_cells_with_the_reason(here: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)
    write(here)
    result = here.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=2)
    why = f"Docker engine at {UNREACHABLE} (from DOCKER_HOST) is unreachable: Connection refused"
    result.stdout.fnmatch_lines(
        [
            f"ipv6compat: {why}; cells will be skipped",
            f"SKIPPED [[]2[]] *: {why} (pass --ipv6-require-docker to make this an error)",
        ]
    )
    assert_no_traceback(result)


def test_unreachable_engine_with_require_docker_is_an_error(
    here: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", UNREACHABLE)
    write(here)
    result = here.runpytest("-p", "no:cacheprovider", "--ipv6-require-docker")
    result.assert_outcomes(errors=2)
    why = f"Docker engine at {UNREACHABLE} (from DOCKER_HOST) is unreachable: Connection refused"
    result.stdout.fnmatch_lines([f"ipv6compat: {why}; cells will be errors"])
    for cell in CELLS:
        assert one_line(result, f"ERROR at setup of {cell}*") == f"{why} (--ipv6-require-docker is set)"
    assert_no_traceback(result)


# --- an engine that ignores sysctls or seccomp: attestation catches it --------------------------------


class _NoSeccomp(Stack):
    """Claims ipv6-kernel-off but applies no seccomp profile: what an engine ignoring seccomp does."""

    def security_opt(self) -> list[str]:
        return []


class _NoSysctls(Stack):
    """Claims dual-stack but applies no sysctls: what an engine ignoring sysctls does.

    (Docker 20.10 gives a ``--network none`` container disable_ipv6=1 unless told
    otherwise, so ignored sysctls show up as a dual-stack cell without IPv6.)
    """

    def sysctls(self) -> dict[str, str]:
        return {}


LIARS = [
    pytest.param(_NoSeccomp("ipv6-kernel-off", "lies", True, 97),
                 ("inet6 socket: socket ok, connect errno 99, want socket() errno 97",), id="ignores-seccomp"),
    pytest.param(_NoSysctls("dual-stack", "lies", False, None),
                 ("all.disable_ipv6 is 1, want 0", "default.disable_ipv6 is 1, want 0",
                  "lo.disable_ipv6 is 1, want 0", "::1 on lo is absent, want present",
                  "inet6 socket: socket ok, connect errno 99, want socket ok, connect refused"), id="ignores-sysctls"),
]


@pytest.mark.docker
@pytest.mark.parametrize(("liar", "problems"), LIARS)
def test_engine_ignoring_the_stack_fails_attestation(
    engine: Engine, base_image: str, liar: Stack, problems: tuple[str, ...]
) -> None:
    honest = STACKS[liar.name]
    for stack, ok in ((honest, True), (liar, False)):  # the same claim, applied or not
        with engine.run(launch(base_image, stack, command=("sleep", "30"), timeout=10)) as running:
            attestation = running.attestation()
        assert attestation.ok is ok, attestation.describe()
    assert attestation.problems == problems
    assert f"stack {liar.name}: NOT attested" in attestation.describe()


LYING_ENGINE = """
import pytest_ipv6compat.stacks as stacks

class NoSeccomp(stacks.Stack):
    def security_opt(self):
        return []

_honest = stacks.STACKS["ipv6-kernel-off"]

def pytest_configure(config):
    stacks.STACKS["ipv6-kernel-off"] = NoSeccomp(_honest.name, _honest.summary, True, 97)

def pytest_unconfigure(config):
    stacks.STACKS["ipv6-kernel-off"] = _honest
"""


@pytest.mark.docker
@pytest.mark.usefixtures("proxy_image")
def test_attestation_failure_is_an_error_never_a_pass(here: pytest.Pytester) -> None:
    """adaptive with =1 listens on IPv4 only with or without seccomp: without attestation, a false green."""
    cloud_proxy_matrix(here.path)
    here.makeconftest(LYING_ENGINE)
    args = ("--ipv6-variants=adaptive", "--ipv6-stacks=ipv6-kernel-off", "--ipv6-settings==1", "-p", "no:cacheprovider")
    result = here.runpytest(*args, "-k", "not config-ro")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*stack ipv6-kernel-off could not be attested inside the container; the engine may ignore sysctls or "
            "seccomp, so no verdict is trusted:",
            "stack ipv6-kernel-off: NOT attested",
            "*problem: inet6 socket: socket ok, connect errno 99, want socket() errno 97",
            "1 cell*: 0 passed, 0 failed, 1 error*, 0 skipped",
            "ERROR cloud-proxy.ipv6.toml::cloud-proxy[[]adaptive-ipv6-kernel-off-PL_IPV6_DISABLE=1[]]*",
        ]
    )
    assert_no_traceback(result)
    # The control: the same cell with the honest stack passes, so the error above is attestation's doing.
    (here.path / "conftest.py").unlink()
    control = here.runpytest(*args, "-k", "not config-ro")
    control.assert_outcomes(passed=1)



def test_matrix_that_is_not_utf8_is_one_collection_error(here: pytest.Pytester) -> None:
    path = write(here)
    path.write_bytes(path.read_bytes().replace(b'name = "svc"', b'name = "sv\xe9"'))
    result = here.runpytest("-p", "no:cacheprovider")
    line = one_line(result, "ERROR collecting svc.ipv6.toml")
    assert line == f"{path}: not UTF-8 text (byte 19: b'\\xe9')"
    assert_no_traceback(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ipv6-variants=b",), "ERROR: --ipv6-variants: 'b' is in no collected matrix (they have: a)"),
        (("--ipv6-settings=unset,=2",),
         "ERROR: --ipv6-settings: '=2' is in no collected matrix (they have: =1, unset)"),
        (("--ipv6-cache-dir=/dev/null",), "ERROR: --ipv6-cache-dir=/dev/null: '/dev/null' is not a directory"),
        (("--ipv6-json=/proc/report.json",),
         "ERROR: --ipv6-json=/proc/report.json: cannot create '/proc/report.json': *"),
        (("--ipv6-markdown=.",), "ERROR: --ipv6-markdown=.: '*' is a directory; name a file"),
        (("--ipv6-memory=1x",),
         "ERROR: --ipv6-memory=1x: memory = '1x' is not a size of at least 6m (e.g. '256m', '1g')"),
        (("--ipv6-pids=many",), "ERROR: --ipv6-pids=many: 'many' is not a whole number"),
        (("--ipv6-cpus=half",), "ERROR: --ipv6-cpus=half: 'half' is not a number"),
        (("--ipv6-cpus=0",),
         "ERROR: --ipv6-cpus=0: cpus = 0.0 is not a number of CPUs from 0.01 to 1024 (e.g. 0.5, 2)"),
        (("--ipv6-probe=gopher",), "ERROR: --ipv6-probe=gopher: probe 'gopher' is not one of tcp, http, https, none"),
    ],
)
def test_bad_option_is_one_line_before_anything_runs(
    here: pytest.Pytester, args: tuple[str, ...], message: str
) -> None:
    write(here)
    result = here.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert_no_traceback(result)


def test_bad_ini_boolean_names_the_option_and_the_file(here: pytest.Pytester, real_cache_dir: Path) -> None:
    ini = here.makeini(f"[pytest]\nipv6_cache_dir = {real_cache_dir}\nipv6_keep_failed = maybe\n")
    write(here)
    result = here.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: ini option ipv6_keep_failed in {ini}: *'maybe'* (use true or false)"])
    assert_no_traceback(result)


def test_unusable_docker_host_skips_with_one_line(here: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:99999")
    write(here)
    result = here.runpytest("-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([
        "SKIPPED * Docker engine at tcp://127.0.0.1:99999 (from DOCKER_HOST) is not a usable address: "
        "Port out of range 0-65535 (pass --ipv6-require-docker to make this an error)"
    ])
    assert_no_traceback(result)


def test_named_pipe_in_a_build_context_is_an_error_not_a_hang(tmp_path: Path) -> None:
    from pytest_ipv6compat import images

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    os.mkfifo(context / "pipe")
    with pytest.raises(images.ImageError, match=r"holds pipe, which is not a regular file \(a named pipe"):
        images._context_digest(context, {})


def test_prepare_names_an_image_that_does_not_exist(here: pytest.Pytester) -> None:
    path = write(here)  # images = { a = "ipv6compat/absent:nope" }
    done = subprocess.run([sys.executable, "-m", "pytest_ipv6compat", "prepare", str(path)],
                          capture_output=True, text=True, timeout=300, check=False)
    if "unreachable" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 2
    assert done.stderr.strip() == "error: image 'ipv6compat/absent:nope' is not present in the Docker engine"


@pytest.mark.parametrize("name", ["A=B", "A\0B", ""])
def test_env_names_the_engine_would_mangle_are_one_line(here: pytest.Pytester, name: str) -> None:
    here.makepyfile(
        f"""
        def test_it(ipv6_target_factory):
            with ipv6_target_factory.start("ipv6compat/absent:nope", env={{{name!r}: "1"}}):
                pass
        """
    )
    result = here.runpytest("-rs")
    if result.parseoutcomes().get("skipped"):
        pytest.skip("no engine to reach the environment check")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*environment variable * names may not be empty or hold '=' or NUL*"])
    assert_no_traceback(result)
