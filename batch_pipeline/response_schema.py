"""A use case's response model (Pydantic) as typed Arrow columns and a validator.

Provider-neutral: how a provider asks for the model (OpenAI's strict JSON schema, another's tool
or schema) is its adapter's business (`provider/openai_wire.py`).
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ValidationError

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
