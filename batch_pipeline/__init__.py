"""batch_pipeline: any table to batch API work (OpenAI, Azure OpenAI, Anthropic, Gemini), orchestrated by Dagster.

The engine knows no use case: a use case hands a source (`CsvSource`, `FileSource`, `SqlSource`,
`AssetSource`) and a `BatchSpec` to `UseCase`.

Names are imported on first use, so that the local Batch API and the CLI start without loading
Dagster (importing them all up front takes about two seconds warm). A type checker reads the
imports under `TYPE_CHECKING` instead, so every export is its real type (the package ships
`py.typed`), and a name that is not exported is an error, not `Any`.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `X as X`: an explicit re-export, also for `mypy --strict`
    from batch_pipeline.dagster.component import BatchUseCase as BatchUseCase
    from batch_pipeline.dagster.definitions import (
        as_defined as as_defined,
    )
    from batch_pipeline.dagster.definitions import (
        definitions_for as definitions_for,
    )
    from batch_pipeline.dagster.definitions import (
        prefixed as prefixed,
    )
    from batch_pipeline.dagster.jobs import (
        admit_job as admit_job,
    )
    from batch_pipeline.dagster.jobs import (
        asset_key as asset_key,
    )
    from batch_pipeline.dagster.jobs import (
        results_job as results_job,
    )
    from batch_pipeline.dagster.jobs import (
        submit_job as submit_job,
    )
    from batch_pipeline.dagster.resources import (
        AnthropicProviderResource as AnthropicProviderResource,
    )
    from batch_pipeline.dagster.resources import (
        AzureOpenAIProviderResource as AzureOpenAIProviderResource,
    )
    from batch_pipeline.dagster.resources import (
        BatchAPIResource as BatchAPIResource,
    )
    from batch_pipeline.dagster.resources import (
        GeminiProviderResource as GeminiProviderResource,
    )
    from batch_pipeline.dagster.resources import (
        LocalBatchAPIResource as LocalBatchAPIResource,
    )
    from batch_pipeline.dagster.resources import (
        LocalBatchAPISettings as LocalBatchAPISettings,
    )
    from batch_pipeline.dagster.resources import (
        OpenAIProviderResource as OpenAIProviderResource,
    )
    from batch_pipeline.dagster.resources import (
        WarehouseResource as WarehouseResource,
    )
    from batch_pipeline.dagster.sensor import build_batch_monitor as build_batch_monitor
    from batch_pipeline.errors import (
        BatchPipelineError as BatchPipelineError,
    )
    from batch_pipeline.errors import (
        SourceError as SourceError,
    )
    from batch_pipeline.errors import (
        SpecError as SpecError,
    )
    from batch_pipeline.sources.asset import AssetSource as AssetSource
    from batch_pipeline.sources.csv_source import CsvSource as CsvSource
    from batch_pipeline.sources.files import FileSource as FileSource
    from batch_pipeline.sources.sql import SqlSource as SqlSource
    from batch_pipeline.spec import BatchSpec as BatchSpec
    from batch_pipeline.use_case import (
        ResourceKeys as ResourceKeys,
    )
    from batch_pipeline.use_case import (
        UseCase as UseCase,
    )

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
    "SourceError": "batch_pipeline.errors",
    "SpecError": "batch_pipeline.errors",
    "UseCase": "batch_pipeline.use_case",
    "WarehouseResource": "batch_pipeline.dagster.resources",
    "admit_job": "batch_pipeline.dagster.jobs",
    "as_defined": "batch_pipeline.dagster.definitions",
    "asset_key": "batch_pipeline.dagster.jobs",
    "build_batch_monitor": "batch_pipeline.dagster.sensor",
    "definitions_for": "batch_pipeline.dagster.definitions",
    "prefixed": "batch_pipeline.dagster.definitions",
    "results_job": "batch_pipeline.dagster.jobs",
    "submit_job": "batch_pipeline.dagster.jobs",
}
__all__ = sorted(_EXPORTS)

if not TYPE_CHECKING:  # hidden from type checkers: a module `__getattr__` would make any name `Any`

    def __getattr__(name: str) -> object:
        if name not in _EXPORTS:
            raise AttributeError(f"module 'batch_pipeline' has no attribute '{name}'")
        return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    """The lazy exports too: Dagster's `dg` finds `BatchUseCase` by listing the package."""
    return sorted([*globals(), *__all__])
