"""Reading a use case's source table, one partition at a time."""

from __future__ import annotations

import csv
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from batch_pipeline.spec import SourceTable


def read_table(source: SourceTable) -> pa.Table:
    """The whole table with every column as text, empty cells as null.

    Every column is read as a string so a key like `007` or a date stays exactly as written;
    templates insert cells as text anyway.
    """
    with source.path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise ValueError(f"source table '{source.path}' is empty: it has no header line")
    return pacsv.read_csv(
        source.path,
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
    )


def read_partition(source: SourceTable, partition_key: str) -> pa.Table:
    """The rows whose partition column equals `partition_key`, in file order."""
    table = read_table(source)
    if source.partition_column not in table.column_names:
        raise ValueError(
            f"source table '{source.path.name}' has no partition column "
            f"'{source.partition_column}' (columns: {', '.join(table.column_names)})"
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
    with source.path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise ValueError(f"source table '{source.path}' is empty: it has no header line")
    if source.partition_column not in header:
        raise ValueError(
            f"source table '{source.path.name}' has no partition column "
            f"'{source.partition_column}' (columns: {', '.join(header)})"
        )
    reader = pacsv.open_csv(
        source.path,
        read_options=pacsv.ReadOptions(block_size=block_size),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
    )
    for batch in reader:
        values = pc.utf8_trim_whitespace(batch.column(source.partition_column))
        yield batch.filter(pc.fill_null(pc.equal(values, partition_key), False))

