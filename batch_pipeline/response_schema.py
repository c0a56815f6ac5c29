"""A use case's response model (Pydantic) as a strict JSON schema, typed Arrow columns and a validator.

The strict schema is structured outputs' own (`provider.openai_wire.strict_json_schema`, the
`openai` SDK's converter), and a moderation's columns are the categories that SDK scores: both
are OpenAI's definitions, so they come from the OpenAI adapter's wire module.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from typing import Any, Literal

import orjson
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from batch_pipeline.provider.openai_wire import moderation_categories
from batch_pipeline.provider.openai_wire import (
    strict_json_schema as strict_json_schema,  # spec.py validates with it
)

_SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    dt.date: pa.string(),
    dt.datetime: pa.string(),
}


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a response field: scalars, enums and literals as strings, lists, structs."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return arrow_type(members[0])
        raise TypeError(f"union field types are not supported as columns: {annotation}")
    if origin is Literal:
        values = typing.get_args(annotation)
        return arrow_type(type(values[0]))
    if origin in (list, tuple, set, frozenset):
        (item, *_) = typing.get_args(annotation) or (str,)
        return pa.list_(arrow_type(item))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return pa.string()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct([(name, arrow_type(f.annotation)) for name, f in annotation.model_fields.items()])
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"field type {annotation!r} is not supported as a column")


def arrow_fields(model: type[BaseModel]) -> list[pa.Field]:
    """One typed column per top-level field of the response model."""
    return [pa.field(name, arrow_type(f.annotation)) for name, f in model.model_fields.items()]


def parse_answer(model: type[BaseModel], text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(field values, None) for a valid answer, or (None, reason) when it does not validate."""
    if text is None:
        return None, "the answer has no content"
    try:
        return model.model_validate_json(text).model_dump(mode="json"), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return None, f"{exc.error_count()} schema error(s); first at '{where}': {first['msg']}"


MODERATION_CATEGORIES = moderation_categories()


def moderation_fields() -> list[pa.Field]:
    """The typed columns of a moderation: `flagged`, `flagged_categories`, one float per score."""
    return [pa.field("flagged", pa.bool_()), pa.field("flagged_categories", pa.list_(pa.string())),
            *(pa.field(f"{stem}_score", pa.float64()) for stem in MODERATION_CATEGORIES.values())]


def parse_moderation(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(column values, None) for a moderation result (one `results` item as JSON), or (None, reason)."""
    if text is None:
        return None, "the answer has no moderation result"
    try:
        result = orjson.loads(text)
        flagged, categories, scores = result["flagged"], result["categories"], result["category_scores"]
        if not isinstance(flagged, bool) or not isinstance(categories, dict) or not isinstance(scores, dict):
            raise TypeError("flagged, categories or category_scores has the wrong type")
        values: dict[str, Any] = {"flagged": flagged,
                                  "flagged_categories": sorted(k for k, v in categories.items() if v is True)}
        for wire, stem in MODERATION_CATEGORIES.items():
            score = scores.get(wire)
            if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
                raise TypeError(f"score of '{wire}' is {type(score).__name__}")
            values[f"{stem}_score"] = None if score is None else float(score)
        return values, None
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return None, f"the moderation result does not have OpenAI's shape: {type(exc).__name__}: {exc}"
