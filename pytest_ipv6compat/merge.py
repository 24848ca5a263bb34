"""``python -m pytest_ipv6compat merge SHARD.json...``: one grid from the JSON reports of sharded CI jobs.

Pure apart from reading and writing the named files. A merge is green only when it is
the whole result: every shard validates against the report schema, is complete (not
interrupted, every selected cell has a result), ran the same version of each matrix
file (sha256), holds exactly the cells it was asked to run, and each cell's stored
status is what the plugin's judge says of its expectation and verdict, and a pass was
attested on its own stack; no cell is in two shards; each matrix file that is here (its
recorded path, from the current directory) is the version the shards ran and states the
expectations they judged by; and, unless ``--partial``, the shards' selections together
cover every cell of every matrix file they ran. Any breach is exit 2 and one line naming
the file. Green (exit 0) means every cell passed: a skipped cell is exit 1, as a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .ledger import MatrixRecord, RunRecord
from .matrix import MatrixError, judge, load_matrix
from .report import (
    SCHEMA_ID,
    SCHEMA_VERSION,
    Ordering,
    engines_meta,
    load_report,
    render_json,
    render_markdown,
    render_terminal,
    schema_path,
    totals,
)
from .results import CellResult
from .schema_check import first_error

__all__ = ["MergeError", "add_arguments", "check_cell", "check_expectations", "merge_reports", "run"]


class MergeError(Exception):
    """A shard cannot be merged; the message names the file and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports written with --ipv6-json, one per shard")
    parser.add_argument("--markdown", type=Path, help="write the merged grid as Markdown here")
    parser.add_argument("--json", type=Path, help="write the merged report as JSON here")
    parser.add_argument(
        "--partial", action="store_true",
        help="accept shards that together ran only part of each matrix (by default every cell of every matrix "
             "file the shards ran must be in one shard)",
    )


def check_cell(result: CellResult) -> str | None:
    """Why a stored status cannot be trusted, re-judged with the plugin's own judge; None when it holds."""
    cell, verdict, status = result.cell, result.verdict, result.status
    name = f"{cell.target}[{cell.id}]"
    if status not in ("pass", "fail"):
        return None
    if verdict is None:
        return f"cell {name} says {status} but has no verdict"
    reasons = judge(cell.expectation, verdict).reasons
    if status == "pass" and reasons:
        return f"cell {name} says pass, but its verdict does not meet its expectation: {'; '.join(reasons)}"
    if status == "fail" and not reasons:
        return f"cell {name} says fail, but its verdict meets its expectation"
    if status == "pass" and (result.attestation is None or not result.attestation.ok):
        return f"cell {name} says pass, but its stack was not attested"
    if status == "pass" and result.attestation is not None and result.attestation.stack != cell.stack:
        return f"cell {name} says pass, but its attestation is of stack {result.attestation.stack}, not {cell.stack}"
    return None


def check_expectations(matrices: Iterable[MatrixRecord], results: Sequence[CellResult]) -> list[str]:
    """Each matrix file the shards ran that is here (its recorded path, from the current directory) must be the
    version they ran, and state the expectation each of its cells was judged by; a :class:`MergeError` says
    where not. Returns the files that are not here, whose cells keep the expectations the shards recorded."""
    absent: list[str] = []
    by_cell = {(r.cell.target, r.cell.id): r for r in results}
    for m in matrices:
        path = Path(m.path)
        if not path.is_file():
            absent.append(m.path)
            continue
        try:
            matrix = load_matrix(path)
        except MatrixError as exc:
            raise MergeError(f"{m.path}: the matrix file here does not load: {exc}") from None
        if matrix.sha256 != m.sha256:
            raise MergeError(
                f"{m.path}: the file here has sha256 {matrix.sha256[:12]}, but the shards ran {m.sha256[:12]}: merge "
                "where the matrix is the version the shards ran"
            )
        for cell in matrix.cells:
            result = by_cell.get((cell.target, cell.id))
            if result is not None and result.cell.expectation != cell.expectation:
                raise MergeError(
                    f"{m.path}: cell {cell.target}[{cell.id}] was judged by {result.cell.expectation.source!r}, but "
                    f"the file states {cell.expectation.source!r}"
                )
    return absent


def _read(path: Path, schema: dict[str, Any]) -> tuple[dict[str, object], list[CellResult], RunRecord, object]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MergeError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise MergeError(f"{path}: not a report of this plugin: not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise MergeError(f"{path}: not a report of this plugin: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID:
        raise MergeError(f"{path}: not a report of this plugin: not a {SCHEMA_ID} v{SCHEMA_VERSION} document")
    if doc.get("version") != SCHEMA_VERSION:
        raise MergeError(
            f"{path}: report version {doc.get('version')!r} cannot be merged: only v{SCHEMA_VERSION} records "
            "which cells a shard was asked to run and its probes over the pod address; re-run the shard with this "
            "plugin"
        )
    error = first_error(doc, schema)
    if error:
        raise MergeError(f"{path}: does not match the report schema v{SCHEMA_VERSION}: {error}")
    try:
        meta, results, run = load_report(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise MergeError(f"{path}: not a report of this plugin: {exc}") from None
    assert run is not None
    return meta, results, run, doc["totals"]


def _check_shard(path: Path, results: list[CellResult], run: RunRecord, counted: object) -> None:
    if not run.complete:
        raise MergeError(f"{path}: incomplete shard ({run.incomplete or 'marked incomplete'}); re-run it")
    if counted != totals(results):
        raise MergeError(f"{path}: its totals {counted} do not count its cells {totals(results)}")
    for result in results:
        problem = check_cell(result)
        if problem:
            raise MergeError(f"{path}: {problem}")
    asked = set(run.asked())
    have = {(r.cell.target, r.cell.id) for r in results}
    for target, cell_id in sorted(have - asked):
        raise MergeError(f"{path}: cell {target}[{cell_id}] is not among the cells this shard was asked to run")
    for target, cell_id in sorted(asked - have):
        raise MergeError(f"{path}: cell {target}[{cell_id}] was asked for but has no result")
    for m in run.matrices:
        stray = [c for c in m.selected if c not in m.collected]
        if stray:
            raise MergeError(f"{path}: {m.path}: selected cell {m.target}[{stray[0]}] is not in the matrix")


def _union(path: Path, records: Iterable[MatrixRecord], merged: dict[str, tuple[Path, MatrixRecord]]) -> None:
    for m in records:
        if m.path not in merged:
            merged[m.path] = (path, MatrixRecord(m.path, m.sha256, m.target, m.collected, list(m.selected)))
            continue
        first, have = merged[m.path]
        if have.sha256 != m.sha256:
            raise MergeError(
                f"{path}: ran {m.path} with sha256 {m.sha256[:12]}, but {first} ran sha256 {have.sha256[:12]}: "
                "the shards come from different versions of the matrix"
            )
        for cell_id in m.selected:
            have.select(cell_id)


def merge_reports(
    paths: Sequence[Path], *, partial: bool = False,
) -> tuple[dict[str, object], list[CellResult], RunRecord]:
    """(meta, results, run record) of all shards; any breach of the checks above is a :class:`MergeError`."""
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    results: list[CellResult] = []
    seen: dict[tuple[str, str], Path] = {}
    metas: list[dict[str, object]] = []
    matrices: dict[str, tuple[Path, MatrixRecord]] = {}
    for path in paths:
        meta, cells, run, doc_totals = _read(path, schema)
        _check_shard(path, cells, run, doc_totals)
        for result in cells:
            key = (result.cell.target, result.cell.id)
            if key in seen:
                raise MergeError(f"{path}: cell {result.cell.target}[{result.cell.id}] is also in {seen[key]}")
            seen[key] = path
        _union(path, run.matrices, matrices)
        metas.append(meta)
        results += cells
    if not partial:
        for name, (_, m) in sorted(matrices.items()):
            left = [c for c in m.collected if c not in m.selected]
            if left:
                raise MergeError(
                    f"{name}: {len(left)} of its {len(m.collected)} cells are in no shard "
                    f"(first: {m.target}[{left[0]}]); add the shards that run them, or pass --partial"
                )
    records = tuple(m for _, m in matrices.values())
    absent = check_expectations(records, results)
    meta = {"merged_from": [str(p) for p in paths], "shards": metas, "engines": engines_meta(results)}
    if absent:
        meta["expectations_unchecked"] = absent
    return meta, results, RunRecord(True, None, records)


def _declared_order(meta: dict[str, object]) -> Ordering | None:
    """The matrices' declared order, as each shard recorded it, so the merged grid reads like one run's."""
    merged: dict[str, list[str]] = {"variants": [], "stacks": [], "settings": []}
    shards = meta.get("shards")
    for shard in shards if isinstance(shards, list) else []:
        order = shard.get("order") if isinstance(shard, dict) else None
        if not isinstance(order, dict):
            return None
        for key, names in merged.items():
            names += [n for n in order.get(key) or [] if isinstance(n, str) and n not in names]
    return Ordering(tuple(merged["variants"]), tuple(merged["stacks"]), tuple(merged["settings"]))


def _write(path: Path, source: str, text: str, *, append: bool = False) -> None:
    """Write (or append to) an output file; a failure is a :class:`MergeError` naming the flag (or the
    variable) and the file, as ``--json '/dev/full': cannot write it: No space left on device``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise MergeError(f"{source} {str(path)!r}: cannot write it: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> tuple[int, str]:
    """(exit status, text to print): 0 when every cell passed, 1 when one failed, errored or was skipped, 2 on bad
    input."""
    try:
        meta, results, record = merge_reports(args.reports, partial=getattr(args, "partial", False))
        order = _declared_order(meta) or Ordering.from_cells(r.cell for r in results)
        width = shutil.get_terminal_size((120, 24)).columns
        text = "\n".join(render_terminal(results, width=width, order=order))
        markdown = render_markdown(results, order=order)
        json_text = render_json(results, meta=meta, order=order, run=record)
        for flag, path, body in (("--markdown", args.markdown, markdown), ("--json", args.json, json_text)):
            if path is not None:
                _write(path, flag, body)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            _write(Path(summary), "GITHUB_STEP_SUMMARY", f"## IPv6 compatibility grid\n\n{markdown}\n", append=True)
    except MergeError as exc:
        return 2, f"error: {exc}"
    counts = totals(results)
    unchecked = meta.get("expectations_unchecked")
    if isinstance(unchecked, list):
        text += (f"\nexpectations as the shards recorded them, not checked against the matrix: {', '.join(unchecked)} "
                 "not in this directory (merge in the checkout the shards ran to check them)")
    return (1 if counts["fail"] or counts["error"] or counts["skipped"] else 0), text
