"""Rows of a source table that no partition will ever read, each with its key, line and reason.

A partition reads the rows whose partition value (blanks trimmed) is its key. A row whose value
is blank, written another way (`2026/11/20`, a timestamp with a zone), or outside the
definition (before its start) is in no partition's results; this report is where it is seen,
so that nothing is dropped without a word. A line that could not be read as a row is reported
here too, unless its partition value is a partition: then it is that partition's rejected row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.sources.csv_records import BLOCK_SIZE, SOURCE_ERROR, SOURCE_LINE
from batch_pipeline.sources.csv_source import partition_values, read_batches
from batch_pipeline.spec import SourceTable

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
    source: SourceTable,
    partitions_def: dg.PartitionsDefinition | None,
    *,
    partition_keys: Collection[str] | None = None,
    block_size: int = BLOCK_SIZE,
) -> pa.Table:
    """Every row no partition of `partitions_def` reads, in file order, streaming the table.

    Columns: `key` (the row's key as written, null when empty), `line` (where the row starts;
    the header is line 1), `partition_value` (as written), `reason` (`missing_partition_value`,
    `not_a_partition`, `future_partition` or `malformed_row`) and `message` (a sentence).
    `partition_keys` are the keys that exist when the definition cannot tell by itself (dynamic
    partitions: `instance.get_dynamic_partitions(name)`). With no definition every row is read.
    """
    if partitions_def is None:
        return SCHEMA.empty_table()
    verdict = _verdicts(source, partitions_def, partition_keys)
    found = []
    for table in read_batches(source, block_size):
        values = partition_values(table, source)
        distinct = pc.unique(values).to_pylist()
        kept = pa.array([v for v in distinct if v and verdict(v)[0] is None], pa.string())
        out = pc.invert(pc.fill_null(pc.is_in(values, value_set=kept), False))
        if pc.any(out).as_py():
            found.append(_describe(table.filter(out), source, verdict))
    return pa.concat_tables(found) if found else SCHEMA.empty_table()


def _describe(
    rows: pa.Table, source: SourceTable, verdict: Callable[[str], tuple[str | None, str]]
) -> pa.Table:
    reasons, messages = [], []
    column = source.partition_column
    for value, error in zip(rows[column].to_pylist(), rows[SOURCE_ERROR].to_pylist(), strict=True):
        trimmed = (value or "").strip()
        reason, why = verdict(trimmed) if trimmed else (MISSING, f"column '{column}' is empty")
        if error is not None:
            reason, why = MALFORMED, f"{error}; {why}"
        reasons.append(reason)
        messages.append(why)
    return pa.table(
        [
            rows[source.key],
            rows[SOURCE_LINE],
            rows[column],
            pa.array(reasons, pa.string()),
            pa.array(messages, pa.string()),
        ],
        schema=SCHEMA,
    )


def _verdicts(
    source: SourceTable, partitions_def: dg.PartitionsDefinition, keys: Collection[str] | None
) -> Callable[[str], tuple[str | None, str]]:
    """A cached `value -> (reason or None when it is a partition, message)`."""
    cache: dict[str, tuple[str | None, str]] = {}
    column = source.partition_column

    def verdict(value: str) -> tuple[str | None, str]:
        if value not in cache:
            if (value in keys) if keys is not None else partitions_def.has_partition_key(value):
                cache[value] = (None, "")
            elif _later_key(partitions_def, value):
                cache[value] = (
                    FUTURE,
                    f"'{value}' in column '{column}' is a partition that does "
                    "not exist yet; the row is read when it does",
                )
            else:
                cache[value] = (
                    NOT_A_PARTITION,
                    f"'{value}' in column '{column}' is not a "
                    f"partition of the definition ({_shape(partitions_def)})",
                )
        return cache[value]

    return verdict


def _later_key(partitions_def: dg.PartitionsDefinition, value: str) -> bool:
    """Whether `value` is written as the definition's keys are and lies after its last one."""
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return False
    try:
        window = partitions_def.time_window_for_partition_key(value)
    except Exception:  # dagster raises several types for a key of another shape
        return False
    if window.start.strftime(partitions_def.fmt) != value:
        return False
    end = partitions_def.end
    return (
        window.start >= partitions_def.start
        and (end is None or window.start < end)
        and window.end > datetime.now(UTC)
    )


def _shape(partitions_def: dg.PartitionsDefinition) -> str:
    """What the definition's keys look like, for the message."""
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        first = partitions_def.start.strftime(partitions_def.fmt)
        return f"keys written like '{first}', from '{first}' on"
    try:
        keys = partitions_def.get_partition_keys()
    except Exception:  # dynamic partitions need an instance
        return "its keys"
    shown = ", ".join(f"'{k}'" for k in keys[:5])
    return f"keys {shown}{', ...' if len(keys) > 5 else ''}"
