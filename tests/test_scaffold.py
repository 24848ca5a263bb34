"""``python -m pytest_ipv6compat init``: the written matrix loads; nothing is overwritten (no Docker)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from pytest_ipv6compat.__main__ import main
from pytest_ipv6compat.matrix import MatrixError, load_matrix
from pytest_ipv6compat.scaffold import DEFAULT_SETTINGS
from pytest_ipv6compat.stacks import DEFAULT_STACKS


def _core_accepts(text: str, tmp: Path) -> bool:
    path = tmp / "probe.ipv6.toml"
    path.write_text(text)
    try:
        load_matrix(path)
    except MatrixError:
        return False
    return True


def _knobless_supported(tmp_path_factory: pytest.TempPathFactory) -> bool:
    text = '[target]\nname = "a"\nimages = { v = "i" }\nvariants = ["v"]\n\n[expect.v]\n'
    text += "".join(f'{s} = "timeout"\n' for s in DEFAULT_STACKS)
    return _core_accepts(text, tmp_path_factory.mktemp("knobless"))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def written(where: Path) -> list[str]:
    """What init left in ``where`` (pytester.run keeps the child's stdout and stderr there too)."""
    return sorted(p.name for p in where.iterdir() if p.name not in ("stdout", "stderr"))


def init(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.run(sys.executable, "-m", "pytest_ipv6compat", "init", *args)


def test_init_writes_a_matrix_that_loads_and_refuses_to_overwrite(pytester: pytest.Pytester) -> None:
    first = init(pytester, "--image", "registry.example:5000/team/web-svc:1.2", "--knob", "WEB_IPV6", "--port", "8080")
    assert first.ret == 0, first.stderr.str()
    first.stdout.fnmatch_lines(["wrote web-svc.ipv6.toml: 21 cells, *; next: pytest web-svc.ipv6.toml --ipv6-record"])
    path = pytester.path / "web-svc.ipv6.toml"
    matrix = load_matrix(path)
    target = matrix.target
    assert (target.name, target.variants, target.knob) == ("web-svc", ("default",), "WEB_IPV6")
    assert [s.label for s in target.settings] == list(DEFAULT_SETTINGS)
    assert target.stacks == DEFAULT_STACKS
    assert target.image_for("default") == "registry.example:5000/team/web-svc:1.2"
    # No --probe and no --http-path: nothing asks for HTTP, so no path is requested (a service
    # answering 404 on / would otherwise be recorded as silent in every cell).
    assert target.run_for("default").probe == "tcp"
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert {c.expectation.source for c in matrix.cells} == {"timeout"}
    assert len(matrix.cells) == 21
    text = path.read_text()
    assert "--ipv6-record" in text
    assert '# probe = "http"' in text
    assert '# http_path = "/"' in text
    assert '# both = "up 0.0.0.0:8080 [::]:8080"' in text

    again = init(pytester, "--image", "other:1", "--name", "web-svc", "--knob", "X")
    assert again.ret == 2
    assert again.stderr.lines == [
        f"error: {path} already exists; not overwriting it (remove it or name another file with -o)"
    ]
    assert path.read_text() == text
    assert written(pytester.path) == ["web-svc.ipv6.toml"]  # no temporary left


def test_init_with_several_images_as_variants(pytester: pytest.Pytester) -> None:
    result = init(
        pytester, "--variant", "stock=proxy:1.0", "--variant", "patched=proxy:1.1-fix", "--name", "proxy",
        "--knob", "PROXY_NO_V6", "--settings", "unset,=1", "--stacks", "dual-stack,ipv6-kernel-off",
        "-o", "matrices/proxy.ipv6.toml",
    )  # fmt: skip
    assert result.ret == 2  # the directory does not exist
    result.stderr.fnmatch_lines(["error: */matrices/proxy.ipv6.toml: directory */matrices does not exist"])
    (pytester.path / "matrices").mkdir()
    result = init(
        pytester, "--variant", "stock=proxy:1.0", "--variant", "patched=proxy:1.1-fix", "--name", "proxy",
        "--knob", "PROXY_NO_V6", "--settings", "unset,=1", "--stacks", "dual-stack,ipv6-kernel-off",
        "-o", "matrices",
    )  # fmt: skip
    assert result.ret == 0, result.stderr.str()
    matrix = load_matrix(pytester.path / "matrices" / "proxy.ipv6.toml")
    assert matrix.target.variants == ("stock", "patched")
    assert dict(matrix.target.images) == {"stock": "proxy:1.0", "patched": "proxy:1.1-fix"}
    assert sorted(c.id for c in matrix.cells) == sorted(
        f"{v}-{s}-PROXY_NO_V6{k}"
        for v in ("stock", "patched")
        for s in ("dual-stack", "ipv6-kernel-off")
        for k in ("-unset", "=1")
    )


def test_init_for_a_build_context(pytester: pytest.Pytester) -> None:
    context = pytester.mkdir("svc")
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    pytester.mkdir("m")
    result = init(pytester, "--build", "svc", "--variants", "a,b", "--knob", "SVC_V6", "-o", "m/svc.ipv6.toml")
    assert result.ret == 0, result.stderr.str()
    target = load_matrix(pytester.path / "m" / "svc.ipv6.toml").target
    assert target.build == context.resolve()
    assert target.variants == ("a", "b")
    assert 'build = "../svc"' in (pytester.path / "m" / "svc.ipv6.toml").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--build", "nowhere", "--knob", "K"), "error: --build nowhere: build context '*/nowhere' does not exist"),
        (("--image", "i:1", "--knob", "1X"), "error: --knob '1X' is not a valid environment variable name"),
        (("--image", "i:1", "--settings", "=1"), "error: --settings needs --knob NAME *"),
        (("--image", "i:1", "--knob", "K", "--settings", "unset,yes"), "error: --settings 'unset,yes': *'yes'*"),
        (("--image", "i:1", "--knob", "K", "--stacks", "dual"), "error: --stacks 'dual': unknown stack 'dual' *"),
        (("--variant", "a=i:1", "--variant", "a=i:2", "--knob", "K"), "error: --variant names a twice"),
        (("--variant", "i:1", "--knob", "K"), "error: --variant 'i:1' must be NAME=IMAGE"),
        (("--image", "i:1", "--knob", "K", "-o", "x.toml"), "error: -o x.toml: a matrix file must be named *"),
        (("--image", "i:1", "--knob", "K", "--port", "0"), "error: --port 0 is not a port number (1-65535)"),
    ],
)
def test_init_bad_arguments_are_one_line(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = init(pytester, *args)
    assert result.ret == 2
    result.stderr.fnmatch_lines([message])
    assert len(result.stderr.lines) == 1
    assert written(pytester.path) == []


def test_init_without_knob_is_stacks_only(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not _knobless_supported(tmp_path_factory):
        pytest.skip("this core needs a knob in every matrix (issue 8 lifts that)")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--image", "svc:1"]) == 0, capsys.readouterr().err
    text = (tmp_path / "svc.ipv6.toml").read_text()
    assert "knob" not in text.split("[outcomes]")[0]
    assert '[expect.default]\ndual-stack = "timeout"' in text
    assert len(load_matrix(tmp_path / "svc.ipv6.toml").cells) == len(DEFAULT_STACKS)


def test_init_with_a_probe_writes_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = '[target]\nname = "a"\nimages = { v = "i" }\nvariants = ["v"]\nknob = "K"\nsettings = ["unset"]\n'
    text += 'probe = "tcp"\n\n' + "".join(f'[expect.v.{s}]\nunset = "timeout"\n' for s in DEFAULT_STACKS)
    if not _core_accepts(text, tmp_path_factory.mktemp("probe")):
        pytest.skip("this core has no [target] probe key (issue 8 adds it)")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--image", "svc:1", "--knob", "K", "--probe", "tcp"]) == 0, capsys.readouterr().err
    written = (tmp_path / "svc.ipv6.toml").read_text()
    assert 'probe = "tcp"' in written
    assert '# http_path = "/"' in written


@pytest.mark.parametrize(
    ("args", "probe", "http_path"),
    [
        (("--probe", "http"), "http", "/"),
        (("--probe", "https", "--http-path", "/healthz"), "https", "/healthz"),
        (("--http-path", "/status"), "http", "/status"),  # naming a path makes the probe http
        (("--probe", "tcp"), "tcp", None),
    ],
)
def test_http_path_is_active_only_where_http_was_asked_for(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    probe: str,
    http_path: str | None,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--image", "svc:1", "--port", "80", *args]) == 0, capsys.readouterr().err
    path = tmp_path / "svc.ipv6.toml"
    run = load_matrix(path).target.run_for("default")
    assert run.probe == probe
    active = [line for line in path.read_text().splitlines() if line.startswith("http_path")]
    assert active == ([] if http_path is None else [line for line in active if f'"{http_path}"' in line])
    assert len(active) == (0 if http_path is None else 1)
    if http_path is not None:
        assert run.http_path == http_path


def test_every_commented_alternative_is_valid_once_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user who removes the leading '# ' of any suggested line gets a file that still loads."""
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--image", "svc:1", "--knob", "K", "--port", "8080"]) == 0, capsys.readouterr().err
    text = (tmp_path / "svc.ipv6.toml").read_text()
    suggestion = re.compile(r"# ([A-Za-z_][A-Za-z0-9_-]* = .*)")
    lines = text.splitlines()
    alternatives = [i for i, line in enumerate(lines) if suggestion.fullmatch(line)]
    assert len(alternatives) >= 10, text  # probe, http_path, http_status, hold, settle, env, command, outcomes
    for i in alternatives:
        edited = [*lines[:i], lines[i][2:], *lines[i + 1 :]]
        path = tmp_path / f"alt{i}.ipv6.toml"
        path.write_text("\n".join(edited) + "\n")
        try:
            load_matrix(path)
        except MatrixError as exc:
            pytest.fail(f"uncommenting line {i + 1} ({lines[i]!r}) breaks the file: {exc}")
    every = [line[2:] if suggestion.fullmatch(line) else line for line in lines]
    (tmp_path / "all.ipv6.toml").write_text("\n".join(every) + "\n")
    outcomes = load_matrix(tmp_path / "all.ipv6.toml")
    assert outcomes.target.run_for("default").http_path == "/"


def test_the_stacks_comment_names_the_real_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--image", "svc:1"]) == 0, capsys.readouterr().err
    line = next(x for x in (tmp_path / "svc.ipv6.toml").read_text().splitlines() if x.startswith("stacks ="))
    assert line.split("# default: ")[1] == ", ".join(DEFAULT_STACKS)
    without = (tmp_path / "svc.ipv6.toml").read_text().replace(line + "\n", "")
    (tmp_path / "nostacks.ipv6.toml").write_text(without)
    assert load_matrix(tmp_path / "nostacks.ipv6.toml").target.stacks == DEFAULT_STACKS
