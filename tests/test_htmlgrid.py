"""The Markdown grid as HTML for pytest-html (pure: no Docker)."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from test_report import order_of, small

from pytest_ipv6compat.htmlgrid import markdown_to_html
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
    assert "<td>x | y</td>" in fragment
    assert "<td>&lt;script&gt; &lt;br&gt; <code>a&lt;b</code></td>" in fragment
    assert "<ul><li><strong>bad</strong> <code>x</code> &amp; y</li></ul>" in fragment
    assert html.unescape(re.sub(r"<[^>]+>", "", fragment)).count("x | y") == 1
