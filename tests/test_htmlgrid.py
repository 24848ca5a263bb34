"""The Markdown grid as HTML for pytest-html (pure: no Docker)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_completeness import KILL_ON, tiny_matrix
from test_report import order_of, small

from pytest_ipv6compat.htmlgrid import html_grid, markdown_to_html
from pytest_ipv6compat.report import render_markdown


class Tables(HTMLParser):
    """Collects every table as rows of cell texts, and checks that tags nest."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})

    def __init__(self, *, strict: bool = True) -> None:
        super().__init__()
        self.strict = strict
        self.tables: list[list[list[str]]] = []
        self.stack: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.texts.append("\n")
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.texts = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        opened = self.stack.pop()
        assert opened == tag or not self.strict, f"</{tag}> closes <{opened}>"
        if tag in ("td", "th") and self.tables:
            self.tables[-1][-1].append("".join(self.texts))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def test_markdown_grid_becomes_a_table() -> None:
    results = small()
    markdown = render_markdown(results, order=order_of(results))
    fragment = markdown_to_html(markdown)
    parser = Tables()
    parser.feed(fragment)
    parser.close()
    assert parser.stack == []
    [table] = parser.tables
    assert table[0] == ["variant", "dual-stack", "ipv6-kernel-off"]
    assert [row[0] for row in table[1:]] == ["env-toggle", "adaptive"]
    assert "<h3>cloud-proxy (knob <code>PL_IPV6_DISABLE</code>)</h3>" in fragment
    assert "<h4>Failures</h4>" in fragment
    assert "<strong>" in fragment  # failed cells stand out
    assert "\\" not in re.sub(r"<code>.*?</code>", "", fragment)  # Markdown escapes are undone


def test_text_is_escaped_once() -> None:
    fragment = markdown_to_html("| a | b |\n|---|---|\n| x \\| y | <script> \\<br\\> `a<b` |\n- **bad** `x` & y\n")
    assert "<script>" not in fragment
    assert '<th scope="row">x | y</th>' in fragment  # the first column names the row
    assert '<td class="pass">&lt;script&gt; &lt;br&gt; <code>a&lt;b</code></td>' in fragment
    assert "<ul><li><strong>bad</strong> <code>x</code> &amp; y</li></ul>" in fragment
    assert html.unescape(re.sub(r"<[^>]+>", "", fragment)).count("x | y") == 1


def test_an_incomplete_run_is_a_banner_above_the_grid_escaped() -> None:
    results = small()
    markdown = render_markdown(results, order=order_of(results))
    fragment = html_grid(markdown, "<script>alert(1)</script> & 2 of 12 cells have no result")
    banner = '<p class="incomplete" role="alert">INCOMPLETE: &lt;script&gt;alert(1)&lt;/script&gt; &amp; 2 of 12 cells'
    assert banner in fragment
    assert "<script>" not in fragment
    assert fragment.index(banner) < fragment.index("<table")  # above the grid, not after the failures
    assert fragment.count("INCOMPLETE") == 1
    assert ".ipv6compat p.incomplete {" in fragment  # styled (checked in a browser below)
    assert "INCOMPLETE" not in html_grid(markdown)


def test_pytest_html_and_the_job_summary_say_incomplete(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                        ) -> None:
    """A real run: its only worker is killed at the first cell, restarts are off, two cells never run."""
    tiny_matrix(pytester.path, "ipv6compat/absent:nope")
    pytester.makeconftest(KILL_ON.format(name="tiny[adaptive-dual-stack-PL_IPV6_DISABLE-unset]"))
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest_subprocess("-n", "1", "--max-worker-restart=0", "-p", "no:cacheprovider",
                                           "--html=report.html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    why = ("INCOMPLETE: no result reached this process (a worker may have been lost); "
           "2 of 3 selected cells have no result")
    page = (pytester.path / "report.html").read_text(encoding="utf-8")
    banners = re.findall(r'<p class="incomplete" role="alert">(.*?)</p>', html.unescape(page))
    assert banners == [why]
    parser = Tables(strict=False)  # the report's own markup is not ours to check
    parser.feed(page)
    [grid] = [t for t in parser.tables if t and t[0][:1] == ["variant"]]
    assert grid[1] == ["adaptive", "E: unset", "E: unset", "E: unset"]  # the two unrun cells are errors too
    markdown = summary.read_text(encoding="utf-8")
    assert "**3 cells: 0 passed, 0 failed, 3 errors, 0 skipped**" in markdown
    assert f"**{why}**" in markdown


# ---------------------------------------------------------------- in a real browser

_READ_BACK = """<script>
const out = [];
for (const td of document.querySelectorAll("table.ipv6compat-grid td")) {
  out.push(td.className + "=" + getComputedStyle(td).backgroundColor + "|" + td.innerText.replace(/\\n/g, "/"));
}
document.getElementById("computed").textContent = out.join("\\n");
const banner = document.querySelector("p.incomplete");
const style = getComputedStyle(banner);
document.getElementById("banner").textContent = [style.backgroundColor, style.color, style.fontWeight,
  banner.getBoundingClientRect().height > 20, banner.innerText].join("|");
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (.ci/setup installs Debian's chromium for the tests)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([binary, *flags, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip


def test_the_html_grid_is_styled_in_a_real_browser(tmp_path: Path) -> None:
    """Chromium renders the fragment pytest-html gets: each cell's colour is its status's, and a screenshot is made."""
    results = small()
    fragment = html_grid(render_markdown(results, order=order_of(results)), "the run was interrupted <Ctrl-C>")
    page = tmp_path / "grid.html"
    page.write_text(f'<!doctype html><meta charset="utf-8"><body>{fragment}<pre id="computed"></pre>'
                    f'<pre id="banner"></pre>{_READ_BACK}')
    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    computed = html.unescape(re.search(r'<pre id="computed">(.*?)</pre>', dom.stdout, re.S)[1]).splitlines()
    colours = {"pass": "rgb(227, 244, 230)", "fail": "rgb(251, 220, 217)", "error": "rgb(253, 240, 200)"}
    seen = {}
    for line in computed:
        status, rest = line.split("=", 1)
        colour, text = rest.split("|", 1)
        assert colour == colours[status], line
        seen[status] = text
    assert set(seen) == {"pass", "fail", "error"}, computed  # small() has all three
    assert "✗" in seen["fail"]
    assert "E: =false" in seen["error"]  # a cell with an error line is an error cell, whatever else it holds
    banner = html.unescape(re.search(r'<pre id="banner">(.*?)</pre>', dom.stdout, re.S)[1])
    assert banner == "rgb(179, 38, 30)|rgb(255, 255, 255)|700|true|INCOMPLETE: the run was interrupted <Ctrl-C>"
    shot = tmp_path / "grid.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=900,600", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
