"""batch_pipeline: any table to OpenAI Batch API work, orchestrated by Dagster.

The engine knows no use case: a use case hands a `SourceTable` and a `BatchSpec` to `UseCase`.
"""

from batch_pipeline.factory import UseCase
from batch_pipeline.monitor import build_batch_monitor
from batch_pipeline.resources import BatchAPIResource, WarehouseResource
from batch_pipeline.spec import BatchSpec, SourceTable, SpecError

__all__ = [
    "BatchAPIResource",
    "BatchSpec",
    "SourceTable",
    "SpecError",
    "UseCase",
    "WarehouseResource",
    "build_batch_monitor",
]
