"""Which source rows a partition reads, for any Dagster `PartitionsDefinition`.

- Time windows (hourly, daily, weekly, monthly, any cron): rows whose column holds an instant
  inside the window, `start <= t < end`. A date is its midnight; a timestamp or text without a
  zone is read in the definition's timezone; text must be ISO 8601 (`2026-11-20`,
  `2026-11-20T10:30:00`, `2026-11-20 10:30:00+01:00`).
- Static and dynamic partitions: rows whose column, as text (`sources.cells`), blanks trimmed,
  equals the key.
- Multi-partitions: one column per dimension, every dimension's condition at once.
- No definition: every row.

A `Selection` says it three ways: an exact row mask (always applied), an Arrow dataset filter
and a SQL condition with bound parameters (each a superset pushed down to the storage, or None).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from batch_pipeline.errors import SpecError
from batch_pipeline.sources.cells import as_text

UTC_TIMESTAMP = pa.timestamp("us", "UTC")


@dataclass(frozen=True)
class Equals:
    """Rows whose column, as text with blanks trimmed, is `value`."""

    column: str
    value: str


@dataclass(frozen=True)
class Window:
    """Rows whose column is an instant in `[start, end)`; naive values are in `timezone`."""

    column: str
    start: datetime
    end: datetime
    timezone: str


Condition = Equals | Window


@dataclass(frozen=True)
class Selection:
    """The rows of one partition: every condition holds (no condition: every row)."""

    conditions: tuple[Condition, ...] = ()

    @property
    def columns(self) -> list[str]:
        return [c.column for c in self.conditions]

    def mask(self, table: pa.Table | pa.RecordBatch) -> pa.Array | None:
        """Which rows are in the partition (None: all of them)."""
        names = table.schema.names
        for c in self.conditions:
            if c.column not in names:
                raise SpecError(f"the source has no partition column '{c.column}' (columns: {', '.join(names)})")
        masks = [_mask(c, table.column(c.column)) for c in self.conditions]
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = pc.and_(out, m)
        return pc.fill_null(out, False)

    def dataset_filter(self, schema: pa.Schema) -> ds.Expression | None:
        """A superset of the rows as an Arrow dataset filter, so files and row groups outside the
        partition are skipped (Hive folders, Parquet statistics); None when nothing pushes down."""
        parts = [p for c in self.conditions if (p := _pushed(c, schema.field(c.column).type)) is not None]
        if not parts:
            return None
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out

    def sql(self, schema: pa.Schema, quote: str = '"') -> tuple[str, list[object]]:
        """A SQL condition (`$1`-style parameters, column names quoted) and its parameter values:
        the partition is always bound, never written into the SQL text."""
        clauses: list[str] = []
        params: list[object] = []
        for c in self.conditions:
            name = quote + c.column.replace(quote, quote * 2) + quote
            kind = schema.field(c.column).type
            if isinstance(c, Equals):
                if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind):
                    # a superset: SQL's TRIM strips only spaces where the mask strips any
                    # whitespace, so equality after TRIM would drop a cell like "acme\t" unseen
                    params.append(c.value)
                    clauses.append(f"strpos(CAST({name} AS TEXT), ${len(params)}) > 0")
            elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                # text is not compared in SQL: padded text (" 2026-11-20") sorts before the window
                lo, hi = _bounds(c, kind)
                if lo is not None:
                    params += [lo, hi]
                    clauses.append(f"{name} >= ${len(params) - 1} AND {name} < ${len(params)}")
        return " AND ".join(clauses) or "TRUE", params


def selection_for(
    partitions_def: dg.PartitionsDefinition | None, key: str | None, columns: Mapping[str, str]
) -> Selection:
    """The rows of partition `key`. `columns` maps each dimension to its column (`""` for a
    definition with one dimension)."""
    if partitions_def is None or key is None:
        return Selection()
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        keys = partitions_def.get_partition_key_from_str(key).keys_by_dimension
        return Selection(tuple(
            _condition(d.partitions_def, keys[d.name], columns[d.name]) for d in partitions_def.partitions_defs
        ))
    return Selection((_condition(partitions_def, key, columns[""]),))


def _condition(partitions_def: dg.PartitionsDefinition, key: str, column: str) -> Condition:
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        window = partitions_def.time_window_for_partition_key(key)
        return Window(column, window.start, window.end, partitions_def.timezone)
    return Equals(column, key)


def dimensions(partitions_def: dg.PartitionsDefinition | None) -> list[tuple[str, dg.PartitionsDefinition]]:
    """The definition's dimensions by name (`""` for a one-dimensional definition)."""
    if partitions_def is None:
        return []
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return [(d.name, d.partitions_def) for d in partitions_def.partitions_defs]
    return [("", partitions_def)]


def _mask(condition: Condition, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(condition, Equals):
        text, _ = as_text(values)
        return pc.equal(pc.utf8_trim_whitespace(text), condition.value)
    t = instants(values, condition.timezone)
    return pc.and_(pc.greater_equal(t, pa.scalar(condition.start, UTC_TIMESTAMP)),
                   pc.less(t, pa.scalar(condition.end, UTC_TIMESTAMP)))


def instants(values: pa.Array | pa.ChunkedArray, timezone: str) -> pa.Array:
    """Each cell as a UTC instant, null where it is not a date or time (or is empty)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_dictionary(kind):
        return instants(values.dictionary_decode(), timezone)
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return values.cast(UTC_TIMESTAMP)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _local_to_utc(values.cast(pa.timestamp("us")), timezone)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parsed(pc.utf8_trim_whitespace(values), timezone)
    return pa.nulls(len(values), UTC_TIMESTAMP)


def _local_to_utc(local: pa.Array, timezone: str) -> pa.Array:
    """Wall-clock times in `timezone` as UTC instants; UTC's own are relabelled, not converted
    (a pass over the column per batch saved: most partitions are in UTC)."""
    if timezone == "UTC":
        return local.cast(UTC_TIMESTAMP)
    return pc.assume_timezone(local, timezone, ambiguous="earliest", nonexistent="earliest").cast(UTC_TIMESTAMP)


def _parsed(text: pa.Array, timezone: str) -> pa.Array:
    """ISO 8601 text as instants: Arrow's parser for zone-less text (the usual case, in C++),
    Python's `datetime.fromisoformat` for each distinct other value (offsets, odd forms)."""
    try:
        return _local_to_utc(text.cast(pa.timestamp("us")), timezone)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    zone = ZoneInfo(timezone)
    distinct = pc.unique(text)
    parsed = [_instant(v, zone) for v in distinct.to_pylist()]
    return pa.array(parsed, UTC_TIMESTAMP).take(pc.index_in(text, value_set=distinct))


def _instant(value: str | None, zone: ZoneInfo) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _bounds(window: Window, kind: pa.DataType) -> tuple[object, object] | tuple[None, None]:
    """A window's bounds in the column's own terms: exact for zone-aware timestamps and dates
    (a date is in the window when its midnight in the window's zone is), an hour wider for naive
    timestamps (a daylight-saving change), a day wider for text (it may carry any offset)."""
    zone = ZoneInfo(window.timezone)
    start, end = window.start.astimezone(zone), window.end.astimezone(zone)
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return window.start, window.end
    if pa.types.is_timestamp(kind):
        hour = timedelta(hours=1)
        return (start - hour).replace(tzinfo=None), (end + hour).replace(tzinfo=None)
    if pa.types.is_date(kind):
        return _first_date_from(start), _first_date_from(end)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        day = timedelta(days=1)  # ISO 8601 text sorts as its instants do, to the day
        return (start - day).date().isoformat(), (end + day).date().isoformat()
    return None, None


def _first_date_from(moment: datetime) -> date:
    """The first date whose midnight is at or after `moment` (in `moment`'s zone)."""
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.date() if moment == midnight else moment.date() + timedelta(days=1)


def _pushed(condition: Condition, kind: pa.DataType) -> ds.Expression | None:
    field = ds.field(condition.column)
    if isinstance(condition, Equals):
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pc.utf8_trim_whitespace(field) == condition.value
        return None
    lo, hi = _bounds(condition, kind)
    if lo is None:
        return None
    if isinstance(lo, str):  # trimmed as the mask trims: padded text must not sort out of the window
        trimmed = pc.utf8_trim_whitespace(field)
        return (trimmed >= pa.scalar(lo, kind)) & (trimmed < pa.scalar(hi, kind))
    if isinstance(lo, date | datetime):
        return (field >= pa.scalar(lo, kind)) & (field < pa.scalar(hi, kind))
    return None


def check_partition_column(partitions_def: dg.PartitionsDefinition, column: str, kind: pa.DataType,
                           where: str) -> None:
    """A time-window column must hold dates, timestamps or text; refuse anything else early."""
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_string(kind)
            or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)):
        raise SpecError(f"{where}: partition column '{column}' holds {kind} values; a time-window "
                        "partition needs dates, timestamps or ISO 8601 text")
