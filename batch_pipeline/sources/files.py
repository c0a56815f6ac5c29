"""Parquet and JSON Lines tables (a file, a folder, a Hive-partitioned dataset; a local path or
an fsspec URL) read with Arrow's dataset API, the partition pushed down to the files.

Only the columns a use case needs are read, and the partition's condition goes to the scanner
as a filter, so Hive folders and Parquet row groups outside the partition are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from batch_pipeline.sources.base import BATCH_ROWS, Source, absolute, masked, read_ahead
from batch_pipeline.sources.partitions import Selection

_FORMATS = {"parquet": "parquet", "jsonl": "json"}
_KIND_NAMES = {"parquet": "Parquet", "jsonl": "JSON Lines"}


@dataclass(frozen=True)
class FileSource(Source):
    """A Parquet or JSON Lines table: one file, a folder of files, or a Hive-partitioned folder
    (`day=2026-11-20/part-0.parquet`, whose folder names become columns). `path` is local or an
    fsspec URL (`s3://bucket/orders/`); `storage_options` go to fsspec (endpoint, profile)."""

    path: str
    key: str | Sequence[str]
    partition_column: str | Mapping[str, str] | None = None
    format: Literal["parquet", "jsonl"] = "parquet"
    hive: bool = True
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in _FORMATS:
            raise ValueError(f"source '{self.path}': format must be one of {sorted(_FORMATS)}, not '{self.format}'")
        object.__setattr__(self, "path", str(absolute(self.path, f"{_KIND_NAMES[self.format]} source")))

    @property
    def kind(self) -> str:  # type: ignore[override]  # the format is the kind
        return self.format

    def describe(self) -> str:
        return f"{_KIND_NAMES[self.format]} source '{self.path}'"

    @cached_property
    def _dataset(self) -> ds.Dataset:
        try:
            filesystem, path = self._filesystem()
            return ds.dataset(path, format=_FORMATS[self.format], filesystem=filesystem,
                              partitioning="hive" if self.hive else None)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise self.error(exc) from exc

    def _filesystem(self) -> tuple[pafs.FileSystem | None, str]:
        """Arrow's own filesystem for a local path; fsspec's (s3fs, gcsfs...) behind Arrow's
        handler for a URL, so credentials and endpoints are configured as for the warehouse."""
        if "://" not in self.path:
            return None, self.path
        fs, path = fsspec.core.url_to_fs(self.path, **self.storage_options)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path

    def schema(self) -> pa.Schema:
        return self._dataset.schema

    def read(self, selection: Selection, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        dataset = self._dataset
        names = None if columns is None else [*dict.fromkeys([*columns, *selection.columns])]
        where = selection.dataset_filter(dataset.schema)
        pieces = (piece.to_table(schema=dataset.schema, columns=names, filter=where)
                  for piece in _pieces(dataset, where))
        try:
            batches = (b for table in read_ahead(pieces) for b in table.to_batches(max_chunksize=BATCH_ROWS))
            yield from masked(batches, selection, columns)
        except (OSError, pa.ArrowInvalid) as exc:
            raise self.error(exc) from exc


def _pieces(dataset: ds.Dataset, where: ds.Expression | None) -> Iterator[ds.Fragment]:
    """The dataset's files, and a Parquet file's row groups, that may hold rows matching `where`
    (statistics rule the others out), one at a time. Arrow's scanner would decode ahead of the
    consumer without bound (a whole 10M-row file while the first batch is built); a piece at a
    time, one read ahead, bounds what reading holds (benchmarks/RESULTS.md, peak memory by source)."""
    for fragment in dataset.get_fragments(filter=where):
        if isinstance(fragment, ds.ParquetFileFragment):
            yield from fragment.split_by_row_group(where, schema=dataset.schema)
        else:
            yield fragment
