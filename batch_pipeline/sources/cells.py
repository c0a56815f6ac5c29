"""Cells of any Arrow type as the text a template inserts, one documented rule per type.

- string: as written, byte for byte
- integer: decimal digits (`42`, `-7`)
- float: the shortest text that reads back as the same number (`0.1`, `3`, `1e+20`, `nan`, `inf`)
- decimal: with the column's scale (`1.50`)
- boolean: `true`, `false`
- date: ISO 8601 (`2026-11-20`)
- timestamp: ISO 8601 with `T` (`2026-11-20T10:00:00`); sub-second digits only when not zero
  (`.000123`); a zone-aware timestamp in UTC with `Z`
- list: a compact JSON array (`["a",1,null]`; dates inside as ISO strings)
- null: no text; a template that needs the cell rejects the row (`missing_value`)

Anything else (binary, structs, maps) cannot be rendered: the row is rejected naming the column,
and the other rows flow.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc


def as_text(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, str | None]:
    """The cells as text (nulls stay null), and why none can be rendered (None when they can)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_dictionary(kind):
        return as_text(values.dictionary_decode())
    if pa.types.is_string(kind):
        return values, None
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return values.cast(pa.string()), None
    if pa.types.is_null(kind):
        return pa.nulls(len(values), pa.string()), None
    if pa.types.is_timestamp(kind):
        return _timestamps(values), None
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
            or pa.types.is_boolean(kind) or pa.types.is_date(kind)):
        return values.cast(pa.string()), None
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _json_arrays(values), None
    return pa.nulls(len(values), pa.string()), f"holds {kind} values, which a template cannot render"


def _timestamps(values: pa.Array) -> pa.Array:
    """ISO 8601 text, computed column-wise: Arrow's text with `T`, a zero fraction dropped."""
    aware = values.type.tz is not None
    if aware:
        values = values.cast(pa.timestamp(values.type.unit, "UTC")).cast(pa.timestamp(values.type.unit))
    text = pc.replace_substring(values.cast(pa.string()), " ", "T", max_replacements=1)
    text = pc.replace_substring_regex(text, r"\.0+$", "")
    return pc.binary_join_element_wise(text, "Z", "") if aware else text


def _json_arrays(values: pa.Array) -> pa.Array:
    """Each list as a JSON array. Per row in Python: lists in prompts are short and rare, and
    orjson writes dates, decimals (via str) and nested lists the way JSON readers expect."""
    return pa.array(
        [None if v is None else orjson.dumps(v, default=str).decode() for v in values.to_pylist()],
        pa.string(),
    )
