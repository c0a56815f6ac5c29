"""Reading a use case's source table, one partition at a time."""

from __future__ import annotations

import csv
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from batch_pipeline.spec import SourceTable

# A line the CSV parser cannot split into the header's columns is not dropped: it becomes a
# row carrying this column, with the line number and what was wrong, and ends up rejected.
SOURCE_ERROR = "_source_error"
# The CSV reader's block size bounds the largest row it can read; cells of several MB are real.
_MAX_ROW_BYTES = 64 << 20


def columns(source: SourceTable) -> list[str]:
    """The table's column names, from its header line."""
    return _header(source)


def _header(source: SourceTable) -> list[str]:
    try:
        with source.path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError as exc:
        raise ValueError(f"source table '{source.path}' is not UTF-8 text: {exc}") from exc
    if not header:
        raise ValueError(f"source table '{source.path}' is empty: it has no header line")
    return header


def _options(header: list[str], bad: list) -> dict:
    def keep_bad_line(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "skip"

    return {
        "convert_options": pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
        "parse_options": pacsv.ParseOptions(invalid_row_handler=keep_bad_line),
    }


def _with_errors(table: pa.Table | pa.RecordBatch, header: list[str], bad: list) -> pa.Table:
    """The parsed rows plus one row per malformed line, its cells split as well as they can be."""
    table = pa.Table.from_batches([table]) if isinstance(table, pa.RecordBatch) else table
    table = table.append_column(SOURCE_ERROR, pa.nulls(table.num_rows, pa.string()))
    if not bad:
        return table
    rows = []
    for row in bad:
        cells = next(csv.reader([row.text]), [])
        record = {name: (cells[i] if i < len(cells) and cells[i] else None) for i, name in enumerate(header)}
        line = f"line {row.number}" if row.number is not None and row.number > 0 else f"line {row.text[:60]!r}"
        record[SOURCE_ERROR] = (
            f"malformed CSV {line}: expected {row.expected_columns} fields, got {row.actual_columns}"
        )
        rows.append(record)
    return pa.concat_tables([table, pa.Table.from_pylist(rows, schema=table.schema)])


def read_table(source: SourceTable) -> pa.Table:
    """The whole table with every column as text, empty cells as null.

    Every column is read as a string so a key like `007` or a date stays exactly as written;
    templates insert cells as text anyway. Malformed lines come back as rows whose
    `_source_error` says why.
    """
    header, bad = _header(source), []
    try:
        table = pacsv.read_csv(
            source.path, read_options=pacsv.ReadOptions(block_size=_MAX_ROW_BYTES), **_options(header, bad)
        )
    except pa.ArrowInvalid as exc:
        raise ValueError(f"source table '{source.path}' cannot be read: {exc}") from exc
    return _with_errors(table, header, bad)


def read_partition(source: SourceTable, partition_key: str) -> pa.Table:
    """The rows whose partition column equals `partition_key`, in file order."""
    table = read_table(source)
    if source.partition_column not in table.column_names:
        raise ValueError(
            f"source table '{source.path.name}' has no partition column "
            f"'{source.partition_column}' (columns: {', '.join(table.column_names[:-1])})"
        )
    values = pc.utf8_trim_whitespace(table[source.partition_column])
    return table.filter(pc.fill_null(pc.equal(values, partition_key), False))


def partition_keys(source: SourceTable) -> list[str]:
    """The distinct non-empty partition values present in the table, sorted."""
    values = pc.utf8_trim_whitespace(read_table(source)[source.partition_column])
    return sorted(v for v in pc.unique(values).to_pylist() if v)


def read_partition_batches(source: SourceTable, partition_key: str, block_size: int = 8 << 20) -> Iterator[pa.RecordBatch]:
    """`read_partition` as a stream of record batches, one CSV block at a time, so a table
    much bigger than memory can be built into requests (see `request_lines.stream_requests`)."""
    header, bad = _header(source), []
    if source.partition_column not in header:
        raise ValueError(
            f"source table '{source.path.name}' has no partition column "
            f"'{source.partition_column}' (columns: {', '.join(header)})"
        )
    options = _options(header, bad)
    reader = pacsv.open_csv(
        source.path, read_options=pacsv.ReadOptions(block_size=block_size), **options
    )

    def matching(table: pa.Table) -> pa.Table:
        values = pc.utf8_trim_whitespace(table.column(source.partition_column))
        keep = pc.fill_null(pc.equal(values, partition_key), False)
        return table if pc.all(keep).as_py() else table.filter(keep)

    for batch in reader:
        yield from matching(_with_errors(batch, header, [])).to_batches()
    if bad:
        yield from matching(_with_errors(pa.table({n: pa.array([], pa.string()) for n in header}), header, bad)).to_batches()
