"""The watcher's sealed channel (issue 15, section 2): pure checks of the opener, and the
compiled watcher sealing exactly as the plugin opens (no Docker; the watcher runs in a
network namespace of its own, made by ``unshare``, where nothing listens)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pytest_ipv6compat.probe.report import KEY_VARIABLE, SealedChannel, TamperError

WATCH_C = Path(__file__).resolve().parent.parent / "pytest_ipv6compat" / "probe" / "watch.c"


def sealed(channel: SealedChannel, *records: str) -> list[str]:
    """The lines a watcher with ``channel``'s key writes for ``records``, numbered from ``channel.next_seq``."""
    writer = SealedChannel(key=channel.key, next_seq=channel.next_seq)
    out = []
    for record in records:
        out.append(writer.seal(record))
        writer.next_seq += 1
    return out


def opened(channel: SealedChannel, lines: list[str]) -> list[str | None]:
    return [channel.open(line) for line in lines]


def test_a_sealed_stream_opens_to_its_records_and_keeps_the_channel_records_to_itself() -> None:
    channel = SealedChannel()
    lines = sealed(channel, "start exec", "listener tcp inet 0.0.0.0 80 -", "alive", "settled 0.050", "ready", "end")
    assert opened(channel, lines) == [None, "listener tcp inet 0.0.0.0 80 -", None, "settled 0.050", "ready", None]
    assert channel.protection == "exec"
    assert channel.ended


def test_the_engines_words_before_the_start_are_not_records() -> None:
    channel = SealedChannel()
    assert channel.open("OCI runtime exec failed: exec failed: container is not running") is None
    assert not channel.started


@pytest.mark.parametrize(
    ("forged", "says"),
    [
        ("listener tcp inet 0.0.0.0 9999 -", "an unsealed line 'listener tcp inet 0.0.0.0 9999 -'"),
        ("ready", "an unsealed line 'ready'"),
        ("end", "an unsealed line 'end'"),
        ("some text", "an unsealed line 'some text'"),  # nothing unsealed comes once the watcher has started
        ("1 00000000000000000000000000000000 ready", "a line with a wrong seal '1 0000"),
    ],
)
def test_a_line_the_watcher_did_not_seal_is_tampering(forged: str, says: str) -> None:
    channel = SealedChannel()
    channel.open(sealed(channel, "start exec")[0])
    with pytest.raises(TamperError, match="tampered with") as caught:
        channel.open(forged)
    assert says in str(caught.value)


def test_an_unsealed_record_before_the_start_is_tampering_too() -> None:
    with pytest.raises(TamperError, match="unsealed line 'ready'"):
        SealedChannel().open("ready")


def test_a_record_sealed_with_another_key_is_tampering() -> None:
    other = SealedChannel()
    channel = SealedChannel()
    with pytest.raises(TamperError, match="wrong seal"):
        channel.open(sealed(other, "start exec")[0])


def test_a_replayed_record_is_tampering() -> None:
    channel = SealedChannel()
    lines = sealed(channel, "start exec", "listener tcp inet 0.0.0.0 80 -", "settled 0.050")
    opened(channel, lines)
    with pytest.raises(TamperError, match=r"record 1 \('listener tcp inet 0.0.0.0 80 -'\) came where record 3 was due"):
        channel.open(lines[1])


def test_a_dropped_record_is_tampering() -> None:
    channel = SealedChannel()
    lines = sealed(channel, "start exec", "listener tcp inet 0.0.0.0 80 -", "settled 0.050")
    channel.open(lines[0])
    with pytest.raises(TamperError, match=r"record 2 .* came where record 1 was due"):
        channel.open(lines[2])


def test_a_report_whose_start_was_lost_on_the_way_is_an_error_that_says_so() -> None:
    """Sealed with the cell's key, so the watcher's own: the engine lost the first lines (seen on Podman)."""
    channel = SealedChannel()
    lines = sealed(channel, "start exec", "alive", "listener tcp inet 0.0.0.0 80 -")
    with pytest.raises(TamperError, match=r"^the engine lost the start of the probe's report: its first line was "
                                          r"record 1 \('alive'\), not record 0"):
        SealedChannel(key=channel.key).open(lines[1])


def test_nothing_comes_after_the_end_record() -> None:
    channel = SealedChannel()
    lines = sealed(channel, "start exec", "end", "ready")
    opened(channel, lines[:2])
    with pytest.raises(TamperError, match="none after the end record"):
        channel.open(lines[2])


def test_a_stream_must_begin_with_its_start_record() -> None:
    channel = SealedChannel()
    with pytest.raises(TamperError, match="began with 'ready' instead of its start record"):
        channel.open(sealed(channel, "ready")[0])


def test_the_watchers_tamper_record_is_an_error_naming_it() -> None:
    channel = SealedChannel()
    lines = sealed(channel, "start exec", "tamper the watcher was sent signal 15 (Terminated)")
    channel.open(lines[0])
    with pytest.raises(TamperError, match=r"the target tampered with the probe's watcher: .*signal 15"):
        channel.open(lines[1])


def test_a_stream_cut_short_says_where() -> None:
    channel = SealedChannel()
    assert "never started its report" in channel.cut_short()
    opened(channel, sealed(channel, "start exec", "alive"))
    assert channel.cut_short() == (
        "the probe's watcher was killed: its report stopped after record 1 ('alive') without its end record"
    )


@pytest.fixture(scope="module")
def watch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc to compile probe/watch.c (apt-get install gcc libssl-dev)")
    out = tmp_path_factory.mktemp("watch") / "watch"
    done = subprocess.run([gcc, "-static", "-O2", "-o", str(out), str(WATCH_C), "-lssl", "-lcrypto"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot compile watch.c statically: {done.stderr.strip().splitlines()[-1:]}")
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"], check=False).returncode != 0:
        pytest.skip("needs unshare -rn (a user and network namespace) to run the watcher where nothing listens")
    return out


def run_watch(watch: Path, channel: SealedChannel, *, stop: signal.Signals, after: int) -> tuple[list[str], int]:
    """Run the watcher in a namespace of its own; send ``stop`` once ``after`` lines came. (lines, exit status)"""
    env = {**os.environ, KEY_VARIABLE: channel.key.hex()}
    proc = subprocess.Popen(["unshare", "-rn", str(watch), "0.05", "0.1", "tcp", "/", "2xx"], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if len(lines) == after:
                proc.send_signal(stop)  # unshare execs the watcher: this is its pid
    finally:
        code = proc.wait(10)
    return lines, code


def test_the_watcher_seals_as_the_plugin_opens_and_reports_a_signal(watch: Path) -> None:
    channel = SealedChannel()
    lines, code = run_watch(watch, channel, stop=signal.SIGTERM, after=3)
    assert lines[0].split(" ", 2)[2] == "start prctl"  # not setgid here: made non-dumpable by prctl
    assert opened(channel, lines[:3]) == [None, None, None]  # start, alive, alive
    assert len(lines) >= 4  # then the tamper record (and the end record, which is never reached)
    with pytest.raises(TamperError, match=r"sent signal 15 \(Terminated\)"):
        opened(channel, lines[3:])
    assert code == 3


def test_a_watcher_killed_leaves_no_end_record(watch: Path) -> None:
    channel = SealedChannel()
    lines, code = run_watch(watch, channel, stop=signal.SIGKILL, after=2)
    assert opened(channel, lines) == [None] * len(lines)
    assert not channel.ended
    assert code == -signal.SIGKILL


def test_the_watcher_refuses_to_run_without_its_key(watch: Path) -> None:
    done = subprocess.run([str(watch), "0.05", "0.1", "tcp", "/", "2xx"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != KEY_VARIABLE}, timeout=10, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert "IPV6COMPAT_KEY must hold the cell's key" in done.stderr


def test_the_watcher_reads_no_openssl_configuration(
    watch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configuration would be the target image's (/usr/lib/ssl/openssl.cnf, or OPENSSL_CONF): one that
    loads a provider must not reach the watcher, whose seals must stay right."""
    conf = tmp_path / "openssl.cnf"
    conf.write_text("openssl_conf = oc\n[oc]\nproviders = pv\n[pv]\nplanted = pl\n[pl]\n"
                    f"module = {tmp_path}/planted.so\nactivate = 1\n")
    channel = SealedChannel()
    monkeypatch.setenv("OPENSSL_CONF", str(conf))
    lines, _ = run_watch(watch, channel, stop=signal.SIGKILL, after=2)
    assert opened(channel, lines) == [None] * len(lines)
    assert channel.protection == "prctl"
