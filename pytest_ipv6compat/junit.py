"""Complete pytest's JUnit XML file with what only the controller knows at the end of a run.

pytest's junitxml writes a test case's properties when its teardown report arrives. A
cell whose xdist worker died has no teardown: xdist reports the crash once, and junitxml
writes that test case without properties. A selected cell that never ran (the worker was
lost for good, the run was interrupted or stopped) has no test case at all. Both are
error cells in the grid and the JSON, so the file is edited in place after junitxml has
written it: the crashed cell's test case gets its ``ipv6.*`` properties, and each cell
without a result gets a test case with an ``<error>`` and its properties. Pure apart
from the one file; no pytest.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MissingCase", "case_address", "complete_junit"]

Properties = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class MissingCase:
    """A selected cell that has no test case in the file: written as an error."""

    classname: str
    name: str
    message: str
    properties: Properties


def case_address(nodeid: str, prefix: str = "") -> tuple[str, str]:
    """(classname, name) junitxml gives a matrix cell's node id (``dir/m.ipv6.toml::target[id]``)."""
    path, _, name = nodeid.partition("::")
    classname = path.replace("/", ".")
    return (f"{prefix}.{classname}" if prefix else classname), name


def _add(case: ET.Element, properties: Properties) -> None:
    props = case.find("properties")
    if props is None:
        props = ET.Element("properties")
        case.insert(0, props)
    for name, value in properties:
        ET.SubElement(props, "property", name=name, value=value)


def complete_junit(path: Path, properties: Mapping[str, Properties], missing: Sequence[MissingCase]) -> None:
    """Give each test case named in ``properties`` (``target[id]``) those properties unless it has
    ``ipv6.*`` ones already, and add a test case for each of ``missing`` (counted as an error).

    The file is left alone if it cannot be read or holds no test suite.
    """
    if not properties and not missing:
        return
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return
    root = tree.getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return
    for case in root.iter("testcase"):
        props = properties.get(case.get("name", ""))
        if props and not any(p.get("name", "").startswith("ipv6.") for p in case.iter("property")):
            _add(case, props)
    for cell in missing:
        case = ET.SubElement(suite, "testcase", classname=cell.classname, name=cell.name, time="0.000")
        _add(case, cell.properties)
        ET.SubElement(case, "error", message=cell.message).text = cell.message
    for key in ("tests", "errors"):
        suite.set(key, str(int(suite.get(key, "0")) + len(missing)))
    tree.write(path, encoding="utf-8", xml_declaration=True)
