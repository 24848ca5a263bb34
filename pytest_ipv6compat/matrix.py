"""Loading, validating and judging matrix files. Pure: no Docker, no pytest.

A matrix file (``*.ipv6.toml``) names a target, its variants, the knob and its
settings, the stacks, and the expected verdict of every cell. See README.md,
"Matrix files", for the format.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .listeners import parse_listener
from .model import PLAIN_NAME, Cell, Expectation, KnobSetting, Listener, Mismatch, Outcome, Verdict
from .spec import RUN_KEYS, RunSpec, SpecError, check_image, check_mount_point, check_run, parse_run_settings
from .stacks import DEFAULT_STACKS, STACKS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
CONFIG_MODES = {"expect": "rw", "expect_config_ro": "ro"}
_TARGET_KEYS = {
    "name", "build", "images", "variant_arg", "variants", "knob", "settings",
    "stacks", "env", "config_dir", "config_source", *RUN_KEYS,
}  # fmt: skip


class MatrixError(Exception):
    """A matrix file is malformed. The message names the file and the bad value."""


@dataclass(frozen=True)
class Target:
    """What a matrix starts: a build context with one build per variant, or images.

    ``knob`` is "" for a matrix without a knob (stacks only); ``run`` holds the
    target's run settings and ``variant_runs`` the settings of ``[variant.NAME]``.
    """

    name: str
    variants: tuple[str, ...]
    knob: str
    settings: tuple[KnobSetting, ...]
    stacks: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    build: Path | None = None
    variant_arg: str = "VARIANT"
    images: tuple[tuple[str, str], ...] = ()
    run: tuple[tuple[str, Any], ...] = ()  # validated run settings of [target]
    variant_runs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # ... of each [variant.NAME]
    config_dir: str | None = None
    config_source: Path | None = None
    variant_configs: tuple[tuple[str, str, Path], ...] = ()  # (variant, config_dir, config_source)

    def image_for(self, variant: str) -> str | None:
        return dict(self.images).get(variant)

    def config_for(self, variant: str) -> tuple[str, Path] | None:
        """(config_dir, config_source) of ``variant``'s read-only config cells: [variant.NAME], else [target]."""
        for name, config_dir, source in self.variant_configs:
            if name == variant:
                return config_dir, source
        if self.config_dir is not None and self.config_source is not None:
            return self.config_dir, self.config_source
        return None

    def run_for(self, variant: str, base: RunSpec | None = None) -> RunSpec:
        """``base`` (defaults and options) with the settings of [target], then of [variant.NAME]."""
        spec = (base or RunSpec()).updated(dict(self.run))
        return spec.updated(dict(dict(self.variant_runs).get(variant, ())))


@dataclass(frozen=True)
class Matrix:
    path: Path
    target: Target
    cells: tuple[Cell, ...]
    sha256: str = ""  # of the file's bytes, so reports can say which version of the matrix they ran


def parse_expectation(text: str) -> Expectation:
    """Parse ``up L...``, ``exited [CODE] ['error text']`` or ``timeout``.

    A listener (see :mod:`.listeners` for the syntax) written ``[::]:80/silent``
    must listen but must NOT succeed on any family it serves whose loopback exists
    (e.g. ``[::]`` on a host without ``::1``). Written ``0.0.0.0:80/pod``, it must also
    answer over the cell's pod address, of every family it serves that the stack has
    one of (as a peer would reach it; a listener of no such family fails).
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"expectation {text!r}: {exc}") from None
    if not words:
        raise ValueError("expectation is empty")
    head, rest = words[0], words[1:]
    if head == Outcome.UP.value:
        listeners: set[Listener] = set()
        silent: set[Listener] = set()
        pod: set[Listener] = set()
        for word in rest:
            spec, flag = word, ""
            for suffix in ("/silent", "/pod"):
                if word.endswith(suffix):
                    spec, flag = word[: -len(suffix)], suffix[1:]
            try:
                listener = parse_listener(spec)
            except ValueError as exc:
                hint = " (suffixes: /silent, /pod)" if "/" in spec else ""  # e.g. a misspelt suffix
                raise ValueError(f"expectation {text!r}: {exc}{hint}") from None
            listeners.add(listener)
            if flag == "silent":
                silent.add(listener)
            elif flag == "pod":
                pod.add(listener)
        if not listeners:
            raise ValueError(f"expectation {text!r}: 'up' needs at least one listener")
        return Expectation(Outcome.UP, frozenset(listeners), frozenset(silent), pod=frozenset(pod), source=text)
    if head == Outcome.EXITED.value:
        code: int | None = None
        if rest and re.fullmatch(r"\d+", rest[0]):
            code = int(rest.pop(0))
            if code > 255:
                raise ValueError(f"expectation {text!r}: exit code {code} is not 0-255")
        if len(rest) > 1:
            raise ValueError(f"expectation {text!r}: quote the error text as one string")
        return Expectation(Outcome.EXITED, exit_code=code, error_contains=rest[0] if rest else None, source=text)
    if head == Outcome.TIMEOUT.value and not rest:
        return Expectation(Outcome.TIMEOUT, source=text)
    raise ValueError(f"expectation {text!r} must start with 'up', 'exited' or 'timeout'")


def judge(expected: Expectation, verdict: Verdict) -> Mismatch:
    """Compare a verdict with an expectation; the reasons say what differs."""
    reasons: list[str] = []
    if verdict.outcome is not expected.outcome:
        seen = {
            Outcome.UP: "is up",
            Outcome.EXITED: f"exited with code {verdict.exit_code}",
            Outcome.TIMEOUT: "timed out",
        }[verdict.outcome]
        if verdict.outcome is Outcome.EXITED and verdict.listened:
            seen += f" after it had listened on {', '.join(map(str, sorted(verdict.listened)))}"
        reasons.append(f"expected {expected.outcome}, but the target {seen}")
        return Mismatch(tuple(reasons + _hold_reasons(verdict)))
    if expected.outcome is Outcome.UP:
        missing = expected.listeners - verdict.listeners
        extra = verdict.listeners - expected.listeners
        if missing:
            reasons.append("missing listeners: " + ", ".join(map(str, sorted(missing))))
            if {x.port for x in missing} - {x.port for x in verdict.listeners}:  # not another form of a port seen
                reasons.append(
                    "a port that no listener had when the hold window ended: one the target opens more than"
                    " hold seconds after its previous listener change needs a longer hold"
                    " (run setting hold, --ipv6-hold)"
                )
        if extra:
            reasons.append("unexpected listeners: " + ", ".join(map(str, sorted(extra))))
        for listener in sorted(expected.listeners & verdict.listeners):
            answered = verdict.judged_answer(listener)
            want = listener not in expected.silent
            if answered is None:
                if not want:
                    reasons.append(f"{listener} was not probed, so /silent cannot be checked")
            elif answered != want:
                what = "answered" if answered else "did not answer"
                how = ""
                if verdict.beyond_loopback(listener):  # bound where no loopback reaches: a peer's view decides
                    how = f" over the pod address (no loopback reaches it; {_pod_probes(verdict, listener)})"
                reasons.append(f"{listener} {what}{how}, expected it {'to' if want else 'not to'}")
        if verdict.unsteady is not None and not reasons:
            # "up" claims the named set stood for the hold window; this one never stood that long
            reasons.append("the listener set never stood unchanged for the hold window, so up is not proven")
        for listener in sorted(expected.pod & verdict.listeners):
            over_pod = verdict.pod_answered(listener)
            if over_pod is None:
                reasons.append(f"{listener} was not probed over a pod address (the stack has none, or probe none), "
                               "so /pod cannot be checked")
            elif not over_pod and not verdict.beyond_loopback(listener):  # else said above, judged the same way
                reasons.append(f"{listener} did not answer over the pod address, expected it to "
                               f"(/pod; {_pod_probes(verdict, listener)})")
    elif expected.outcome is Outcome.EXITED:
        if expected.exit_code is not None and verdict.exit_code != expected.exit_code:
            reasons.append(f"expected exit code {expected.exit_code}, got {verdict.exit_code}")
        if expected.exit_code is None and verdict.exit_code == 0:
            reasons.append("expected a non-zero exit code, got 0")
        if expected.error_contains and expected.error_contains not in verdict.logs:
            reasons.append(f"logs do not contain {expected.error_contains!r}")
    return Mismatch(tuple(reasons + _hold_reasons(verdict)) if reasons else ())


def _pod_probes(verdict: Verdict, listener: Listener) -> str:
    """What each probe of ``listener`` over the pod address saw: ``inet: accepted, HTTP/1.1 404 Not Found``."""
    return "; ".join(f"{r.via}: {r.result}, {r.detail}" for r in verdict.pod_reach if r.listener == listener)


def _hold_reasons(verdict: Verdict) -> list[str]:
    """What the hold window saw that explains a mismatch: the changes of the listener set, and
    whether it was still changing at the end (naming the settings that give it more time)."""
    return [text for text in (verdict.change_text(), verdict.unsteady_text()) if text]


def _where(path: Path, *keys: str) -> str:
    """``FILE: [expect.a.dual-stack]``; a key a terminal would not show as written is shown escaped."""
    shown = (key if key.isprintable() else repr(key) for key in keys)
    return f"{path}: [{'.'.join(shown)}]" if keys else str(path)


def _plain_names(names: tuple[str, ...], path: Path, key: str) -> tuple[str, ...]:
    """Names that become parts of test ids, grid rows and Markdown: letters, digits, '_', '.', '-'."""
    for name in names:
        if not PLAIN_NAME.match(name):
            raise MatrixError(
                f"{_where(path, 'target', key)}: {name!r} is not a plain name (letters, digits, '_', '.', '-', "
                "starting with a letter or digit): it becomes part of test ids, the grid and Markdown"
            )
    return names


def _str_list(value: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise MatrixError(f"{_where(path, 'target', key)} must be a non-empty list of strings, got {value!r}")
    dupes = sorted({v for v in value if value.count(v) > 1})
    if dupes:
        raise MatrixError(f"{_where(path, 'target', key)} lists {', '.join(map(repr, dupes))} twice")
    return tuple(value)


def _load_target(raw: Mapping[str, Any], variant_tables: Any, path: Path) -> Target:
    unknown = sorted(set(raw) - _TARGET_KEYS)
    if unknown:
        raise MatrixError(f"{_where(path, 'target')} has unknown key(s): {', '.join(unknown)}")
    for key in ("name", "variants"):
        if key not in raw:
            raise MatrixError(f"{_where(path, 'target')} is missing the key {key!r}")
    name = raw["name"]
    if not isinstance(name, str) or not PLAIN_NAME.match(name):
        raise MatrixError(f"{_where(path, 'target', 'name')}: {name!r} is not a plain name")
    knob = raw.get("knob", "")
    if ("settings" in raw) != ("knob" in raw):
        raise MatrixError(f"{_where(path, 'target')}: 'knob' and 'settings' go together (or leave both out)")
    if "knob" in raw and (not isinstance(knob, str) or not ENV_NAME.match(knob)):
        raise MatrixError(f"{_where(path, 'target', 'knob')}: {knob!r} is not a valid environment variable name")
    variants = _plain_names(_str_list(raw["variants"], path, "variants"), path, "variants")
    settings: list[KnobSetting] = []
    for label in _str_list(raw["settings"], path, "settings") if knob else ("unset",):
        try:
            setting = KnobSetting.from_label(label)
        except ValueError as exc:
            raise MatrixError(f"{_where(path, 'target', 'settings')}: {exc}") from None
        if setting in settings:
            same = settings[settings.index(setting)].label
            raise MatrixError(f"{_where(path, 'target', 'settings')}: {label!r} is the same setting as {same!r}")
        settings.append(setting)
    stacks = _str_list(raw.get("stacks", list(DEFAULT_STACKS)), path, "stacks")
    for stack in stacks:
        if stack not in STACKS:
            raise MatrixError(
                f"{_where(path, 'target', 'stacks')}: unknown stack {stack!r} (known: {', '.join(STACKS)})"
            )
    env = raw.get("env", {})
    if not isinstance(env, dict):
        raise MatrixError(f'{_where(path, "target", "env")} must be a table of NAME = "value"')
    for key, value in env.items():
        if not ENV_NAME.match(key):
            raise MatrixError(f"{_where(path, 'target', 'env')}: {key!r} is not a valid environment variable name")
        if not isinstance(value, str) or "\0" in value:
            raise MatrixError(f"{_where(path, 'target', 'env', key)} must be a string without NUL, got {value!r}")
    if knob and knob in env:
        raise MatrixError(f"{_where(path, 'target', 'env')} sets the knob {knob!r}; settings control it")
    build = raw.get("build")
    images = raw.get("images", {})
    if (build is None) == (not images):
        raise MatrixError(f"{_where(path, 'target')} needs exactly one of 'build' (a directory) or 'images'")
    build_path: Path | None = None
    if build is not None:
        if not isinstance(build, str):
            raise MatrixError(f"{_where(path, 'target', 'build')} must be a path string")
        build_path = (path.parent / build).resolve()
    elif not isinstance(images, dict) or set(images) != set(variants) or not all(
        isinstance(v, str) and v for v in images.values()
    ):
        raise MatrixError(
            f"{_where(path, 'target', 'images')} must map every variant ({', '.join(variants)}) to an image name"
        )
    for variant, image in images.items():
        try:
            check_image(image, f"{_where(path, 'target', 'images')}: {variant}")
        except SpecError as exc:
            raise MatrixError(str(exc)) from None
    config = _config(raw, path, "target")
    try:
        given = {k: v for k, v in raw.items() if k in RUN_KEYS}
        run = parse_run_settings(given, _where(path, "target"), base=path.parent)
    except SpecError as exc:
        raise MatrixError(str(exc)) from None
    variant_runs = []
    variant_configs: list[tuple[str, str, Path]] = []
    if variant_tables is not None:
        if not isinstance(variant_tables, dict):
            raise MatrixError(f"{_where(path, 'variant')} must be a table of [variant.NAME] tables")
        for variant, table in variant_tables.items():
            where = _where(path, "variant", variant)
            if variant not in variants:
                raise MatrixError(f"{where}: unknown variant {variant!r} (declared: {', '.join(variants)})")
            if not isinstance(table, dict):
                raise MatrixError(f"{where} must be a table of run settings")
            variant_config = _config(table, path, "variant", variant)
            if variant_config is not None:
                variant_configs.append((variant, *variant_config))
            try:
                given_here = {k: v for k, v in table.items() if k not in _CONFIG_KEYS}
                variant_runs.append((variant, tuple(parse_run_settings(given_here, where, base=path.parent).items())))
            except SpecError as exc:
                raise MatrixError(str(exc)) from None
    target = Target(
        name=name,
        variants=variants,
        knob=knob,
        settings=tuple(settings),
        stacks=stacks,
        env=tuple(sorted(env.items())),
        build=build_path,
        variant_arg=str(raw.get("variant_arg", "VARIANT")),
        images=tuple(sorted(images.items())),
        run=tuple(run.items()),
        variant_runs=tuple(variant_runs),
        config_dir=config[0] if config else None,
        config_source=config[1] if config else None,
        variant_configs=tuple(variant_configs),
    )
    check_target_settle(target, path)
    return target


def setting_source(target: Target, path: Path, variant: str, key: str) -> str:
    """The table of ``path`` that gave ``variant`` its run setting ``key``: [variant.NAME] or [target]."""
    if key in dict(dict(target.variant_runs).get(variant, ())):
        return _where(path, "variant", variant)
    return _where(path, "target")


def check_target_settle(target: Target, path: Path, base: RunSpec | None = None, why: str = "") -> None:
    """``settle < timeout``, and no path mounted twice, for every variant, as [target] and
    [variant.NAME] combine over ``base``.

    The message names the table that set the later of the two (``why`` says what ``base`` holds).
    """
    variant_runs = dict(target.variant_runs)
    for variant in target.variants:
        own = dict(variant_runs.get(variant, ()))
        keys = {"settle", "timeout", "tmpfs", "mounts"}
        table = _where(path, "variant", variant) if keys & set(own) else _where(path, "target")
        config = target.config_for(variant)
        try:
            check_run(target.run_for(variant, base), table, config[0] if config else None)
        except SpecError as exc:
            raise MatrixError(str(exc) + why) from None


_CONFIG_KEYS = ("config_dir", "config_source")


def _config(raw: Mapping[str, Any], path: Path, *table: str) -> tuple[str, Path] | None:
    """The (config_dir, config_source) pair of a [target] or [variant.NAME] table, if it has one."""
    config_dir = raw.get("config_dir")
    config_source = raw.get("config_source")
    if (config_dir is None) != (config_source is None):
        raise MatrixError(f"{_where(path, *table)}: 'config_dir' and 'config_source' go together")
    if config_dir is None or config_source is None:
        return None
    if not isinstance(config_dir, str) or not config_dir.startswith("/"):
        raise MatrixError(f"{_where(path, *table, 'config_dir')}: {config_dir!r} is not an absolute path")
    try:
        config_dir = check_mount_point("config_dir", config_dir, _where(path, *table))
    except SpecError as exc:
        raise MatrixError(str(exc)) from None
    if not isinstance(config_source, str) or not config_source:
        raise MatrixError(f"{_where(path, *table, 'config_source')} must be a path string, got {config_source!r}")
    source_path = (path.parent / config_source).resolve()
    if not source_path.is_dir():
        raise MatrixError(f"{_where(path, *table, 'config_source')}: {str(source_path)!r} is not a directory")
    return config_dir, source_path


def _expectation(text: Any, where: str, outcomes: Mapping[str, str]) -> Expectation:
    if not isinstance(text, str):
        raise MatrixError(f"{where} must be a string, got {text!r}")
    try:
        return parse_expectation(outcomes.get(text, text))
    except ValueError as exc:
        if text.split(" ", 1)[0] not in ("up", "exited", "timeout"):
            named = ", ".join(outcomes) or "none"
            why = f"{text!r} is neither an expectation nor a named outcome (named: {named})"
            raise MatrixError(f"{where}: {why}") from None
        raise MatrixError(f"{where}: {exc}") from None


def _cells(
    raw: Mapping[str, Any], section: str, target: Target, outcomes: Mapping[str, str], path: Path
) -> Iterable[Cell]:
    mode = CONFIG_MODES[section]
    if not isinstance(raw, dict):
        raise MatrixError(f"{_where(path, section)} must be a table")
    for variant, by_stack in raw.items():
        if variant not in target.variants:
            declared = ", ".join(target.variants)
            raise MatrixError(f"{_where(path, section, variant)}: unknown variant {variant!r} (declared: {declared})")
        if not isinstance(by_stack, dict):
            raise MatrixError(f"{_where(path, section, variant)} must be a table of stacks")
        for stack, by_setting in by_stack.items():
            if stack not in target.stacks:
                declared = ", ".join(target.stacks)
                where = _where(path, section, variant, stack)
                raise MatrixError(f"{where}: unknown stack {stack!r} (declared: {declared})")
            if not target.knob:  # no knob: one expectation per stack
                where = _where(path, section, variant, stack)
                expectation = _expectation(by_setting, where, outcomes)
                yield Cell(target.name, variant, stack, "", target.settings[0], expectation, mode, where)
                continue
            if not isinstance(by_setting, dict):
                raise MatrixError(f"{_where(path, section, variant, stack)} must be a table of knob settings")
            labels = [s.label for s in target.settings]
            for label in by_setting:
                if label not in labels:
                    where = _where(path, section, variant, stack)
                    raise MatrixError(f"{where}: unknown knob setting {label!r} (declared: {', '.join(labels)})")
            for setting in target.settings:
                where = _where(path, section, variant, stack, setting.label)
                if setting.label not in by_setting:
                    raise MatrixError(f"{where}: no expectation for this cell (pytest --ipv6-record can fill it in)")
                expectation = _expectation(by_setting[setting.label], where, outcomes)
                yield Cell(target.name, variant, stack, target.knob, setting, expectation, mode, where)


PLACEHOLDER = "timeout"  # what init writes in every cell, and a recording run assumes where a file says nothing


def fill_placeholders(
    expect: MutableMapping[str, Any], target: Target, new_table: Callable[[bool], MutableMapping[str, Any]]
) -> None:
    """Give every cell of ``target`` that ``expect`` (an ``[expect]`` table) lacks the placeholder.

    ``new_table(only_tables)`` makes a missing table (a dict, or a tomlkit table that is a
    super-table when it will hold only tables). Entries of the wrong type are left for the
    loader to report.
    """
    for variant in target.variants:
        by_stack = expect.setdefault(variant, new_table(True))
        if not isinstance(by_stack, MutableMapping):
            continue
        for stack in target.stacks:
            if not target.knob:
                by_stack.setdefault(stack, PLACEHOLDER)
                continue
            by_setting = by_stack.setdefault(stack, new_table(False))
            if isinstance(by_setting, MutableMapping):
                for setting in target.settings:
                    by_setting.setdefault(setting.label, PLACEHOLDER)


def load_matrix(path: Path, *, placeholders: bool = False) -> Matrix:
    """Load and validate a matrix file; every problem is a :class:`MatrixError`.

    With ``placeholders`` (a recording run), a cell the ``[expect]`` table does not
    mention, or the whole table, expects :data:`PLACEHOLDER`, so a file with only a
    ``[target]`` can be recorded.
    """
    try:
        data_bytes = path.read_bytes()
        text = data_bytes.decode("utf-8")
    except OSError as exc:
        raise MatrixError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 1]
        raise MatrixError(f"{path}: not UTF-8 text (byte {exc.start}: {bad!r})") from None
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"target", "variant", "outcomes", *CONFIG_MODES})
    if unknown:
        raise MatrixError(f"{path}: unknown top-level key(s): {', '.join(unknown)}")
    if "target" not in data:
        raise MatrixError(f"{path}: missing the [target] table")
    if "expect" not in data and not placeholders:
        raise MatrixError(f"{path}: missing the [expect] table (pytest --ipv6-record can fill it in)")
    if not isinstance(data["target"], dict):
        raise MatrixError(f"{path}: [target] must be a table")
    target = _load_target(data["target"], data.get("variant"), path)
    if placeholders and isinstance(data.setdefault("expect", {}), dict):
        fill_placeholders(data["expect"], target, lambda only_tables: {})
    outcomes = data.get("outcomes", {})
    if not isinstance(outcomes, dict) or not all(isinstance(v, str) for v in outcomes.values()):
        raise MatrixError(f"{_where(path, 'outcomes')} must map names to expectation strings")
    for name, text in outcomes.items():
        if not PLAIN_NAME.match(name):
            raise MatrixError(
                f"{_where(path, 'outcomes')}: {name!r} is not a plain name (letters, digits, '_', '.', '-')"
            )
        try:
            parse_expectation(text)
        except ValueError as exc:
            raise MatrixError(f"{_where(path, 'outcomes', name)}: {exc}") from None
    cells: list[Cell] = []
    for section in CONFIG_MODES:
        if section in data:
            cells.extend(_cells(data[section], section, target, outcomes, path))
    for variant in sorted({c.variant for c in cells if c.config_mode == "ro"}):
        if target.config_for(variant) is None:
            raise MatrixError(
                f"{_where(path, 'expect_config_ro', variant)} needs config_dir and config_source "
                f"in [target] or [variant.{variant}]"
            )
    rw = {(c.variant, c.stack) for c in cells if c.config_mode == "rw"}
    for variant in target.variants:
        for stack in target.stacks:
            if (variant, stack) not in rw:
                raise MatrixError(
                    f"{_where(path, 'expect', variant, stack)}: no expectations for this variant and stack"
                    " (pytest --ipv6-record can fill them in)"
                )
    return Matrix(path=path, target=target, cells=tuple(cells), sha256=hashlib.sha256(data_bytes).hexdigest())


def claim_target_name(matrix: Matrix, claimed: MutableMapping[str, Path]) -> None:
    """Record ``matrix``'s target name in ``claimed`` (name -> file) for one session; a name another
    file already holds is a :class:`MatrixError` naming both files (cell ids and reports are keyed by it)."""
    name = matrix.target.name
    first = claimed.setdefault(name, matrix.path)
    if first != matrix.path:
        raise MatrixError(
            f"{_where(matrix.path, 'target', 'name')}: {name!r} is also the target name in {first}; give each "
            "matrix file its own target name (test ids and reports name cells by it)"
        )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_matrix(path: Path, text: str, *, overwrite: bool) -> None:
    """Write ``text`` to ``path`` only if it loads as a matrix (else :class:`MatrixError`, naming ``path``).

    The text is written beside ``path`` first and moved in whole. With ``overwrite`` it
    replaces the file (keeping its mode); without, a file that exists by then raises
    :class:`FileExistsError` and is left as it was.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        try:
            load_matrix(tmp)
        except MatrixError as exc:
            raise MatrixError(str(exc).replace(str(tmp), str(path))) from None
        if overwrite:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
            os.replace(tmp, path)
        else:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a new file gets the usual mode
            os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite
    finally:
        tmp.unlink(missing_ok=True)
