"""A use case: a source, its `BatchSpec` and its partitions, with the names derived from them.

Its asset keys and jobs are Dagster's: `batch_pipeline/dagster/jobs.py` derives them from it."""

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.cost import NO_HISTORY, Basis, Estimate, History, bands, estimate, price_for
from batch_pipeline.errors import SpecError, UnpricedModel
from batch_pipeline.index_status import CARRIED, PENDING
from batch_pipeline.sources.asset import AssetSource
from batch_pipeline.sources.base import Source
from batch_pipeline.sources.partitions import Selection, dimensions, selection_for
from batch_pipeline.spec import IMAGES_ENDPOINT, RESULT_COLUMNS, BatchSpec

# The one "partition" of an unpartitioned use case, in the warehouse, leases and state documents;
# Dagster itself sees no partition key.
WHOLE_TABLE = "all"


@dataclass(frozen=True)
class ResourceKeys:
    """The resource keys the use case's assets and the batch monitor use."""

    warehouse: str = "warehouse"
    batch_api: str = "batch_api"


@dataclass(frozen=True)
class UseCase:
    """One use case: a source, its spec and its partitions (None: one unpartitioned table).

    `key_prefix` and `resource_keys` are set by `definitions_for`, so two sets of use cases, or
    a project's own `warehouse` resource, never clash.
    """

    spec: BatchSpec
    source: Source
    partitions_def: dg.PartitionsDefinition | None = None
    key_prefix: tuple[str, ...] = ()
    resource_keys: ResourceKeys = field(default_factory=ResourceKeys)

    def __post_init__(self) -> None:
        for key in self.source.key_columns:
            if key in RESULT_COLUMNS or key == "partition":
                raise SpecError(f"spec '{self.spec.name}': key column '{key}' clashes with a result column; "
                                "rename it in the source table")
        if not all(part.isidentifier() for part in self.key_prefix):
            raise SpecError(f"spec '{self.spec.name}': key prefix {self.key_prefix} must be Python identifiers")
        self._check_partition_columns()

    def _check_partition_columns(self) -> None:
        """Every dimension of the partitions has a column, unless an upstream asset's IO manager
        loads exactly the partition's rows."""
        wanted = {name for name, _ in dimensions(self.partitions_def)}
        given = set(self.source.partition_columns)
        if given == wanted or (not given and isinstance(self.source, AssetSource)):
            return
        if self.partitions_def is None:
            raise SpecError(f"spec '{self.spec.name}': the use case has no partitions, so its source takes "
                            "no partition_column")
        if wanted == {""}:
            raise SpecError(f"spec '{self.spec.name}': partition_column must name the one column that "
                            "selects a partition's rows")
        raise SpecError(f"spec '{self.spec.name}': partition_column must map each dimension "
                        f"{sorted(wanted)} to its column, not {sorted(given)}")

    def on(self, provider: str) -> "UseCase":
        """The use case as it runs on `provider`: its spec names that provider's model
        (`BatchSpec.models`), so estimates, prices and learned usage are that model's."""
        try:
            model = self.spec.model_for(provider)
        except SpecError:  # the provider's encoding says why, naming the endpoint first where that fails too
            return self
        if model == self.spec.model:
            return self
        return dataclasses.replace(self, spec=dataclasses.replace(self.spec, model=model))

    @property
    def name(self) -> str:
        """The use case's name in jobs, pools and the warehouse: the spec's, after any prefix."""
        return "__".join([*self.key_prefix, self.spec.name])

    def dagster_partition(self, partition: str) -> str | None:
        """The partition key Dagster knows a partition by (None for an unpartitioned use case)."""
        return None if self.partitions_def is None else partition

    def partition_of(self, dagster_key: str | None) -> str:
        """The partition a Dagster partition key (or none) stands for."""
        return WHOLE_TABLE if self.partitions_def is None or dagster_key is None else dagster_key

    def selection(self, partition: str | None) -> Selection:
        """Which source rows partition `partition` reads (all the rows an upstream asset's IO
        manager loaded for it, when no partition column is named)."""
        if self.partitions_def is None or not self.source.partition_columns:
            return Selection()
        return selection_for(self.partitions_def, partition, self.source.partition_columns)

    @property
    def columns(self) -> list[str]:
        """The source columns the requests need."""
        return [*dict.fromkeys([*self.source.key_columns, *self.spec.template_columns()])]

    def read(self, partition: str | None, source: Source | None = None) -> Iterator[pa.RecordBatch]:
        """The partition's rows, only the columns the requests need, one record batch at a time.
        `source` is the source as loaded for this run (an upstream asset's value)."""
        return (source or self.source).read(self.selection(partition), self.columns)

    def read_table(self, partition: str | None) -> pa.Table:
        """The partition's rows as one table (small tables and tests)."""
        source = self.source
        batches = list(self.read(partition))
        if batches:
            return pa.Table.from_batches(batches)
        schema = source.schema()
        return schema.empty_table().select([n for n in schema.names if n in self.columns])

    def estimate(self, index: pa.Table, history: History = NO_HISTORY, with_kept: bool = False) -> Estimate:
        """The cost estimate of a partition's request index, learned from `history` (earlier
        harvests of this use case, model and spec), else from the spec's prior; `UnpricedModel` for
        an unpriced model. The requests to send, and with `with_kept` also those whose earlier
        answer was kept: what the partition's answers cost, beside their actual cost."""
        sent = pa.array([PENDING, CARRIED] if with_kept else [PENDING])
        return self.estimate_tokens(
            index["estimated_input_tokens"].filter(pc.is_in(index["status"], value_set=sent)), history)

    def estimate_tokens(self, tokens: pa.ChunkedArray, history: History = NO_HISTORY) -> Estimate:
        """`estimate` from the estimated input tokens of each request to send, all an index
        contributes (a partition's build keeps these, not its index)."""
        basis = Basis.learned(self.spec.output_tokens_prior(), history)
        try:
            price = price_for(self.spec.model, self.spec.price_per_million_tokens)
        except LookupError as exc:
            raise UnpricedModel(f"spec '{self.name}': {exc}") from None
        if self.spec.endpoint == IMAGES_ENDPOINT:
            price = price.for_images()
        return estimate(price, bands(tokens, price.thresholds(), basis.input_scale), basis)
