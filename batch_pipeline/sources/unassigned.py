"""Rows of a source that no partition will ever read, each with its key, line and reason.

A row whose partition value is blank, not a date or time where the partitions are time windows,
before the first window, or not one of the keys of static or dynamic partitions is in no
partition's results; this report is where it is seen, so that nothing is dropped without a
word. A row in a window that does not exist yet is reported as `future_partition` (it is read
when it does). A CSV line that could not be read as a row is reported too, unless its partition
value is a partition: then it is that partition's rejected row. Only the key and partition
columns are read, so a columnar source is cheap to check.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.sources.base import Source
from batch_pipeline.sources.cells import as_text
from batch_pipeline.sources.csv_records import SOURCE_ERROR, SOURCE_LINE
from batch_pipeline.sources.partitions import UTC_TIMESTAMP, Selection, dimensions, instants

MISSING = "missing_partition_value"
NOT_A_PARTITION = "not_a_partition"
FUTURE = "future_partition"  # a key the definition will have later: read when it exists
MALFORMED = "malformed_row"
SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("line", pa.int64()),
        ("partition_value", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
    ]
)


def unassigned_rows(
    source: Source,
    partitions_def: dg.PartitionsDefinition | None,
    *,
    dynamic_keys: Mapping[str, Collection[str]] | None = None,
) -> pa.Table:
    """Every row no partition of `partitions_def` reads, in source order, streaming the source.

    Columns: `key` (the row's key as text; a composite key's parts joined by `, `), `line` (a
    CSV row's line, the header being line 1; for other sources the row's number from 1),
    `partition_value` (as text; a multi-partition's values joined by `|`), `reason`
    (`missing_partition_value`, `not_a_partition`, `future_partition` or `malformed_row`) and
    `message`. `dynamic_keys` holds the keys of dynamic partitions by definition name
    (`instance.get_dynamic_partitions(name)`); a dynamic dimension without them is not checked.
    """
    columns = source.partition_columns
    if partitions_def is None or not columns:
        return SCHEMA.empty_table()
    found, offset = [], 0
    for batch in _batches(source, columns):
        reason, message = _verdicts(batch, partitions_def, columns, dynamic_keys or {})
        if SOURCE_ERROR in batch.schema.names:
            reason, message = _malformed(batch, reason, message)
        out = pc.is_valid(reason)
        if pc.any(out).as_py():
            lines = batch.column(SOURCE_LINE) if SOURCE_LINE in batch.schema.names else \
                pa.array(range(offset + 1, offset + batch.num_rows + 1), pa.int64())
            found.append(pa.table([
                _joined(batch, list(source.key_columns), ", "), lines,
                _joined(batch, [columns[d] for d, _ in dimensions(partitions_def)], "|"),
                reason, message], schema=SCHEMA).filter(out))
        offset += batch.num_rows
    return pa.concat_tables(found) if found else SCHEMA.empty_table()


def _batches(source: Source, columns: Mapping[str, str]) -> Iterator[pa.RecordBatch]:
    return source.read(Selection(), [*dict.fromkeys([*source.key_columns, *columns.values()])])


def _joined(batch: pa.RecordBatch, names: list[str], separator: str) -> pa.Array:
    if len(names) == 1:
        return as_text(batch.column(names[0]))[0]
    return pc.binary_join_element_wise(*(pc.fill_null(as_text(batch.column(n))[0], "") for n in names), separator)


def _verdicts(batch: pa.RecordBatch, partitions_def: dg.PartitionsDefinition, columns: Mapping[str, str],
              dynamic_keys: Mapping[str, Collection[str]]) -> tuple[pa.Array, pa.Array]:
    """Each row's reason (null when a partition reads it) and message; the first dimension that
    refuses the row gives them."""
    reason = pa.nulls(batch.num_rows, pa.string())
    message = pa.nulls(batch.num_rows, pa.string())
    for name, dimension in dimensions(partitions_def):
        column = columns[name]
        values = batch.column(column)
        text = pc.utf8_trim_whitespace(pc.fill_null(as_text(values)[0], ""))
        if isinstance(dimension, dg.TimeWindowPartitionsDefinition):
            r, m = _window_verdicts(values, text, dimension, column)
        else:
            r, m = _key_verdicts(text, dimension, column, dynamic_keys)
        first = pc.and_(pc.is_null(reason), pc.is_valid(r))
        reason, message = pc.if_else(first, r, reason), pc.if_else(first, m, message)
    return reason, message


def _said(text: pa.Array, column: str, why: str) -> pa.Array:
    return pc.binary_join_element_wise("'", text, f"' in column '{column}' {why}", "")


def _window_verdicts(values: pa.Array, text: pa.Array, definition: dg.TimeWindowPartitionsDefinition,
                     column: str) -> tuple[pa.Array, pa.Array]:
    t = instants(values, definition.timezone)
    first = pa.scalar(definition.start, UTC_TIMESTAMP)
    last = definition.get_last_partition_window()
    later = pa.scalar(last.end if last else definition.start, UTC_TIMESTAMP)
    end = definition.end
    outside = pc.less(t, first) if end is None else pc.or_(pc.less(t, first), pc.greater_equal(
        t, pa.scalar(end, UTC_TIMESTAMP)))
    shape = f"(windows from {definition.start.isoformat()}{f' to {end.isoformat()}' if end else ''})"
    blank = pc.equal(text, "")
    cases = [
        (blank, MISSING, pa.array([f"column '{column}' is empty"] * len(text), pa.string())),
        (pc.is_null(t), NOT_A_PARTITION, _said(text, column, "is not a date or time (ISO 8601 is read)")),
        (pc.fill_null(outside, False), NOT_A_PARTITION, _said(text, column, f"is in no partition {shape}")),
        (pc.fill_null(pc.greater_equal(t, later), False), FUTURE,
         _said(text, column, "is in a partition that does not exist yet; the row is read when it does")),
    ]
    return _first_case(cases, len(text))


def _key_verdicts(text: pa.Array, definition: dg.PartitionsDefinition, column: str,
                  dynamic_keys: Mapping[str, Collection[str]]) -> tuple[pa.Array, pa.Array]:
    if isinstance(definition, dg.DynamicPartitionsDefinition):
        if definition.name is None or definition.name not in dynamic_keys:
            return pa.nulls(len(text), pa.string()), pa.nulls(len(text), pa.string())
        keys = list(dynamic_keys[definition.name])
    else:
        keys = list(definition.get_partition_keys())
    shown = ", ".join(f"'{k}'" for k in keys[:5]) + (", ..." if len(keys) > 5 else "")
    cases = [
        (pc.equal(text, ""), MISSING, pa.array([f"column '{column}' is empty"] * len(text), pa.string())),
        (pc.invert(pc.is_in(text, value_set=pa.array(keys, pa.string()))), NOT_A_PARTITION,
         _said(text, column, f"is not a partition of the definition (keys {shown})")),
    ]
    return _first_case(cases, len(text))


def _first_case(cases: list[tuple[pa.Array, str, pa.Array]], n: int) -> tuple[pa.Array, pa.Array]:
    reason = pa.nulls(n, pa.string())
    message = pa.nulls(n, pa.string())
    for mask, why, said in reversed(cases):
        reason = pc.if_else(mask, pa.scalar(why, pa.string()), reason)
        message = pc.if_else(mask, said, message)
    return reason, message


def _malformed(batch: pa.RecordBatch, reason: pa.Array, message: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A line that could not be read: reported here when no partition takes it as a rejected row."""
    error = batch.column(SOURCE_ERROR)
    bad = pc.and_(pc.is_valid(error), pc.is_valid(reason))
    joined = pc.binary_join_element_wise(pc.fill_null(error, ""), pc.fill_null(message, ""), "; ")
    return pc.if_else(bad, pa.scalar(MALFORMED, pa.string()), reason), pc.if_else(bad, joined, message)
