"""Each cell records what ran it: the engine (address, version, API, kind, host kernel and OS), its OCI
runtime, or the User-mode Linux kernel; in the JSON (validated, kept by merge), JUnit properties and
Markdown. Pure: no engine (the engine-backed tests are in test_engine_failover.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_merge import ALL3, _edit, _shards

from pytest_ipv6compat.merge import MergeError, merge_reports
from pytest_ipv6compat.model import Cell, Expectation, KnobSetting, Outcome
from pytest_ipv6compat.provenance import describe, distinct, of_info, redact, with_guest_kernel
from pytest_ipv6compat.report import junit_properties, load_json, render_json, render_markdown, schema_path
from pytest_ipv6compat.results import CellResult
from pytest_ipv6compat.schema_check import first_error

# What DockerBackend.info() and UmlBackend.info() return (keys the header uses, and more).
DOCKER_INFO = {
    "engine": "Docker", "version": "20.10.24+dfsg1", "api": "1.41", "runtime": "runc", "seccomp": "yes",
    "address": "tcp://ci:s3cret@build-2:2375 (from --ipv6-engines)", "url": "tcp://ci:s3cret@build-2:2375",
    "os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0-18-amd64", "files": "remote", "arch": "x86_64",
}
UML_INFO = {"uml": "/usr/bin/linux", "uml_version": "6.1.176"}


def test_an_address_loses_its_credentials_and_nothing_else() -> None:
    assert redact("tcp://ci:s3cret@build-2:2375") == "tcp://ci@build-2:2375"
    assert redact("tcp://ci:s3cret@build-2:2375 (from DOCKER_HOST)") == "tcp://ci@build-2:2375 (from DOCKER_HOST)"
    for kept in ("ssh://deploy@build-2:22", "tcp://build-2:2375", "unix:///var/run/docker.sock (the default)"):
        assert redact(kept) == kept


def test_a_docker_cell_records_the_engine_runtime_and_kernel_as_the_engine_reports_them() -> None:
    p = dict(of_info(DOCKER_INFO))
    assert p == {"backend": "docker", "engine": "Docker", "address": "tcp://ci@build-2:2375",
                 "version": "20.10.24+dfsg1", "api": "1.41", "runtime": "runc",
                 "os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0-18-amd64"}
    assert "s3cret" not in describe(of_info(DOCKER_INFO))
    assert describe(of_info(DOCKER_INFO)) == (
        "Docker 20.10.24+dfsg1 (API 1.41) at tcp://ci@build-2:2375, runtime runc, "
        "kernel 6.1.0-18-amd64 (Debian GNU/Linux 12 (bookworm))")
    moved = dict(of_info(DOCKER_INFO, failover="unix:///gone.sock did not answer"))
    assert moved["failover"] == "unix:///gone.sock did not answer"
    assert dict(of_info(UML_INFO, failover="ignored")) == {
        "backend": "uml", "uml": "/usr/bin/linux", "uml_version": "6.1.176"}
    assert describe(of_info(UML_INFO)) == "User-mode Linux 6.1.176 (/usr/bin/linux)"


def test_a_uml_cell_adds_the_guest_kernel_its_shim_attested_and_a_container_cell_does_not() -> None:
    facts = (("cmdline ipv6.disable", "1"), ("kernel release", "6.1.176"))
    assert dict(with_guest_kernel(of_info(UML_INFO), facts))["guest_kernel"] == "6.1.176"
    assert describe(with_guest_kernel(of_info(UML_INFO), facts)).endswith(", guest kernel 6.1.176")
    assert with_guest_kernel(of_info(UML_INFO), (("kernel release", "unknown"),)) == of_info(UML_INFO)
    assert with_guest_kernel(of_info(DOCKER_INFO), facts) == of_info(DOCKER_INFO)  # the engine says its kernel


def test_distinct_engines_are_counted_once_whether_or_not_a_cell_failed_over() -> None:
    a, b = of_info(DOCKER_INFO), of_info({**DOCKER_INFO, "url": "unix:///var/run/docker.sock"})
    moved = of_info({**DOCKER_INFO, "url": "unix:///var/run/docker.sock"}, failover="x")
    assert distinct([a, b, moved, (), a]) == [(a, 2), (b, 2)]


def _cell(stack: str = "dual-stack") -> Cell:
    return Cell("tiny", "adaptive", stack, "K", KnobSetting(None), Expectation(Outcome.UP, frozenset()))


def _error(ran_on: Any) -> CellResult:
    return CellResult(_cell(), "error", None, None, ("the engine could not start a container",), None, ran_on)


def test_ran_on_round_trips_validates_and_is_listed_once_in_meta() -> None:
    docker_cell = _error(of_info(DOCKER_INFO, failover="unix:///gone.sock did not answer"))
    uml_cell = CellResult(_cell("ipv6-boot-disabled"), "skipped", None, None, ("no uml",), None, of_info(UML_INFO))
    bare = CellResult(_cell("ipv6-sysctl-off"), "skipped", None, None, ("no engine",), None)
    from pytest_ipv6compat.report import engines_meta

    results = [docker_cell, uml_cell, bare]
    text = render_json(results, meta={"engines": engines_meta(results)})
    doc = json.loads(text)
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert first_error(doc, schema) is None
    by_stack = {c["stack"]: c["ran_on"] for c in doc["cells"]}
    assert by_stack["ipv6-sysctl-off"] is None
    assert by_stack["ipv6-boot-disabled"] == {"backend": "uml", "uml": "/usr/bin/linux", "uml_version": "6.1.176"}
    assert by_stack["dual-stack"]["failover"] == "unix:///gone.sock did not answer"
    assert [e["cells"] for e in doc["meta"]["engines"]] == [1, 1]
    assert "failover" not in doc["meta"]["engines"][0]["ran_on"]  # an engine, not a cell's story
    _, back = load_json(text)
    assert sorted(back, key=lambda r: r.cell.stack) == sorted(results, key=lambda r: r.cell.stack)


@pytest.mark.parametrize(("bad", "why"), [
    ({"backend": "docker", "password": "x"}, "unexpected key 'password'"),
    ({"backend": "docker", "version": 20}, "20 is not of type string"),
    ({"engine": "Docker"}, "'backend' is missing"),
    ({"backend": "kvm"}, "'kvm' is not one of 'docker', 'uml'"),
])
def test_a_malformed_ran_on_breaks_the_schema(bad: dict[str, Any], why: str) -> None:
    doc = json.loads(render_json([_error(of_info(DOCKER_INFO))], meta={}))
    doc["cells"][0]["ran_on"] = bad
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    error = first_error(doc, schema)
    assert error is not None
    assert why in error
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(doc)


def _with_engines(paths: list[Path]) -> None:
    """Give each shard's cells the engine that (would have) run them: shard N on engine N."""
    for n, path in enumerate(paths):
        ran_on = dict(of_info({**DOCKER_INFO, "url": f"tcp://build-{n}:2375"}))
        _edit(path, lambda d, r=ran_on: [c.update(ran_on=r) for c in d["cells"]])


def test_merge_keeps_each_cells_engine_and_lists_every_engine(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    _with_engines(paths)
    out = tmp_path / "merged.json"
    done = subprocess.run([sys.executable, "-m", "pytest_ipv6compat", "merge", *map(str, paths), "--json", str(out),
                           "--markdown", str(tmp_path / "merged.md")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    merged = json.loads(out.read_text(encoding="utf-8"))
    assert {c["stack"]: c["ran_on"]["address"] for c in merged["cells"]} == {
        "dual-stack": "tcp://build-0:2375", "ipv6-sysctl-off": "tcp://build-1:2375",
        "ipv6-kernel-off": "tcp://build-2:2375"}
    assert sorted(e["ran_on"]["address"] for e in merged["meta"]["engines"]) == [
        "tcp://build-0:2375", "tcp://build-1:2375", "tcp://build-2:2375"]
    _, again, _ = merge_reports([out])  # and it merges again, engines and all
    assert sorted(dict(r.ran_on)["address"] for r in again) == sorted(e["ran_on"]["address"]
                                                                       for e in merged["meta"]["engines"])
    assert "- Docker 20.10.24+dfsg1 (API 1.41) at tcp://build-1:2375" in (tmp_path / "merged.md").read_text()


def test_merge_refuses_a_shard_whose_ran_on_is_malformed_in_one_line(tmp_path: Path) -> None:
    paths = _shards(tmp_path, *ALL3)
    _edit(paths[1], lambda d: d["cells"][0].update(ran_on={"backend": "docker", "token": "x"}))
    with pytest.raises(MergeError, match=r"^.*shard1.json: does not match the report schema v4: at cells\[0\].ran_on: "
                                         r"unexpected key 'token'$") as caught:
        merge_reports(paths)
    assert "\n" not in str(caught.value)


def test_junit_properties_and_markdown_say_what_ran_the_cell() -> None:
    result = _error(of_info(DOCKER_INFO, failover="unix:///gone.sock did not answer"))
    props = dict(junit_properties(result))
    assert props["ipv6.ran_on.address"] == "tcp://ci@build-2:2375"
    assert props["ipv6.ran_on.engine"] == "Docker"
    assert props["ipv6.ran_on.kernel"] == "6.1.0-18-amd64"
    assert props["ipv6.ran_on.runtime"] == "runc"
    assert props["ipv6.ran_on.failover"] == "unix:///gone.sock did not answer"
    assert not any(k.startswith("ipv6.ran_on") for k, _ in junit_properties(_error(())))
    markdown = render_markdown([result])
    assert "#### Ran on\n\n- Docker 20.10.24+dfsg1 (API 1.41) at tcp://ci@build-2:2375, runtime runc, " in markdown
    assert ": 1 cell\n" in markdown
    assert ("  - ran on: Docker 20.10.24+dfsg1 (API 1.41) at tcp://ci@build-2:2375, runtime runc, kernel "
            "6.1.0-18-amd64 (Debian GNU/Linux 12 (bookworm)); failed over: unix:///gone.sock did not answer"
            in markdown)
    assert "s3cret" not in markdown


# ---------------------------------------------------------------- which engine a process uses (no engine needed)


def test_a_worker_tries_its_own_engine_first_then_the_ones_after_it() -> None:
    from pytest_ipv6compat.options import Settings
    from pytest_ipv6compat.state import SessionState

    engines = ("unix:///a.sock", "unix:///b.sock", "unix:///c.sock")
    order = {w: SessionState(Settings(engines=engines), worker=w).engine_urls() for w in (None, "gw1", "gw5")}
    assert order == {None: list(engines), "gw1": ["unix:///b.sock", "unix:///c.sock", "unix:///a.sock"],
                     "gw5": ["unix:///c.sock", "unix:///a.sock", "unix:///b.sock"]}
    assert SessionState(Settings()).engine_urls() == [None]  # DOCKER_HOST or the default socket, no fail-over


def test_when_no_engine_answers_the_error_names_them_all(tmp_path: Path) -> None:
    from pytest_ipv6compat.options import Settings
    from pytest_ipv6compat.state import SessionState, Unavailable

    mine, other = f"unix://{tmp_path}/mine.sock", f"unix://{tmp_path}/other.sock"
    state = SessionState(Settings(engines=(mine, other)), worker="gw0")
    with pytest.raises(Unavailable) as caught:
        state.engine()
    assert str(caught.value) == (f"Docker engine at {mine} (from --ipv6-engines) is unreachable: No such file or "
                                 f"directory; no other engine answered either ({other})")
    assert state.failover is None
    assert not state.fail_over()  # nothing to fail over from
