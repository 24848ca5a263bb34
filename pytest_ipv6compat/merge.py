"""``python -m pytest_ipv6compat merge SHARD.json...``: one grid from the JSON reports of sharded CI jobs.

Pure apart from reading and writing the named files: each shard's cells are read back
with :func:`report.load_json`, checked for a cell reported twice, and rendered as one
grid (terminal, Markdown, JSON), exactly as a single run of all the cells would be.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .report import Ordering, load_json, render_json, render_markdown, render_terminal, totals
from .results import CellResult

__all__ = ["add_arguments", "merge_reports", "run"]


class MergeError(Exception):
    """A shard cannot be merged; the message names the file and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports written with --ipv6-json, one per shard")
    parser.add_argument("--markdown", type=Path, help="write the merged grid as Markdown here")
    parser.add_argument("--json", type=Path, help="write the merged report as JSON here")


def merge_reports(paths: Sequence[Path]) -> tuple[dict[str, object], list[CellResult]]:
    """(meta, results) of all shards; a cell in two shards, or a file that is not a report, is an error."""
    results: list[CellResult] = []
    seen: dict[tuple[str, str, str], Path] = {}
    metas: list[dict[str, object]] = []
    for path in paths:
        try:
            meta, cells = load_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise MergeError(f"{path}: cannot read: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise MergeError(f"{path}: not a report of this plugin: {exc}") from None
        for result in cells:
            key = (result.cell.target, result.cell.knob, result.cell.id)
            if key in seen:
                raise MergeError(f"{path}: cell {result.cell.target}[{result.cell.id}] is also in {seen[key]}")
            seen[key] = path
        metas.append(meta)
        results += cells
    meta = {"merged_from": [str(p) for p in paths], "shards": metas}
    return meta, results


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


def run(args: argparse.Namespace) -> tuple[int, str]:
    """(exit status, text to print): 0 when every cell passed, 1 when one failed or errored, 2 on bad input."""
    try:
        meta, results = merge_reports(args.reports)
        order = _declared_order(meta) or Ordering.from_cells(r.cell for r in results)
        width = shutil.get_terminal_size((120, 24)).columns
        text = "\n".join(render_terminal(results, width=width, order=order))
        markdown = render_markdown(results, order=order)
        for path, body in ((args.markdown, markdown), (args.json, render_json(results, meta=meta, order=order))):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body, encoding="utf-8")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with Path(summary).open("a", encoding="utf-8") as out:
                out.write(f"## IPv6 compatibility grid\n\n{markdown}\n")
    except MergeError as exc:
        return 2, f"error: {exc}"
    except OSError as exc:
        return 2, f"error: cannot write {exc.filename}: {exc.strerror}"
    counts = totals(results)
    return (1 if counts["fail"] or counts["error"] else 0), text

