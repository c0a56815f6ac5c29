"""What every source is: a table with a key, a partition column, a schema known before reading,
and a stream of record batches for one partition's rows.

A source streams one record batch at a time, so the rows of a partition of millions are never
all in memory; it reads only the columns it is asked for and pushes the partition down to its
storage where it can (`sources.partitions.Selection`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.errors import SourceError
from batch_pipeline.sources.partitions import Selection

# Rows per record batch a source hands out: small enough for flat memory, big enough that
# column-wise work dominates per-batch overhead.
BATCH_ROWS = 64_000
T = TypeVar("T")

__all__ = ["BATCH_ROWS", "Source", "SourceError", "absolute", "key_tuple", "masked", "partition_mapping", "read_ahead"]


def key_tuple(key: str | Sequence[str]) -> tuple[str, ...]:
    """A key of one column (a name) or several (a composite key) as a tuple of names."""
    names = (key,) if isinstance(key, str) else tuple(key)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"a source key is a column name or a list of them, not {key!r}")
    return names


def absolute(location: str | os.PathLike[str], what: str) -> str | Path:
    """A URL as given, or a local path that must be absolute: a relative one would be read from
    wherever the process happens to run (the daemon, a run worker, a test)."""
    if isinstance(location, str) and "://" in location:
        return location
    path = Path(location)
    if not path.is_absolute():
        raise ValueError(f"{what} '{location}' is a relative path; give an absolute path (e.g. "
                         "Path(__file__).parent / 'data' / 'table.parquet') or a URL")
    return path


def partition_mapping(column: str | Mapping[str, str] | None) -> dict[str, str]:
    """The partition column by dimension: `""` for a one-dimensional definition."""
    if column is None:
        return {}
    return {"": column} if isinstance(column, str) else dict(column)


class Source(ABC):
    """A table a use case reads. Subclasses are frozen dataclasses with `key` (a column or a
    list of columns) and `partition_column` (a column, a mapping of multi-partition dimension to
    column, or None when the use case is unpartitioned or its upstream asset is)."""

    kind: str = "table"  # the Dagster kind shown on the source asset
    key: str | Sequence[str]
    partition_column: str | Mapping[str, str] | None

    @property
    def key_columns(self) -> tuple[str, ...]:
        return key_tuple(self.key)

    @property
    def partition_columns(self) -> dict[str, str]:
        return partition_mapping(self.partition_column)

    @abstractmethod
    def describe(self) -> str:
        """What the source is, for messages: its kind, then a path, URL, query or asset key (never
        a secret), so an error names the source as the use case declared it."""

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The columns and their types, known before any row is read."""

    @abstractmethod
    def read(self, selection: Selection, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The partition's rows in source order, one record batch at a time; `columns` (None: all)
        are the columns to read. A source that cannot be read raises `SourceError`."""

    def opened(self) -> AbstractContextManager[None]:
        """A hold on what the source opens, shared by the block's `schema` and `read` calls (a
        database connection); nothing for most sources."""
        return nullcontext()

    def columns(self) -> list[str]:
        return self.schema().names

    def error(self, why: object) -> SourceError:
        return SourceError(f"{self.describe()} cannot be read: {why}")


def read_ahead(tables: Iterator[T]) -> Iterator[T]:
    """The items, the next one read in a thread while the caller works on this one: parsing and
    decoding release the GIL, so reading and building requests share the cores. One ahead at
    most, so memory holds two blocks whatever the table's size."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="source-reader") as reader:
        upcoming = reader.submit(next, tables, None)
        try:
            while (item := upcoming.result()) is not None:
                upcoming = reader.submit(next, tables, None)
                yield item
        finally:
            upcoming.cancel()
            wait([upcoming])
            close = getattr(tables, "close", None)
            if close is not None:
                close()


def masked(batches: Iterator[pa.RecordBatch], selection: Selection,
           columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
    """The batches' rows in the partition, with only `columns` (and the order kept)."""
    for batch in batches:
        keep = selection.mask(batch)
        if keep is not None and not pc.all(keep).as_py():  # a filter copies every column, even to keep all
            batch = batch.filter(keep)
        if columns is not None:
            batch = batch.select(list(columns))
        if batch.num_rows:
            yield batch
