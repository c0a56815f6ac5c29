"""Reading a use case's source table, one partition at a time.

Every column is read as text so a key like `007` or a date stays exactly as written; templates
insert cells as text anyway. Only an empty cell is null (and any `null_values` marker the
`SourceTable` declares): `NA`, `null` or `nan` in a CSV are words. A line that cannot be read as
a row is a row whose `_source_error` says why (see `csv_records`); every row carries the line
it starts on in `_source_line`.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait

import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.sources.csv_records import (
    BLOCK_SIZE,
    SOURCE_ERROR,
    SOURCE_LINE,
    Header,
    SourceError,
    read_header,
    read_records,
)
from batch_pipeline.spec import SourceTable

__all__ = [
    "SOURCE_ERROR",
    "SOURCE_LINE",
    "SourceError",
    "columns",
    "partition_keys",
    "read_batches",
    "read_partition",
    "read_partition_batches",
    "read_table",
]
# Columns the reader adds to every table; a source column may not take their names.
ADDED_COLUMNS = (SOURCE_ERROR, SOURCE_LINE)


def columns(source: SourceTable) -> list[str]:
    """The table's column names, from its header line."""
    return _header(source).names


def _header(source: SourceTable) -> Header:
    """The header, checked: unique names, none the pipeline adds, the partition column present."""
    header = read_header(source.path)
    seen: dict[str, int] = {}
    for number, name in enumerate(header.names, start=1):
        if name in seen:
            raise SourceError(
                f"source table '{source.path.name}' has two columns named '{name}' (columns "
                f"{seen[name]} and {number}); rename one so each cell has one column to go to"
            )
        seen[name] = number
        if name in ADDED_COLUMNS:
            raise SourceError(
                f"source table '{source.path.name}' has a column named '{name}', a name the "
                "pipeline adds to every row; rename it"
            )
    if source.partition_column not in seen:
        raise SourceError(
            f"source table '{source.path.name}' has no partition column "
            f"'{source.partition_column}' (columns: {', '.join(header.names)})"
        )
    return header


def read_batches(source: SourceTable, block_size: int = BLOCK_SIZE) -> Iterator[pa.Table]:
    """Every row of the table, one block of whole records at a time, in file order."""
    header = _header(source)
    yield from _read_ahead(read_records(source.path, header, source.null_values, block_size))


def _read_ahead(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The tables, the next one read in a thread while the caller works on this one: parsing
    releases the GIL, so reading and building requests share the cores. One block ahead at most."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-reader") as reader:
        upcoming = reader.submit(next, tables, None)
        try:
            while (table := upcoming.result()) is not None:
                upcoming = reader.submit(next, tables, None)
                yield table
        finally:
            upcoming.cancel()
            wait([upcoming])
            close = getattr(tables, "close", None)
            if close is not None:
                close()


def read_table(source: SourceTable) -> pa.Table:
    """The whole table (small tables and tests; the pipeline streams with `read_batches`)."""
    header = _header(source)
    tables = list(read_records(source.path, header, source.null_values))
    return pa.concat_tables(tables) if tables else _empty(header)


def _empty(header: Header) -> pa.Table:
    names = [*header.names, SOURCE_ERROR]
    empty = pa.table({n: pa.array([], pa.string()) for n in names})
    return empty.append_column(SOURCE_LINE, pa.array([], pa.int64()))


def partition_values(table: pa.Table, source: SourceTable) -> pa.ChunkedArray | pa.Array:
    """Each row's partition value as the pipeline matches it: surrounding blanks trimmed."""
    return pc.utf8_trim_whitespace(table[source.partition_column])


def read_partition(source: SourceTable, partition_key: str) -> pa.Table:
    """The rows whose partition column equals `partition_key`, in file order."""
    batches = list(read_partition_batches(source, partition_key))
    return pa.Table.from_batches(batches) if batches else _empty(_header(source))


def partition_keys(source: SourceTable) -> list[str]:
    """The distinct non-empty partition values present in the table, sorted."""
    keys: set[str] = set()
    for table in read_batches(source):
        keys.update(v for v in pc.unique(partition_values(table, source)).to_pylist() if v)
    return sorted(keys)


def read_partition_batches(
    source: SourceTable, partition_key: str, block_size: int = BLOCK_SIZE
) -> Iterator[pa.RecordBatch]:
    """`read_partition` as a stream of record batches, one block of whole records at a time, so
    a table much bigger than memory can be built into requests (`requests.lines.stream_requests`).
    """
    for table in read_batches(source, block_size):
        keep = pc.fill_null(pc.equal(partition_values(table, source), partition_key), False)
        if not pc.all(keep).as_py():
            table = table.filter(keep)
        yield from table.to_batches()
