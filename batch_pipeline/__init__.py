"""batch_pipeline: any table to batch API work (OpenAI, Azure OpenAI, Anthropic, Gemini), orchestrated by Dagster.

The engine knows no use case: a use case hands a source (`CsvSource`,
`FileSource`, `SqlSource`, `AssetSource`) and a `BatchSpec` to `UseCase`.
Names are imported on first use so that the local Batch API and the CLI start without loading
Dagster.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AnthropicProviderResource": "batch_pipeline.dagster.resources",
    "AzureOpenAIProviderResource": "batch_pipeline.dagster.resources",
    "BatchAPIResource": "batch_pipeline.dagster.resources",
    "BatchPipelineError": "batch_pipeline.errors",
    "BatchSpec": "batch_pipeline.spec",
    "BatchUseCase": "batch_pipeline.dagster.component",
    "GeminiProviderResource": "batch_pipeline.dagster.resources",
    "LocalBatchAPIResource": "batch_pipeline.dagster.resources",
    "LocalBatchAPISettings": "batch_pipeline.dagster.resources",
    "OpenAIProviderResource": "batch_pipeline.dagster.resources",
    "AssetSource": "batch_pipeline.sources.asset",
    "CsvSource": "batch_pipeline.sources.csv_source",
    "FileSource": "batch_pipeline.sources.files",
    "ResourceKeys": "batch_pipeline.use_case",
    "SqlSource": "batch_pipeline.sources.sql",
    "SpecError": "batch_pipeline.errors",
    "UseCase": "batch_pipeline.use_case",
    "WarehouseResource": "batch_pipeline.dagster.resources",
    "admit_job": "batch_pipeline.dagster.jobs",
    "asset_key": "batch_pipeline.dagster.jobs",
    "build_batch_monitor": "batch_pipeline.dagster.sensor",
    "definitions_for": "batch_pipeline.dagster.definitions",
    "prefixed": "batch_pipeline.dagster.definitions",
    "results_job": "batch_pipeline.dagster.jobs",
    "submit_job": "batch_pipeline.dagster.jobs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'batch_pipeline' has no attribute '{name}'")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    """The lazy exports too: Dagster's `dg` finds `BatchUseCase` by listing the package."""
    return sorted([*globals(), *__all__])
