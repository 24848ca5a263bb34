"""Matrix loading, validation and judging: pure, no Docker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pytest_ipv6compat.matrix import MatrixError, judge, load_matrix, parse_expectation, parse_listener
from pytest_ipv6compat.model import (
    Family,
    KnobSetting,
    Listener,
    ListenerChange,
    Outcome,
    Protocol,
    Reach,
    Result,
    Verdict,
)

ROOT = Path(__file__).resolve().parent.parent
V4 = Listener(Family.INET, "0.0.0.0", 56000)
V6 = Listener(Family.INET6, "::", 56000)

MINIMAL = """\
[target]
name = "svc"
images = { a = "img:a" }
variants = ["a"]
knob = "SVC_V6"
settings = ["unset", "=1"]
stacks = ["dual-stack"]

[expect.a.dual-stack]
unset = "up 0.0.0.0:80 [::]:80"
"=1" = "up 0.0.0.0:80"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.ipv6.toml"
    path.write_text(text)
    return path


def test_reference_matrix_has_84_cells_plus_read_only_cells() -> None:
    m = load_matrix(ROOT / "matrix" / "cloud-proxy.ipv6.toml")
    rw = [c for c in m.cells if c.config_mode == "rw"]
    assert len(rw) == 84  # 3 variants x 4 stacks x 7 settings
    assert {c.variant for c in rw} == {"unpatched", "env-toggle", "adaptive"}
    assert {c.setting.label for c in rw} == {"unset", "empty", "=1", "=true", "=false", "=0", "=maybe"}
    ids = [c.id for c in m.cells]
    assert len(ids) == len(set(ids))
    assert "env-toggle-ipv6-kernel-off-PL_IPV6_DISABLE=1" in ids
    assert "env-toggle-dual-stack-config-ro-PL_IPV6_DISABLE=false" in ids
    assert "adaptive-ipv6-boot-disabled-config-ro-PL_IPV6_DISABLE=0" in ids


def test_minimal_matrix(tmp_path: Path) -> None:
    m = load_matrix(write(tmp_path, MINIMAL))
    assert [c.id for c in m.cells] == ["a-dual-stack-SVC_V6-unset", "a-dual-stack-SVC_V6=1"]
    assert m.target.image_for("a") == "img:a"
    assert m.cells[0].setting == KnobSetting(None)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('stacks = ["dual-stack"]', 'stacks = ["ipv6-off"]', "unknown stack 'ipv6-off'"),
        ("[expect.a.dual-stack]", "[expect.b.dual-stack]", "unknown variant 'b'"),
        ('"=1" = "up 0.0.0.0:80"', '"=2" = "up 0.0.0.0:80"', "unknown knob setting '=2'"),
        ('"=1" = "up 0.0.0.0:80"', "", "[expect.a.dual-stack.=1]: no expectation for this cell"),
        ('knob = "SVC_V6"', 'knob = "SVC-V6"', "'SVC-V6' is not a valid environment variable name"),
        ('knob = "SVC_V6"', "", "'knob' and 'settings' go together"),
        ('settings = ["unset", "=1"]', 'settings = ["unset", "1"]', "knob setting '1' must be"),
        ('settings = ["unset", "=1"]', 'settings = ["=1", "=1"]', "lists '=1' twice"),
        ('"=1" = "up 0.0.0.0:80"', '"=1" = "listening"', "'listening' is neither an expectation nor a named outcome"),
        ('"=1" = "up 0.0.0.0:80"', '"=1" = "up"', "'up' needs at least one listener"),
        ('"=1" = "up 0.0.0.0:80"', '"=1" = "up 0.0.0.0:99999"', "port out of range"),
        ('"=1" = "up 0.0.0.0:80"', '"=1" = "up 300.0.0.1:80"', "listener '300.0.0.1:80'"),
        ('"=1" = "up 0.0.0.0:80"', '"=1" = "up [::]:80/mute"', "'[::]:80/mute' is not [tcp/|udp/]ADDRESS:PORT"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\nprobe = "gopher"', "probe = 'gopher' is not one of"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\nhold = -1', "hold = -1 must be at least 0"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\ntimeout = "10"', "timeout = '10' is not a number"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\nhttp_status = ["ok"]', "'ok' is not a status"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\ncommand = "serve"', "command must be a non-empty list"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\ntmpfs = ["run"]', "'run' is not an absolute path"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\nextra_hosts = { "a b" = "1.2.3.4" }',
         "'a b' is not a host"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\nmounts = { "/etc/x" = "no-such-dir" }',
         "does not exist"),
        # a file would be a file under User-mode Linux and an empty directory on an engine: refused
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\nmounts = { "/etc/x.conf" = "m.ipv6.toml" }',
         "[target]: mounts: /etc/x.conf = 'm.ipv6.toml': "),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\nmounts = { "/etc/x.conf" = "m.ipv6.toml" }',
         "m.ipv6.toml' is not a directory (mount the directory that holds it)"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\n[variant.b]\nhold = 1',
         "[variant.b]: unknown variant 'b'"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\n[variant.a]\nsettle = 0',
         "settle = 0 must be more than 0"),
        ('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\n[variant.a]\nreadonly = true',
         "unknown setting(s): readonly"),
        ('settings = ["unset", "=1"]', 'settings = ["unset", "=1\\n2"]', "holds a control or format character"),
        ('"=1" = "up 0.0.0.0:80"', '"=1" = "up"', "needs at least one listener"),
        ('"=1" = "up 0.0.0.0:80"', '"=1" = "exited 1 \'a"', "No closing quotation"),
        ('"=1" = "up 0.0.0.0:80"', '"=1" = 3', "must be a string, got 3"),
        ('images = { a = "img:a" }', "", "needs exactly one of 'build'"),
        ('name = "svc"', 'name = "svc"\nflavour = 1', "unknown key(s): flavour"),
        ('unset = "up', 'unset = "up 1.1.1.1:1"\nunset = "up', "not valid TOML"),
        ("[expect.a.dual-stack]", "[expected.a.dual-stack]", "unknown top-level key(s): expected"),
    ],
)
def test_bad_matrix_names_the_problem(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_matrix_without_a_knob_has_one_cell_per_variant_and_stack(tmp_path: Path) -> None:
    text = """\
[target]
name = "dns"
images = { a = "img:a", b = "img:b" }
variants = ["a", "b"]
stacks = ["dual-stack", "ipv6-kernel-off"]
probe = "none"

[variant.b]
read_only = true
tmpfs = ["/run"]
extra_hosts = { "upstream.test" = "127.0.0.1" }
hold = 0

[expect.a]
dual-stack = "up udp/*:53 *:53"
ipv6-kernel-off = "up udp/0.0.0.0:53"

[expect.b]
dual-stack = "up udp/*:53"
ipv6-kernel-off = "exited 1"
"""
    matrix = load_matrix(write(tmp_path, text))
    assert [c.id for c in matrix.cells] == ["a-dual-stack", "a-ipv6-kernel-off", "b-dual-stack", "b-ipv6-kernel-off"]
    assert matrix.cells[0].knob == ""
    assert matrix.cells[0].setting == KnobSetting(None)
    a, b = matrix.target.run_for("a"), matrix.target.run_for("b")
    assert (a.probe, a.read_only, a.hold) == ("none", False, 1.0)
    assert (b.probe, b.read_only, b.hold, b.tmpfs, b.extra_hosts) == (
        "none", True, 0.0, (("/run", ""),), (("upstream.test", "127.0.0.1"),)
    )
    dual = Listener(Family.INET6, "::", 53, Protocol.UDP, v6only=False)
    assert matrix.cells[0].expectation.listeners == {dual, Listener(Family.INET6, "::", 53, v6only=False)}


def test_naming_an_http_path_makes_the_probe_http_unless_another_is_named(tmp_path: Path) -> None:
    text = MINIMAL.replace('stacks = ["dual-stack"]', 'stacks = ["dual-stack"]\nhttp_path = "/healthz"')
    assert load_matrix(write(tmp_path, text)).target.run_for("a").probe == "http"
    text = text.replace('http_path = "/healthz"', 'http_path = "/healthz"\nprobe = "https"')
    assert load_matrix(write(tmp_path, text)).target.run_for("a").probe == "https"
    assert load_matrix(write(tmp_path, MINIMAL)).target.run_for("a").probe == "tcp"


def test_matrix_that_is_not_utf8_or_has_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "m.ipv6.toml"
    path.write_bytes(b"\xff\xfe" + MINIMAL.encode())
    with pytest.raises(MatrixError, match="not UTF-8 text"):
        load_matrix(path)
    path.write_bytes("\ufeff".encode() + MINIMAL.encode())
    assert len(load_matrix(path).cells) == 2


def test_env_table_is_validated(tmp_path: Path) -> None:
    text = MINIMAL.replace('knob = "SVC_V6"', 'knob = "SVC_V6"\nenv = { "BAD NAME" = "x" }')
    with pytest.raises(MatrixError, match="'BAD NAME' is not a valid environment variable name"):
        load_matrix(write(tmp_path, text))
    text = MINIMAL.replace('knob = "SVC_V6"', 'knob = "SVC_V6"\nenv = { SVC_V6 = "1" }')
    with pytest.raises(MatrixError, match="sets the knob 'SVC_V6'"):
        load_matrix(write(tmp_path, text))


def test_missing_file_and_duplicate_cell(tmp_path: Path) -> None:
    with pytest.raises(MatrixError, match="cannot read"):
        load_matrix(tmp_path / "absent.ipv6.toml")
    dup = MINIMAL + 'unset = "up 0.0.0.0:80"\n'
    with pytest.raises(MatrixError, match="not valid TOML"):
        load_matrix(write(tmp_path, dup))


def test_parse_listener_forms() -> None:
    assert parse_listener("0.0.0.0:56000") == V4
    assert parse_listener("[::]:56000") == V6
    assert parse_listener("[0:0::1]:80") == Listener(Family.INET6, "::1", 80)
    assert parse_listener("[::ffff:7f00:1]:80") == Listener(Family.INET6, "::ffff:127.0.0.1", 80)
    with pytest.raises(ValueError, match=r"is not \[tcp/\|udp/\]ADDRESS:PORT"):
        parse_listener("56000")


def _reach(listener: Listener, ok: bool) -> Reach:
    via = Family.INET if listener.family is Family.INET else Family.INET6
    return Reach(listener, via, Result.ACCEPTED, ok, "")


def up(*reach: tuple[Listener, bool]) -> Verdict:
    return Verdict(Outcome.UP, frozenset(lst for lst, _ in reach), tuple(_reach(lst, ok) for lst, ok in reach))


def test_judge_up() -> None:
    both = parse_expectation("up 0.0.0.0:56000 [::]:56000")
    assert not judge(both, up((V4, True), (V6, True)))
    assert judge(both, up((V4, True))).reasons == ("missing listeners: [::]:56000",)
    v4 = parse_expectation("up 0.0.0.0:56000")
    assert judge(v4, up((V4, True), (V6, True))).reasons == ("unexpected listeners: [::]:56000",)
    assert judge(both, up((V4, True), (V6, False))).reasons == ("[::]:56000 did not answer, expected it to",)
    silent = parse_expectation("up 0.0.0.0:56000 [::]:56000/silent")
    assert not judge(silent, up((V4, True), (V6, False)))
    assert judge(silent, up((V4, True), (V6, True))).reasons == ("[::]:56000 answered, expected it not to",)
    assert not judge(both, Verdict(Outcome.UP, frozenset({V4, V6})))  # probe "none": reachability is not judged
    assert judge(silent, Verdict(Outcome.UP, frozenset({V4, V6}))).reasons == (
        "[::]:56000 was not probed, so /silent cannot be checked",
    )


POD = Listener(Family.INET, "10.69.0.2", 8080)  # bound to the pod address: no loopback reaches it


def _beyond(listener: Listener, ok: bool | None) -> Verdict:
    """``listener`` up, not probed over loopback (no loopback reaches it), probed over the pod address: ``ok``,
    or ``None`` for probe none."""
    loop = Reach(listener, Family.INET, Result.NOT_PROBED, False, "not a loopback or wildcard address")
    status = "HTTP/1.1 200 OK" if ok else "HTTP/1.1 404 Not Found"
    pod = (Reach(listener, Family.INET, Result.NOT_PROBED, False, "probe none") if ok is None
           else Reach(listener, Family.INET, Result.ACCEPTED, ok, status))
    return Verdict(Outcome.UP, frozenset({listener}), (loop,), pod_reach=(pod,))


def test_a_listener_no_loopback_reaches_is_judged_over_the_pod_address() -> None:
    plain, silent = parse_expectation("up 10.69.0.2:8080"), parse_expectation("up 10.69.0.2:8080/silent")
    assert not judge(plain, _beyond(POD, True))
    assert judge(plain, _beyond(POD, False)).reasons == (
        "10.69.0.2:8080 did not answer over the pod address (no loopback reaches it; inet: accepted, "
        "HTTP/1.1 404 Not Found), expected it to",
    )
    assert not judge(silent, _beyond(POD, False))
    assert judge(silent, _beyond(POD, True)).reasons[0].startswith("10.69.0.2:8080 answered over the pod address")
    assert judge(parse_expectation("up 10.69.0.2:8080/pod"), _beyond(POD, False)).reasons == (
        judge(plain, _beyond(POD, False)).reasons  # said once
    )
    assert not judge(parse_expectation("up 10.69.0.2:8080/pod"), _beyond(POD, True))
    assert not judge(plain, _beyond(POD, None))  # probe none: reachability is not judged, as on loopback
    assert judge(silent, _beyond(POD, None)).reasons == ("10.69.0.2:8080 was not probed, so /silent cannot be checked",)


def test_up_is_not_proven_when_the_set_never_stood_for_the_hold() -> None:
    change = ListenerChange(V4, opened=True, at=1.92)
    steady = replace(up((V4, True)), changes=(change,))
    assert not judge(parse_expectation("up 0.0.0.0:56000"), steady)  # it changed, then stood for the hold
    flapping = replace(steady, unsteady=0.24)
    reasons = judge(parse_expectation("up 0.0.0.0:56000"), flapping).reasons
    assert reasons[0] == "the listener set never stood unchanged for the hold window, so up is not proven"
    assert reasons[1:] == (flapping.change_text(), flapping.unsteady_text())
    # the same verdict under an expectation it misses for another reason: that reason, then the explanation
    reasons = judge(parse_expectation("up [::]:56000"), flapping).reasons
    assert reasons[:2] == ("missing listeners: [::]:56000", "unexpected listeners: 0.0.0.0:56000")


def test_judge_tells_the_three_wildcards_apart() -> None:
    dual = Listener(Family.INET6, "::", 56000, v6only=False)
    verdict = up((dual, True))
    assert judge(parse_expectation("up [::]:56000"), verdict).reasons == (
        "missing listeners: [::]:56000",
        "unexpected listeners: *:56000",
    )
    assert not judge(parse_expectation("up *:56000"), verdict)


def test_exited_after_listening_says_so() -> None:
    verdict = Verdict(Outcome.EXITED, exit_code=3, listened=frozenset({V4}))
    assert judge(parse_expectation("up 0.0.0.0:56000"), verdict).reasons == (
        "expected up, but the target exited with code 3 after it had listened on 0.0.0.0:56000",
    )


def test_judge_exited_and_timeout() -> None:
    exp = parse_expectation("exited 1 'failed (97'")
    died = Verdict(Outcome.EXITED, exit_code=1, logs="nginx: [emerg] socket() [::]:56000 failed (97: ...)")
    assert not judge(exp, died)
    assert judge(exp, Verdict(Outcome.EXITED, exit_code=2, logs=died.logs)).reasons == ("expected exit code 1, got 2",)
    assert judge(exp, Verdict(Outcome.EXITED, exit_code=1, logs="other")).reasons == (
        "logs do not contain 'failed (97'",
    )
    any_code = parse_expectation("exited")
    assert judge(any_code, Verdict(Outcome.EXITED, exit_code=0)).reasons == ("expected a non-zero exit code, got 0",)
    assert judge(exp, Verdict(Outcome.TIMEOUT)).reasons == ("expected exited, but the target timed out",)
    assert not judge(parse_expectation("timeout"), Verdict(Outcome.TIMEOUT))
    assert judge(parse_expectation("timeout"), up((V4, True))).reasons == ("expected timeout, but the target is up",)


def test_config_dir_and_source_per_variant(tmp_path: Path) -> None:
    """Two builds with their config at different places: each variant's read-only cells mount its own."""
    (tmp_path / "conf-a").mkdir()
    (tmp_path / "conf-b").mkdir()
    path = tmp_path / "svc.ipv6.toml"
    head = """\
[target]
name = "svc"
images = { a = "svc:a", b = "svc:b", c = "svc:c" }
variants = ["a", "b", "c"]
stacks = ["dual-stack"]
config_dir = "/etc/svc/conf.d"
config_source = "conf-a"

[variant.b]
config_dir = "/etc/svc/conf"
config_source = "conf-b"
hold = 0.5

[expect.a]
dual-stack = "timeout"
[expect.b]
dual-stack = "timeout"
[expect.c]
dual-stack = "timeout"

[expect_config_ro.a]
dual-stack = "timeout"
[expect_config_ro.b]
dual-stack = "timeout"
"""
    path.write_text(head)
    target = load_matrix(path).target
    assert target.config_for("a") == ("/etc/svc/conf.d", tmp_path / "conf-a")
    assert target.config_for("b") == ("/etc/svc/conf", tmp_path / "conf-b")
    assert target.config_for("c") == ("/etc/svc/conf.d", tmp_path / "conf-a")  # [target]'s
    assert target.run_for("b").hold == 0.5  # the other settings of [variant.b] still apply
    assert target.run_for("b").mounts == ()  # the config is mounted only in read-only cells

    without_target_config = head.replace('config_dir = "/etc/svc/conf.d"\nconfig_source = "conf-a"\n', "")
    path.write_text(without_target_config)
    with pytest.raises(MatrixError, match=r"\[expect_config_ro\.a\] needs config_dir and config_source in \[target\] "
                                          r"or \[variant\.a\]"):  # fmt: skip
        load_matrix(path)
    path.write_text(head.replace('config_source = "conf-b"', 'config_source = "conf-x"'))
    with pytest.raises(MatrixError, match=r"\[variant\.b\.config_source\]: '.*/conf-x' is not a directory"):
        load_matrix(path)
    path.write_text(head.replace('config_source = "conf-b"\n', ""))
    with pytest.raises(MatrixError, match=r"\[variant\.b\]: 'config_dir' and 'config_source' go together"):
        load_matrix(path)
