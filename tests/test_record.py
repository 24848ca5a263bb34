"""Record mode's pure part: verdicts to expectation text, and the TOML rewrite (no Docker)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pytest_ipv6compat.listeners import parse_listener
from pytest_ipv6compat.matrix import MatrixError, load_matrix
from pytest_ipv6compat.model import Cell, Expectation, Family, KnobSetting, Outcome, Reach, Result, Verdict
from pytest_ipv6compat.record import (
    Change,
    Observation,
    choose,
    observation,
    rewrite,
    silent_warning,
    stable_message,
    verdict_text,
    write_checked,
)
from pytest_ipv6compat.results import CellResult

NGINX_97 = "socket() [::]:8080 failed (97: Address family not supported by protocol)"
NGINX_LOG = f"2026/12/02 05:00:00 [emerg] 1#1: {NGINX_97}"

MATRIX = """\
# my matrix: reviewed by hand
[target]
name = "svc"
images = { v = "img:1" }
variants = ["v"]
knob = "K"
settings = ["unset", "=1"]
stacks = ["dual-stack", "ipv6-sysctl-off", "ipv6-kernel-off"]

[outcomes]
# both families, each answering
both = "up 0.0.0.0:8080 [::]:8080"
v4 = "up 0.0.0.0:8080"

[expect.v.dual-stack]
unset = "both"     # checked with curl
"=1" = "timeout"

[expect.v.ipv6-sysctl-off]
unset = "timeout"
"=1" = "timeout"

[expect.v.ipv6-kernel-off]
unset = 'timeout'  # placeholder
"=1" = "exited 1 'Address family'"
"""


def up(*listeners: str, silent: tuple[str, ...] = ()) -> Verdict:
    """Listeners probed over each family they serve; those in ``silent`` were refused."""
    parsed = [parse_listener(x) for x in listeners]
    reach = tuple(
        Reach(x, via, Result.REFUSED, False, "refused")
        if str(x) in silent
        else Reach(x, via, Result.ACCEPTED, True, "HTTP/1.0 200 OK")
        for x in parsed
        for via in sorted(x.serves)
    )
    return Verdict(Outcome.UP, frozenset(parsed), reach)


def exited(code: int, line: str | None, logs: str | None = None) -> Verdict:
    return Verdict(Outcome.EXITED, exit_code=code, error_line=line, logs=logs if logs is not None else f"{line}\n")


def obs(stack: str, label: str, verdict: Verdict) -> Observation:
    return Observation(f"v-{stack}-K{label if label != 'unset' else '-unset'}", "expect", "v", stack, label, verdict)


def test_verdict_text() -> None:
    assert verdict_text(up("[::]:8080", "0.0.0.0:8080")) == "up 0.0.0.0:8080 [::]:8080"
    assert verdict_text(up("0.0.0.0:8080", "[::]:8080", silent=("[::]:8080",))) == "up 0.0.0.0:8080 [::]:8080/silent"
    assert verdict_text(Verdict(Outcome.TIMEOUT)) == "timeout"
    assert verdict_text(exited(3, None, logs="")) == "exited 3"
    assert verdict_text(exited(1, NGINX_LOG)) == f"exited 1 '{NGINX_97}'"
    assert verdict_text(exited(2, "invalid value: 'maybe'")) == "exited 2 \"invalid value: 'maybe'\""
    assert verdict_text(exited(2, 'it\'s "odd"')) == "exited 2 'it'\"'\"'s \"odd\"'"


@pytest.mark.parametrize(
    ("line", "stable"),
    [
        (NGINX_LOG, NGINX_97),
        (f"nginx: [emerg] {NGINX_97}", f"nginx: [emerg] {NGINX_97}"),
        (
            "1:M 02 Dec 2026 05:00:00.123 # Failed listening on port 6379 (tcp), aborting.",
            "Failed listening on port 6379 (tcp), aborting.",
        ),
        (
            "2026-12-02T05:00:00.123Z ERROR listen tcp [::]:80: socket: address family not supported by protocol",
            "ERROR listen tcp [::]:80: socket: address family not supported by protocol",
        ),
        ("[::]:80 is taken", "[::]:80 is taken"),
        # pids change from run to run (and from boot to boot under User-mode Linux)
        ("2026/12/07 04:00:00 socat[161] E connect(5, AF=2 127.0.0.1:9, 16): Connection refused",
         "E connect(5, AF=2 127.0.0.1:9, 16): Connection refused"),
        ("daemon[42]: fatal: cannot open /etc/x.conf", "fatal: cannot open /etc/x.conf"),
        ("supervisor: child exited: worker[1234] could not bind port 80", "supervisor: child exited:"),
        ("app: worker pid 123 crashed with a segmentation fault", "crashed with a segmentation fault"),
        ("fatal error (pid=77) in the config parser", "in the config parser"),
    ],
)
def test_stable_message_drops_what_changes_between_runs(line: str, stable: str) -> None:
    assert stable_message(line, f"noise\n{line}\n") == stable


def test_stable_message_must_be_in_the_logs_and_short() -> None:
    assert stable_message("not in the logs", "something else") is None
    assert stable_message(None, "x") is None
    long = "word " * 60
    got = stable_message(long, long)
    assert got is not None
    assert len(got) <= 120
    assert got in long


def test_choose_keeps_a_current_name_or_text_that_still_fits() -> None:
    outcomes = {"both": "up 0.0.0.0:8080 [::]:8080", "also-both": "up [::]:8080 0.0.0.0:8080"}
    verdict = up("0.0.0.0:8080", "[::]:8080")
    assert choose("both", outcomes, verdict) == "both"
    assert choose("also-both", outcomes, verdict) == "also-both"
    assert choose("timeout", outcomes, verdict) == "both"  # the first name that fits
    assert choose("up [::]:8080 0.0.0.0:8080", {}, verdict) == "up [::]:8080 0.0.0.0:8080"  # text kept


def test_names_added_to_outcomes_are_taken_up_by_the_next_recording() -> None:
    verdict = up("0.0.0.0:8080", "[::]:8080")
    assert choose("up [::]:8080 0.0.0.0:8080", {"both": "up 0.0.0.0:8080 [::]:8080"}, verdict) == "both"
    first = rewrite(MATRIX.replace('unset = "both"', 'unset = "up 0.0.0.0:8080 [::]:8080"'), [
        obs("dual-stack", "unset", verdict)
    ])
    assert first.changes == (Change("v-dual-stack-K-unset", "up 0.0.0.0:8080 [::]:8080", "both"),)


def test_choose_prefers_a_named_outcome_with_error_text_and_exact_code() -> None:
    outcomes = {"any-exit": "exited", "one": "exited 1", "af": "exited 1 'Address family'"}
    assert choose("timeout", outcomes, exited(1, NGINX_LOG)) == "af"
    assert choose("timeout", outcomes, exited(2, "boom")) == "exited 2 'boom'"  # 'exited' alone states no code


def test_choose_refuses_a_verdict_no_expectation_can_state() -> None:
    assert choose("timeout", {}, Verdict(Outcome.UP)) is None  # up, but with no listener to name


def test_an_unprobed_listener_is_recorded_without_silent() -> None:
    unprobed = Verdict(Outcome.UP, frozenset({parse_listener("0.0.0.0:1")}), ())  # probe "none"
    assert choose("timeout", {}, unprobed) == "up 0.0.0.0:1"


def test_verdict_text_in_the_listener_syntax() -> None:
    assert verdict_text(up("*:8080")) == "up *:8080"
    assert verdict_text(up("udp/0.0.0.0:53", "0.0.0.0:53")) == "up 0.0.0.0:53 udp/0.0.0.0:53"
    assert verdict_text(up("[::]:8080", "*:9090", silent=("[::]:8080",))) == "up *:9090 [::]:8080/silent"


def test_rewrite_keeps_comments_and_names_and_lists_changes(tmp_path: Path) -> None:
    done = rewrite(
        MATRIX,
        [
            obs("dual-stack", "unset", up("0.0.0.0:8080", "[::]:8080")),  # unchanged: "both" still fits
            obs("dual-stack", "=1", up("0.0.0.0:8080")),  # a named outcome fits
            obs("ipv6-sysctl-off", "unset", up("0.0.0.0:8080", "[::]:8080", silent=("[::]:8080",))),
            obs("ipv6-kernel-off", "unset", exited(1, NGINX_LOG)),
            obs("ipv6-kernel-off", "=1", exited(1, NGINX_LOG)),  # unchanged: text still in the logs
        ],
    )
    assert done.recorded == 5
    assert done.changes == (
        Change("v-dual-stack-K=1", "timeout", "v4"),
        Change("v-ipv6-sysctl-off-K-unset", "timeout", "up 0.0.0.0:8080 [::]:8080/silent"),
        Change("v-ipv6-kernel-off-K-unset", "timeout", f"exited 1 '{NGINX_97}'"),
    )
    assert done.not_recorded == ()
    for kept in (
        "# my matrix: reviewed by hand",
        "# both families, each answering",
        'unset = "both"     # checked with curl',
        '"=1" = "exited 1 \'Address family\'"',
    ):
        assert kept in done.text
    assert '"=1" = "v4"' in done.text
    assert f"unset = \"exited 1 '{NGINX_97}'\"  # placeholder" in done.text
    # only the changed lines differ
    before, after = MATRIX.splitlines(), done.text.splitlines()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 3
    path = tmp_path / "svc.ipv6.toml"
    path.write_text(done.text)
    cells = {c.id: c.expectation for c in load_matrix(path).cells}
    assert cells["v-ipv6-kernel-off-K-unset"].error_contains == NGINX_97


def test_rewrite_again_changes_nothing() -> None:
    observed = [obs("dual-stack", "=1", up("0.0.0.0:8080")), obs("ipv6-kernel-off", "unset", exited(1, NGINX_LOG))]
    first = rewrite(MATRIX, observed)
    second = rewrite(first.text, observed)
    assert second.text == first.text
    assert second.changes == ()
    assert second.recorded == 2


def test_rewrite_a_changed_verdict_is_old_to_new() -> None:
    done = rewrite(MATRIX, [obs("dual-stack", "unset", up("0.0.0.0:8080"))])
    assert done.changes == (Change("v-dual-stack-K-unset", "both", "v4"),)
    assert 'unset = "v4"     # checked with curl' in done.text


def test_rewrite_reports_what_it_cannot_record() -> None:
    done = rewrite(
        MATRIX,
        [
            obs("dual-stack", "unset", Verdict(Outcome.UP)),
            Observation("w-x", "expect", "w", "dual-stack", "unset", up("0.0.0.0:8080")),
        ],
    )
    assert done.text == MATRIX
    assert done.recorded == 0
    assert done.not_recorded == (
        "v-dual-stack-K-unset: not recorded, no expectation states the verdict (up)",
        "w-x: not recorded, the file has no [expect.w] entry for it",
    )


def test_a_listener_no_loopback_reaches_is_recorded_by_its_pod_answer() -> None:
    pod = parse_listener("10.69.0.2:8080")
    loop = Reach(pod, Family.INET, Result.NOT_PROBED, False, "not a loopback or wildcard address")
    for ok, text in ((False, "up 10.69.0.2:8080/silent"), (True, "up 10.69.0.2:8080/pod")):
        verdict = Verdict(Outcome.UP, frozenset({pod}), (loop,),
                          pod_reach=(Reach(pod, Family.INET, Result.ACCEPTED, ok, "HTTP/1.1 200 OK"),))
        assert choose("timeout", {}, verdict) == text  # what it records, the judge passes


def test_rewrite_does_not_record_a_set_that_never_stood_for_the_hold() -> None:
    flapping = replace(up("0.0.0.0:8080"), unsteady=0.2)
    done = rewrite(MATRIX, [obs("dual-stack", "unset", flapping)])
    assert done.text == MATRIX
    assert done.not_recorded == (
        "v-dual-stack-K-unset: not recorded, its listener set never stood unchanged for the hold window",
    )


def test_rewrite_a_matrix_without_knob() -> None:
    text = '[expect.v]\ndual-stack = "timeout"  # keep\nipv6-kernel-off = "timeout"\n'
    done = rewrite(text, [Observation("v-dual-stack", "expect", "v", "dual-stack", None, up("0.0.0.0:80"))])
    assert done.text == '[expect.v]\ndual-stack = "up 0.0.0.0:80"  # keep\nipv6-kernel-off = "timeout"\n'


def test_only_judged_cells_are_observed_and_read_only_cells_go_to_their_table() -> None:
    expectation = Expectation(Outcome.TIMEOUT, source="timeout")
    ro = Cell("svc", "v", "dual-stack", "K", KnobSetting("1"), expectation, config_mode="ro")
    rw = Cell("svc", "v", "dual-stack", "K", KnobSetting(None), expectation)
    seen = up("0.0.0.0:8080")
    assert observation(CellResult(ro, "fail", seen, None)) == Observation(
        "v-dual-stack-config-ro-K=1", "expect_config_ro", "v", "dual-stack", "=1", seen
    )
    assert observation(CellResult(rw, "pass", seen, None)) == Observation(
        "v-dual-stack-K-unset", "expect", "v", "dual-stack", "unset", seen
    )
    assert observation(CellResult(rw, "error", seen, None)) is None  # e.g. attestation failed after a verdict
    assert observation(CellResult(rw, "skipped", None, None)) is None
    assert observation(CellResult(rw, "fail", None, None)) is None


def test_a_rewrite_that_would_not_load_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "svc.ipv6.toml"
    path.write_text(MATRIX)
    broken = MATRIX.replace('"=1" = "timeout"', '"=1" = "sideways"', 1)
    with pytest.raises(MatrixError, match=r"svc\.ipv6\.toml: \[expect\.v\.dual-stack\.=1\]: .*'sideways'"):
        write_checked(path, broken)
    assert path.read_text() == MATRIX
    assert [p.name for p in tmp_path.iterdir()] == ["svc.ipv6.toml"]  # no temporary left
    write_checked(path, MATRIX.replace("# my matrix", "# our matrix"))
    assert path.read_text().startswith("# our matrix")


def _results(*verdicts: Verdict) -> list[CellResult]:
    cell = Cell("svc", "v", "dual-stack", "K", KnobSetting(None), Expectation(Outcome.TIMEOUT, source="timeout"))
    return [CellResult(cell, "pass", v, None) for v in verdicts]


def _silent(detail: str) -> Verdict:
    listener = parse_listener("0.0.0.0:8443")
    return Verdict(Outcome.UP, frozenset({listener}), (Reach(listener, Family.INET, Result.ACCEPTED, False, detail),))


def test_a_recording_where_nothing_answered_warns_and_names_the_setting() -> None:
    tls = silent_warning(_results(_silent("(accepted, no response)"), exited(1, "boom")))
    assert tls is not None
    assert "'(accepted, no response)'" in tls
    assert 'probe = "https"' in tls
    not_found = silent_warning(_results(_silent("HTTP/1.1 404 Not Found")))
    assert not_found is not None
    assert "'HTTP/1.1 404 Not Found'" in not_found
    assert "http_path" in not_found
    plain_to_tls = silent_warning(_results(_silent("HTTP/1.1 400 Bad Request")))
    assert plain_to_tls is not None
    assert 'probe = "https"' in plain_to_tls


def test_no_warning_when_anything_answered_or_nothing_was_probed() -> None:
    assert silent_warning(_results(_silent("HTTP/1.1 404 Not Found"), up("0.0.0.0:8080"))) is None
    assert silent_warning(_results(up("0.0.0.0:8080", "[::]:8080", silent=("[::]:8080",)))) is None
    unprobed = Verdict(Outcome.UP, frozenset({parse_listener("0.0.0.0:1")}), ())
    assert silent_warning(_results(unprobed, exited(1, "boom"))) is None
    assert silent_warning([]) is None


TARGET_ONLY = """\
[target]
name = "svc"
images = { v = "svc:1" }
variants = ["v"]
knob = "K"
settings = ["unset", "=1"]
stacks = ["dual-stack", "ipv6-kernel-off"]
"""


def test_a_file_with_only_a_target_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "svc.ipv6.toml"
    path.write_text(TARGET_ONLY)
    with pytest.raises(MatrixError, match=r"missing the \[expect\] table \(pytest --ipv6-record can fill it in\)"):
        load_matrix(path)
    target = load_matrix(path, placeholders=True).target
    assert {c.expectation.source for c in load_matrix(path, placeholders=True).cells} == {"timeout"}
    done = rewrite(TARGET_ONLY, [obs("dual-stack", "=1", up("0.0.0.0:8080"))], target)
    assert done.changes == (Change("v-dual-stack-K=1", "timeout", "up 0.0.0.0:8080"),)
    write_checked(path, done.text)
    cells = {c.id: c.expectation.source for c in load_matrix(path).cells}  # loads without placeholders now
    assert cells == {
        "v-dual-stack-K-unset": "timeout",
        "v-dual-stack-K=1": "up 0.0.0.0:8080",
        "v-ipv6-kernel-off-K-unset": "timeout",
        "v-ipv6-kernel-off-K=1": "timeout",
    }
    assert "[expect.v.dual-stack]" in done.text
    assert "[expect]\n" not in done.text  # super-tables: no empty headers
    assert "[expect.v]\n" not in done.text


def test_a_file_missing_some_cells_gets_them_and_keeps_the_rest(tmp_path: Path) -> None:
    partial = TARGET_ONLY + '\n[expect.v.dual-stack]\nunset = "up 0.0.0.0:8080"  # by hand\n'
    (tmp_path / "svc.ipv6.toml").write_text(partial)
    target = load_matrix(tmp_path / "svc.ipv6.toml", placeholders=True).target
    done = rewrite(partial, [obs("ipv6-kernel-off", "unset", exited(1, NGINX_LOG))], target)
    assert 'unset = "up 0.0.0.0:8080"  # by hand' in done.text
    assert done.changes == (Change("v-ipv6-kernel-off-K-unset", "timeout", f"exited 1 '{NGINX_97}'"),)
    assert '[expect.v.dual-stack]\nunset = "up 0.0.0.0:8080"  # by hand\n"=1" = "timeout"' in done.text
