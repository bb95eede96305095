"""Build a small, valid instance of a JSON schema, for structured output and tool arguments.

It covers what Pydantic, the SDKs' strict-mode converters and the frameworks emit: objects
with their required properties, strings (with ``format`` and length bounds), numbers and
integers within their bounds, booleans, null, arrays (``items``, ``prefixItems``, item
counts), ``const``, ``enum``, ``anyOf`` / ``oneOf`` / ``allOf`` and ``$ref`` into ``$defs`` or
``definitions``. The same schema always gives the same instance.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["instance_of"]

# Deep enough for any model a test defines; past it, recursive schemas take their shortest
# branch (null, no items) so that a self-referencing model still ends.
_MAX_DEPTH = 6
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def instance_of(schema: Any) -> Any:
    """Return a minimal JSON value valid against ``schema`` (a dict, or ``True`` for any)."""
    return _Builder(schema).build(schema, "value", 0)


class _Builder:
    """Walk one schema, resolving local ``$ref`` pointers against its root."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def resolve(self, ref: str) -> Any:
        """Return the schema a local ``#/...`` pointer names (any schema if it names none)."""
        node = self.root
        for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return {}
            node = node[part]
        return node

    def build(self, schema: Any, name: str, depth: int) -> Any:
        """Return an instance of ``schema``; ``name`` (the property's) seeds string values."""
        if not isinstance(schema, dict):
            return name  # ``true`` or a malformed schema: anything goes, a string will do
        if isinstance(schema.get("$ref"), str):
            target = self.resolve(schema["$ref"])
            siblings = {key: value for key, value in schema.items() if key != "$ref"}
            schema = (target if isinstance(target, dict) else {}) | siblings
            depth += 1
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for keyword in ("anyOf", "oneOf"):
            options = [o for o in schema.get(keyword) or [] if isinstance(o, dict)]
            if options:
                return self.build(self.pick(options, depth), name, depth + 1)
        if isinstance(schema.get("allOf"), list):
            return self.build(self.merge(schema), name, depth + 1)
        kind = self.kind(schema, depth)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, name, depth)
        if kind in ("number", "integer"):
            return _number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return _string(schema, name)

    def pick(self, options: list[dict[str, Any]], depth: int) -> dict[str, Any]:
        """Choose a union member: the first that is not null, or null once too deep."""
        nulls = [o for o in options if o.get("type") == "null"]
        others = [o for o in options if o.get("type") != "null"]
        if depth >= _MAX_DEPTH and nulls:
            return nulls[0]
        return (others or nulls)[0]

    def merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Fold ``allOf`` members into one schema: properties and required lists joined."""
        merged = {key: value for key, value in schema.items() if key != "allOf"}
        for member in schema["allOf"]:
            if isinstance(member, dict) and isinstance(member.get("$ref"), str):
                member = self.resolve(member["$ref"])
            if not isinstance(member, dict):
                continue
            properties = merged.get("properties", {}) | member.get("properties", {})
            required = [*merged.get("required", []), *member.get("required", [])]
            merged = member | merged
            if properties:
                merged["properties"] = properties
            if required:
                merged["required"] = list(dict.fromkeys(required))
        return merged

    @staticmethod
    def kind(schema: dict[str, Any], depth: int) -> str:
        """Return the JSON type to build: declared (first non-null of a list) or implied."""
        declared = schema.get("type")
        if isinstance(declared, list):
            real = [t for t in declared if t != "null"]
            declared = (
                "null" if not real or (depth >= _MAX_DEPTH and "null" in declared) else real[0]
            )
        if isinstance(declared, str):
            return declared
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        """Return an object holding the required properties (all of them in strict mode)."""
        properties = schema.get("properties") or {}
        required = [key for key in schema.get("required") or [] if isinstance(key, str)]
        return {key: self.build(properties.get(key, {}), key, depth + 1) for key in required}

    def array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        """Return one item (or ``minItems``, or the ``prefixItems``), none once too deep."""
        prefix = [p for p in schema.get("prefixItems") or [] if isinstance(p, dict)]
        items = schema.get("items")
        low = int(schema.get("minItems") or 0)
        count = max(low, 0 if depth >= _MAX_DEPTH else 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        values = [self.build(p, name, depth + 1) for p in prefix]
        if isinstance(items, dict) or not prefix:
            values += [self.build(items, name, depth + 1) for _ in range(count - len(values))]
        return values


def _string(schema: dict[str, Any], name: str) -> str:
    """Return the format's example, else ``name``, padded or cut to the length bounds."""
    value = _FORMATS.get(str(schema.get("format")), name)
    low, high = int(schema.get("minLength") or 0), schema.get("maxLength")
    value = value.ljust(low, "x")
    return value[: int(high)] if isinstance(high, int) else value


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    """Return 1 (1.5 for numbers), moved inside the bounds and onto ``multipleOf``."""
    step = 1 if integer else 0.5
    value: float = 1 if integer else 1.5
    if isinstance(schema.get("minimum"), int | float):
        value = max(value, schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        value = max(value, schema["exclusiveMinimum"] + step)
    if isinstance(schema.get("maximum"), int | float):
        value = min(value, schema["maximum"])
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        value = min(value, schema["exclusiveMaximum"] - step)
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple > 0:
        value = math.ceil(value / multiple) * multiple
    return int(value) if integer else float(value)
