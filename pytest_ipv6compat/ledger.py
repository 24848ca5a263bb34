"""What a run was asked to run: the record that makes a report complete or say it is not.

Each report carries, per matrix file, the file's path (as in pytest node ids), the
sha256 of its bytes, every cell id the file holds (``collected``, before any
selection) and the ids this run was asked to run (``selected``: after ``-k``,
``--ipv6-*`` filters and deselection). ``complete`` says whether every selected cell has
a result and the run was not interrupted. ``merge`` checks shards against these records.
Pure: no pytest, no Docker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .matrix import Matrix

__all__ = ["MatrixRecord", "RunRecord"]


@dataclass
class MatrixRecord:
    """One matrix file as a run saw it."""

    path: str  # relative to the rootdir, as in node ids
    sha256: str
    target: str
    collected: tuple[str, ...]  # every cell id of the file, in file order
    selected: list[str] = field(default_factory=list)  # the ids this run was asked to run

    @classmethod
    def of(cls, path: str, matrix: Matrix) -> MatrixRecord:
        return cls(path, matrix.sha256, matrix.target.name, tuple(c.id for c in matrix.cells))

    def select(self, cell_id: str) -> None:
        if cell_id not in self.selected:
            self.selected.append(cell_id)

    def to_dict(self) -> dict[str, Any]:
        order = {cell_id: n for n, cell_id in enumerate(self.collected)}
        selected = sorted(self.selected, key=lambda c: (order.get(c, len(order)), c))
        return {"path": self.path, "sha256": self.sha256, "target": self.target,
                "collected": list(self.collected), "selected": selected}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MatrixRecord:
        return cls(d["path"], d["sha256"], d["target"], tuple(d["collected"]), list(d["selected"]))


@dataclass
class RunRecord:
    """Whether a run (or a merge) accounts for every cell it was asked to run, and which those were."""

    complete: bool
    incomplete: str | None  # why not, in one line; None when complete
    matrices: tuple[MatrixRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "incomplete": self.incomplete,
                "matrices": [m.to_dict() for m in sorted(self.matrices, key=lambda m: m.path)]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        return cls(d["complete"], d["incomplete"], tuple(MatrixRecord.from_dict(m) for m in d["matrices"]))

    @classmethod
    def unrecorded(cls) -> RunRecord:
        """For reports rendered without a run (e.g. from a list of results): they claim no cell."""
        return cls(True, None, ())

    def asked(self) -> Iterable[tuple[str, str]]:
        """(target, cell id) of every selected cell."""
        for m in self.matrices:
            for cell_id in m.selected:
                yield m.target, cell_id
