"""A use case: a source table, its `BatchSpec` and its partitions, with the names derived from them."""

from dataclasses import dataclass
from functools import cached_property

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.cost import Estimate, estimate
from batch_pipeline.requests.lines import PENDING
from batch_pipeline.spec import RESULT_COLUMNS, BatchSpec, SourceTable, SpecError


@dataclass(frozen=True)
class UseCase:
    """One use case: a source table, its spec and its partitions."""

    spec: BatchSpec
    source: SourceTable
    partitions_def: dg.PartitionsDefinition

    def __post_init__(self) -> None:
        if self.source.key in RESULT_COLUMNS or self.source.key == "partition":
            raise SpecError(
                f"spec '{self.name}': key column '{self.source.key}' clashes with a result column; "
                "rename it in the source table"
            )

    @property
    def name(self) -> str:
        return self.spec.name

    def estimate(self, index: pa.Table) -> Estimate:
        """The cost estimate of a partition's request index; a clear error for an unpriced model."""
        to_send = pc.equal(index["status"], PENDING)
        try:
            return estimate(
                self.spec.model,
                self.spec.price_per_million_tokens,
                index["estimated_input_tokens"].filter(to_send).to_pylist(),
                self.spec.output_tokens_per_request(),
            )
        except LookupError as exc:
            raise dg.Failure(f"spec '{self.name}': {exc}") from exc

    def key(self, stage: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, stage])

    @property
    def submit_job_name(self) -> str:
        return f"{self.name}_submit"

    @property
    def results_job_name(self) -> str:
        return f"{self.name}_results"

    @cached_property
    def submit_job(self):  # type inferred: the job class is not public in dagster 1.13
        return dg.define_asset_job(
            self.submit_job_name,
            selection=[self.key("requests"), self.key("batches")],
            description=f"Build and submit {self.name} batch requests for a partition.",
        )

    @cached_property
    def admit_job(self):  # type inferred: the job class is not public in dagster 1.13
        return dg.define_asset_job(
            f"{self.name}_admit",
            selection=[self.key("batches")],
            description=f"Submit {self.name} shards that waited for enqueued-token capacity.",
        )

    @property
    def record_keys(self) -> list[dg.AssetKey]:
        """The assets whose materializations record what was submitted for a partition."""
        return [self.key("batches"), self.key("results")]

    @cached_property
    def results_job(self):  # type inferred: the job class is not public in dagster 1.13
        return dg.define_asset_job(
            self.results_job_name,
            selection=[self.key("results")],
            description=f"Harvest finished {self.name} batches into Parquet.",
        )
