"""What every backend does with a target's output: split it into lines, clean them, bound them.

Pure. The verdict keeps :data:`LOG_TAIL_LINES` lines of at most :data:`LOG_LINE_CHARS`
characters, with terminal control codes removed, whatever the backend.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator

__all__ = ["LOG_LINE_CHARS", "LOG_TAIL_LINES", "clean", "lines", "split_timestamp"]

LOG_TAIL_LINES = 200  # lines of the target's output kept with a verdict
LOG_LINE_CHARS = 1000  # a longer line is cut
_MAX_PENDING = 65536  # a line this long is nobody's report
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d) ")


def lines(stream: Iterable[bytes]) -> Iterator[str]:
    """Text lines of a byte stream; a partial last line is yielded at the end."""
    pending = b""
    for chunk in stream:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace")
        if len(pending) > _MAX_PENDING:
            pending = pending[-_MAX_PENDING:]
    if pending:
        yield pending.decode("utf-8", "replace")


def clean(line: str) -> str:
    """A line fit for a report: control codes dropped, cut at :data:`LOG_LINE_CHARS`."""
    line = _CONTROL.sub("", line)
    return line if len(line) <= LOG_LINE_CHARS else line[: LOG_LINE_CHARS - 3] + "..."


def split_timestamp(row: str) -> tuple[float | None, str]:
    """(seconds since the epoch, text) of a line an engine prefixed with its RFC 3339 time."""
    found = _TIMESTAMP.match(row)
    if found is None:
        return None, row
    zone = "+00:00" if found[3] == "Z" else found[3]
    when = dt.datetime.fromisoformat(found[1] + (found[2] or "")[:7] + zone).timestamp()
    return when, row[found.end():]
