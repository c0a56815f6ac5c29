"""An upstream Dagster asset as a source: a dbt model, an ingestion asset, any asset whose IO
manager loads a pandas DataFrame, a Polars DataFrame or an Arrow table.

The requests asset takes the upstream asset as its input, so the lineage shows it, and the IO
manager loads the partition that matches the run's (identity mapping for the same partitions,
a time-window mapping between cadences, or a mapping the use case gives).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa

from batch_pipeline.sources.base import BATCH_ROWS, Source, SourceError, masked
from batch_pipeline.sources.partitions import Selection


@dataclass(frozen=True)
class AssetSource(Source):
    """The rows of the upstream asset `asset`. `partition_column` is needed only when the loaded
    value holds rows of other partitions too (an unpartitioned upstream, say); otherwise every
    loaded row is the partition's. `partition_mapping` overrides Dagster's default mapping."""

    asset: dg.AssetKey | str | Sequence[str]
    key: str | Sequence[str]
    partition_column: str | Mapping[str, str] | None = None
    partition_mapping: dg.PartitionMapping | None = None
    kind = "asset"

    def __post_init__(self) -> None:
        object.__setattr__(self, "asset", dg.AssetKey.from_coercible(self.asset))

    @property
    def asset_key(self) -> dg.AssetKey:
        assert isinstance(self.asset, dg.AssetKey)
        return self.asset

    def describe(self) -> str:
        return f"upstream asset {self.asset_key.to_user_string()}"

    def schema(self) -> pa.Schema:
        raise SourceError(f"{self.describe()}: its columns are known once its IO manager loads it")

    def read(self, selection: Selection, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        raise SourceError(f"{self.describe()} is read by the requests asset's input, not directly")

    def loaded(self, value: Any) -> LoadedSource:
        """The source over what the IO manager loaded for this run."""
        return LoadedSource(self, to_arrow(value, self.describe()))


@dataclass(frozen=True)
class LoadedSource(Source):
    """An upstream asset's value, loaded for one run, as a source."""

    upstream: AssetSource
    table: pa.Table

    @property
    def key(self) -> str | Sequence[str]:  # type: ignore[override]  # the upstream's key
        return self.upstream.key

    @property
    def partition_column(self) -> str | Mapping[str, str] | None:  # type: ignore[override]
        return self.upstream.partition_column

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.upstream.kind

    def describe(self) -> str:
        return self.upstream.describe()

    def schema(self) -> pa.Schema:
        return self.table.schema

    def read(self, selection: Selection, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        return masked(iter(self.table.to_batches(max_chunksize=BATCH_ROWS)), selection, columns)


def to_arrow(value: Any, what: str) -> pa.Table:
    """A pandas or Polars DataFrame, an Arrow table or batches, or a dict of those by partition
    (how Dagster's file IO managers load several partitions) as one Arrow table."""
    if isinstance(value, Mapping):
        parts = [to_arrow(value[k], what) for k in sorted(value)]
        return pa.concat_tables(parts, promote_options="default") if parts else pa.table({})
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if hasattr(value, "to_arrow"):  # Polars
        return value.to_arrow()
    if type(value).__module__.startswith("pandas"):
        try:
            return pa.Table.from_pandas(value, preserve_index=False)
        except (TypeError, ValueError, pa.ArrowException) as exc:
            raise SourceError(f"{what}: its loaded value cannot become an Arrow table: {exc}") from None
    raise SourceError(f"{what}: its IO manager loaded a {type(value).__name__}; a source needs a pandas "
                      "or Polars DataFrame or an Arrow table")
