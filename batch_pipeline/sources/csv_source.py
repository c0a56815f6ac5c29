"""A CSV or TSV table (a local path or an fsspec URL) as a source, read in whole-record blocks.

Every column is read as text so a key like `007` or a date stays exactly as written; templates
insert cells as text anyway. Only an empty cell is null (and any `null_values` marker the source
declares): `NA`, `null` or `nan` in a CSV are words. A line that cannot be read as a row is a
row whose `_source_error` says why (see `csv_records`); every row carries the line it starts on
in `_source_line`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from batch_pipeline.sources.base import Source, absolute, masked, read_ahead
from batch_pipeline.sources.csv_records import (
    BLOCK_SIZE,
    SOURCE_ERROR,
    SOURCE_LINE,
    Header,
    SourceError,
    TablePath,
    read_header,
    read_records,
)
from batch_pipeline.sources.partitions import Equals, Selection

__all__ = [
    "ADDED_COLUMNS",
    "SOURCE_ERROR",
    "SOURCE_LINE",
    "CsvSource",
    "SourceError",
    "read_batches",
    "read_partition",
    "read_partition_batches",
    "read_table",
]
# Columns the reader adds to every table; a source column may not take their names.
ADDED_COLUMNS = (SOURCE_ERROR, SOURCE_LINE)


@dataclass(frozen=True)
class CsvSource(Source):
    """A CSV table (`delimiter="\\t"` for TSV): a local path or an fsspec URL such as
    `s3://bucket/orders.csv`. Malformed lines become rejected rows naming their line."""

    path: TablePath
    key: str | Sequence[str]
    partition_column: str | Mapping[str, str] | None = None
    null_values: tuple[str, ...] = ()
    delimiter: str = ","
    kind = "csv"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", absolute(self.path, "CSV file"))
        object.__setattr__(self, "null_values", tuple(self.null_values))

    @property
    def name(self) -> str:
        return str(self.path).rstrip("/").rsplit("/", 1)[-1]

    def describe(self) -> str:
        return f"CSV file '{self.path}'"

    def schema(self) -> pa.Schema:
        names = _header(self).names
        return pa.schema([(n, pa.string()) for n in names] + [(SOURCE_ERROR, pa.string()), (SOURCE_LINE, pa.int64())])

    def read(self, selection: Selection, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        wanted = None if columns is None else [*dict.fromkeys([*columns, *ADDED_COLUMNS])]
        tables = read_batches(self)
        yield from masked((b for t in tables for b in t.to_batches()), selection, wanted)


def _header(source: CsvSource) -> Header:
    """The header, checked: unique names, none the pipeline adds. A blank header cell (a
    spreadsheet export's column with no title) is named `(blank column N)`: no template or key
    can name a blank column, so its cells flow through unused instead of refusing the table."""
    header = read_header(source.path, delimiter=source.delimiter)
    names = [name if name.strip() else blank_column(number) for number, name in enumerate(header.names, start=1)]
    seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if name in seen:
            raise SourceError(
                f"CSV file '{source.name}' has two columns named '{name}' (columns "
                f"{seen[name]} and {number}); rename one so each cell has one column to go to"
            )
        seen[name] = number
        if name in ADDED_COLUMNS:
            raise SourceError(
                f"CSV file '{source.name}' has a column named '{name}', a name the "
                "pipeline adds to every row; rename it"
            )
    return replace(header, names=names)


def blank_column(number: int) -> str:
    """The name of the `number`th column (from 1) when its header cell is blank."""
    return f"(blank column {number})"


def read_batches(source: CsvSource, block_size: int = BLOCK_SIZE) -> Iterator[pa.Table]:
    """Every row of the table, one block of whole records at a time, in file order."""
    header = _header(source)
    yield from read_ahead(read_records(source.path, header, source.null_values, block_size,
                                        delimiter=source.delimiter))


def read_table(source: CsvSource) -> pa.Table:
    """The whole table (small tables and tests; the pipeline streams with `read_batches`)."""
    tables = list(read_batches(source))
    return pa.concat_tables(tables) if tables else source.schema().empty_table()


def read_partition(source: CsvSource, value: str) -> pa.Table:
    """The rows whose partition column, blanks trimmed, is `value`, in file order (tests and
    tools; a use case selects its partitions with `UseCase.read`)."""
    batches = list(read_partition_batches(source, value))
    return pa.Table.from_batches(batches) if batches else source.schema().empty_table()


def read_partition_batches(source: CsvSource, value: str, block_size: int = BLOCK_SIZE) -> Iterator[pa.RecordBatch]:
    """`read_partition` as a stream of record batches, one block of whole records at a time."""
    assert isinstance(source.partition_column, str), "a one-column partition"
    selection = Selection((Equals(source.partition_column, value),))
    tables = read_batches(source, block_size)
    yield from masked((b for t in tables for b in t.to_batches()), selection, None)
