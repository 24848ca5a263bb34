"""The grid where users already look: pytest-html's report and GitHub's job summary.

Both take :func:`~.report.render_markdown`'s grid: GitHub renders the Markdown
itself (appended to ``$GITHUB_STEP_SUMMARY`` at session end), and pytest-html
gets it as HTML through its ``pytest_html_results_summary`` hook, converted by
:func:`markdown_to_html`, which knows exactly the Markdown that report.py writes
(headings, pipe tables, lists, ``**bold**``, `` `code` ``, backslash escapes, ``<br>``).
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .report import incomplete_line, render_markdown

if TYPE_CHECKING:
    from .summary import Results

__all__ = ["STYLE", "GridPublisher", "html_grid", "markdown_to_html"]

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _inline(text: str) -> str:
    """One line of report.py's Markdown as HTML; everything else is escaped."""
    out: list[str] = []
    strong = False
    i = 0
    while i < len(text):
        if text.startswith("<br>", i):
            out.append("<br>")
            i += 4
        elif text[i] == "\\" and i + 1 < len(text):
            out.append(html.escape(text[i + 1]))
            i += 2
        elif text.startswith("**", i):
            out.append("</strong>" if strong else "<strong>")
            strong = not strong
            i += 2
        elif text[i] == "`" and "`" in text[i + 1 :]:
            end = text.index("`", i + 1)
            out.append(f"<code>{html.escape(text[i + 1 : end])}</code>")
            i = end + 1
        else:
            out.append(html.escape(text[i]))
            i += 1
    if strong:
        out.append("</strong>")
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in _CELL_SPLIT.split(line.strip())[1:-1]]


def _status(cell: str) -> str:
    """The class of a grid cell, by the marks report.py writes: the worst of its lines wins."""
    lines = cell.replace("**", "").split("<br>")  # marks are bold in the Markdown
    if any("✗" in line for line in lines):
        return "fail"
    if any(line.startswith("E") and line[1:2] in (":", " ") for line in lines):
        return "error"
    if cell == "-":
        return "none"
    if all(line.startswith("skip") for line in lines):
        return "skip"
    return "pass"


def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    out = ['<table class="ipv6compat-grid"><thead><tr>']
    out += [f"<th>{_inline(c)}</th>" for c in head]
    out.append("</tr></thead><tbody>")
    for row in body:
        first, *cells = row
        out.append(f'<tr><th scope="row">{_inline(first)}</th>')
        out += [f'<td class="{_status(c)}">{_inline(c)}</td>' for c in cells]
        out.append("</tr>")
    return "".join(out) + "</tbody></table>"


# Scoped to the grid's own <div>, so it styles nothing else of a report it is put into.
STYLE = """<style>
.ipv6compat table.ipv6compat-grid { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
.ipv6compat table.ipv6compat-grid th, .ipv6compat table.ipv6compat-grid td {
  border: 1px solid #b0b6bc; padding: 4px 8px; vertical-align: top; text-align: left; white-space: nowrap;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.ipv6compat table.ipv6compat-grid thead th { background: #dde3ea; }
.ipv6compat table.ipv6compat-grid tbody th { background: #f1f3f5; font-weight: 600; }
.ipv6compat td.pass { background: #e3f4e6; }
.ipv6compat td.fail { background: #fbdcd9; color: #8a1c12; font-weight: 600; }
.ipv6compat td.error { background: #fdf0c8; color: #6b4e00; }
.ipv6compat td.skip, .ipv6compat td.none { background: #eeeff1; color: #5f6368; }
.ipv6compat p.legend { color: #3c4043; }
.ipv6compat p.incomplete { background: #b3261e; color: #ffffff; border: 3px solid #5c0f08; padding: 8px 12px;
  margin: 0.5em 0 1em; font-size: 16px; font-weight: 700; }
</style>"""


def markdown_to_html(markdown: str) -> str:
    """report.py's Markdown grid as an HTML fragment (tables have class ``ipv6compat-grid``)."""
    out: list[str] = []
    table: list[list[str]] = []
    items = ""  # the list being built
    depth = 0  # its open <ul> levels

    def flush(keep_table: bool = False, keep_list: bool = False) -> None:
        nonlocal table, items, depth
        if table and not keep_table:
            out.append(_table(table))
            table = []
        if depth and not keep_list:
            out.append(items + "</li></ul>" * depth)
            items, depth = "", 0

    for line in markdown.splitlines():
        item = re.match(r"( *)- (.*)", line)
        if line.startswith("|"):
            flush(keep_table=True)
            if not re.fullmatch(r"(\|-+)+\|", line.strip()):
                table.append(_cells(line))
        elif item is not None:
            flush(keep_list=True)
            level = len(item[1]) // 2 + 1
            if level > depth:
                items += "<ul><li>" * (level - depth)
            else:
                items += "</li></ul>" * (depth - level) + "</li><li>"
            depth = level
            items += _inline(item[2])
        else:
            flush()
            heading = re.match(r"(#{1,6}) (.*)", line)
            if heading is not None:
                n = len(heading[1])
                out.append(f"<h{n}>{_inline(heading[2])}</h{n}>")
            elif line.startswith("legend: "):
                out.append(f'<p class="legend">{_inline(line)}</p>')
            elif line.strip():
                out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def html_grid(markdown: str, incomplete: str | None = None) -> str:
    """The grid as a styled HTML fragment: a table per target, cells coloured by status, the legend.

    ``incomplete`` (why the run does not account for every selected cell) is a banner
    under the heading, above the grid, in white on red: ``INCOMPLETE: <reason>``, escaped.
    """
    banner = (f'<p class="incomplete" role="alert">{html.escape(incomplete_line(incomplete))}</p>\n'
              if incomplete else "")
    return (f'<div class="ipv6compat">{STYLE}<h2>IPv6 compatibility grid</h2>\n{banner}'
            f"{markdown_to_html(markdown)}\n</div>")


class GridPublisher:
    """Adds the grid to pytest-html's report and to ``$GITHUB_STEP_SUMMARY`` (controller only)."""

    def __init__(self, config: pytest.Config, results: Results) -> None:
        self.config = config
        self.results = results
        self.problem: str | None = None

    def _markdown(self, incomplete: str | None = None) -> str | None:
        if hasattr(self.config, "workerinput") or not self.results.results:
            return None
        return render_markdown(self.results.results, order=self.results.ordering(), incomplete=incomplete)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        # pytest-html calls this from its trylast pytest_sessionfinish: Results.account has run
        markdown = self._markdown()
        if markdown is not None:
            postfix.append(html_grid(markdown, self.results.incomplete))

    @pytest.hookimpl(trylast=True)  # after Results.account: cells without a result, and whether the run is complete
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        target = os.environ.get("GITHUB_STEP_SUMMARY", "")
        markdown = self._markdown(self.results.incomplete) if target else None
        if markdown is None:
            return
        try:
            with Path(target).open("a", encoding="utf-8") as out:
                out.write(f"## IPv6 compatibility grid\n\n{markdown}\n")
        except OSError as exc:
            self.problem = f"GITHUB_STEP_SUMMARY={target!r}: cannot append the grid: {exc.strerror}"

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.problem:
            terminalreporter.write_line(f"ipv6compat: {self.problem}", yellow=True)
