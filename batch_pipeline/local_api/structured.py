"""Deterministic JSON instances for a JSON Schema (structured outputs and JSON mode of the fake
responder).

Hand-written because no maintained library generates *deterministic, small* instances
(hypothesis-jsonschema is random and heavy). Tests check the instances with ``jsonschema``
so a schema feature this walker does not know shows up as a failure, not silent drift.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

_MAX_DEPTH = 12


class _Builder:
    def __init__(self, root: dict[str, Any], words: Sequence[str], seed: int) -> None:
        self.root = root
        self.words = list(words) or ["answer"]
        self.seed = seed
        self.counter = 0

    def _next(self) -> int:
        self.counter += 1
        return (self.seed >> (self.counter % 48)) + self.counter

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        while isinstance(ref, str) and ref.startswith("#/"):
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            ref = target.get("$ref")
        return schema

    def build(self, schema: Any, name: str, depth: int = 0) -> Any:
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            options = schema["enum"]
            return options[self._next() % len(options)]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                non_null = [s for s in schema[key] if not (isinstance(s, dict) and s.get("type") == "null")]
                return self.build((non_null or schema[key])[0], name, depth + 1)
        if schema.get("allOf"):
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part) if isinstance(part, dict) else {})
            return self.build(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        return getattr(self, f"_{kind}", self._string)(schema, name, depth)

    def _object(self, schema: dict[str, Any], name: str, depth: int) -> dict[str, Any]:
        properties = schema.get("properties", {})
        required = schema.get("required", list(properties))
        return {key: self.build(properties.get(key, {}), key, depth + 1) for key in properties if key in required}

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 3)))
        count = max(low, min(high, 1 + self._next() % 3))
        items = schema.get("items", {})
        singular = name[:-1] if name.endswith("s") else name
        values = [self.build(items, f"{singular}_{i}", depth + 1) for i in range(count)]
        if schema.get("uniqueItems") and all(isinstance(v, str) for v in values):
            values = [v if i == 0 else f"{v} {i + 1}" for i, v in enumerate(values)]
        return values

    def _string(self, schema: dict[str, Any], name: str, depth: int) -> str:
        fmt = schema.get("format")
        if fmt == "date":
            return f"2024-01-{1 + self._next() % 28:02d}"
        if fmt == "date-time":
            return f"2024-01-{1 + self._next() % 28:02d}T12:00:00Z"
        if fmt == "email":
            return f"{self.words[0].lower()}@example.com"
        if fmt in ("uri", "url"):
            return f"https://example.com/{self.words[0].lower()}"
        start = self._next()
        picked = [self.words[(start + i) % len(self.words)] for i in range(min(4, len(self.words)))]
        label = name.replace("_", " ").strip() or "value"
        text = f"{label.capitalize()}: {' '.join(picked)}."
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(text) < low:
            text = text + " ." * ((low - len(text)) // 2 + 1)
        if high is not None:
            text = text[: int(high)]
        return text

    def _integer(self, schema: dict[str, Any], name: str, depth: int) -> int:
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in schema else 0)
        default_high = schema.get("exclusiveMaximum", low + 11) - 1 if "exclusiveMaximum" in schema else low + 10
        high = schema.get("maximum", default_high)
        low, high = int(low), max(int(low), int(high))
        return low + self._next() % (high - low + 1)

    def _number(self, schema: dict[str, Any], name: str, depth: int) -> float:
        low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0.0)))
        high = float(schema.get("maximum", schema.get("exclusiveMaximum", low + 1.0)))
        return round(low + (high - low) * ((self._next() % 89) + 5) / 100.0, 4)

    def _boolean(self, schema: dict[str, Any], name: str, depth: int) -> bool:
        return self._next() % 2 == 0

    def _null(self, schema: dict[str, Any], name: str, depth: int) -> None:
        return None


def instance_for(schema: dict[str, Any], words: Sequence[str], seed: int) -> Any:
    """A small instance of ``schema`` whose strings echo ``words``; same inputs, same instance."""
    return _Builder(schema, words, seed).build(schema, "value")



# JSON mode's answer when its prompt shows no shape: one string member.
ANSWER_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
_MAX_CANDIDATES = 64  # JSON objects tried per prompt: a prompt full of braces costs little
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")
_KEYS_WORD = re.compile(r"\b(?:keys?|fields?|properties|attributes)\b", re.IGNORECASE)
_QUOTED = re.compile(r"[\"'`]([A-Za-z_][\w-]{0,63})[\"'`]")


def prompt_schema(text: str) -> dict[str, Any]:
    """The shape a JSON-mode prompt (``response_format: json_object``) asks for.

    JSON mode constrains the answer to a JSON object, and the prompt says which: the first JSON
    Schema the prompt holds (an object with ``properties``, or one under ``schema``), else the
    shape of the first JSON object it shows as an example, else the quoted names a sentence gives
    as keys (``with keys "drug" and "use"``, as strings), else ``ANSWER_SCHEMA``.
    """
    decoder = json.JSONDecoder()
    example: dict[str, Any] | None = None
    start, tried = text.find("{"), 0
    while start != -1 and tried < _MAX_CANDIDATES:
        tried += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            for candidate in (value, value.get("schema"), value.get("json_schema")):
                if isinstance(candidate, dict) and isinstance(candidate.get("properties"), dict):
                    return candidate
            example = example or (value or None)
        start = text.find("{", end)
    return _shape_of(example) if example else _named_keys(text) or ANSWER_SCHEMA


def _named_keys(text: str) -> dict[str, Any] | None:
    """String members for the quoted names following "keys", "fields" or "properties" in one
    sentence of the prompt, if any."""
    for sentence in _SENTENCE.split(text):
        said = _KEYS_WORD.search(sentence)
        names = _QUOTED.findall(sentence[said.end():]) if said else []
        if names:
            keys = list(dict.fromkeys(names))
            return {"type": "object", "properties": {k: {"type": "string"} for k in keys}, "required": keys}
    return None


def _shape_of(value: Any) -> dict[str, Any]:
    """A JSON Schema that ``value`` is an instance of (types and keys only)."""
    if isinstance(value, dict):
        return {"type": "object", "properties": {k: _shape_of(v) for k, v in value.items()}, "required": list(value)}
    if isinstance(value, list):
        return {"type": "array", "items": _shape_of(value[0]) if value else {"type": "string"}}
    kinds = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))
    return {"type": next((name for kind, name in kinds if isinstance(value, kind)), "null")}
