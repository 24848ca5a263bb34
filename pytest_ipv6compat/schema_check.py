"""Validate a report against its JSON Schema without the ``jsonschema`` package.

``merge`` must refuse a schema-invalid shard, and the plugin has no runtime dependency
on ``jsonschema`` (a test extra). The report schema uses a small part of draft 2020-12;
this checks exactly that part and refuses a schema that uses any other keyword, so the
schema file stays the single source of truth. The test suite checks that it agrees with
``jsonschema`` on the corrupt documents it knows. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SchemaError", "first_error"]

_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs"}
_KEYWORDS = {"type", "required", "additionalProperties", "properties", "items", "$ref", "const", "enum",
             "minimum", "maximum", "minItems", "anyOf", "if", "then", "pattern"}
_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


class SchemaError(Exception):
    """The schema uses a keyword this checker does not implement."""


def _is(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _where(path: str) -> str:
    return path or "the document"


def first_error(doc: Any, schema: Mapping[str, Any]) -> str | None:
    """The first way ``doc`` breaks ``schema`` ("at cells[0].status: 'flaky' is not one of ..."), or None."""
    return _check(doc, schema, schema, "")


def _check(value: Any, node: Mapping[str, Any], root: Mapping[str, Any], path: str) -> str | None:
    unknown = set(node) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise SchemaError(f"schema keyword(s) not supported: {', '.join(sorted(unknown))}")
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/$defs/"):
            raise SchemaError(f"$ref {ref!r} not supported")
        error = _check(value, root["$defs"][ref.removeprefix("#/$defs/")], root, path)
        if error:
            return error
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is(value, n) for n in names):
            return f"at {_where(path)}: {value!r:.60} is not of type {' or '.join(names)}"
    if "const" in node and (value != node["const"] or type(value) is not type(node["const"])):
        return f"at {_where(path)}: {value!r:.60} is not {node['const']!r}"
    if "enum" in node and not any(value == e and type(value) is type(e) for e in node["enum"]):
        return f"at {_where(path)}: {value!r:.60} is not one of {', '.join(map(repr, node['enum']))}"
    if "anyOf" in node and all(_check(value, sub, root, path) for sub in node["anyOf"]):
        return f"at {_where(path)}: {value!r:.60} matches none of the allowed forms"
    if "if" in node and _check(value, node["if"], root, path) is None and "then" in node:
        error = _check(value, node["then"], root, path)
        if error:
            return error
    if _is(value, "number"):
        if "minimum" in node and value < node["minimum"]:
            return f"at {_where(path)}: {value!r} is less than {node['minimum']}"
        if "maximum" in node and value > node["maximum"]:
            return f"at {_where(path)}: {value!r} is more than {node['maximum']}"
    if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
        return f"at {_where(path)}: {value!r:.60} does not match {node['pattern']}"
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            return f"at {_where(path)}: fewer than {node['minItems']} item(s)"
        if "items" in node:
            for n, item in enumerate(value):
                error = _check(item, node["items"], root, f"{path}[{n}]")
                if error:
                    return error
    if isinstance(value, dict):
        for key in node.get("required", ()):
            if key not in value:
                return f"at {_where(path)}: {key!r} is missing"
        properties = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, item in value.items():
            sub_path = f"{path}.{key}" if path else key
            if key in properties:
                error = _check(item, properties[key], root, sub_path)
            elif extra is False:
                error = f"at {_where(path)}: unexpected key {key!r}"
            elif isinstance(extra, dict):
                error = _check(item, extra, root, sub_path)
            else:
                error = None
            if error:
                return error
    return None
