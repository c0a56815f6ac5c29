"""The providers the pipeline can speak, by the name users give (`BATCH_PIPELINE_PROVIDER`).

A new provider is its adapter module and one entry here (and its resource in
`dagster/resources.py`, which reads its settings and key from the environment).
"""

from __future__ import annotations

from batch_pipeline.provider.azure_api import AzureOpenAIProvider
from batch_pipeline.provider.contract import Provider, RequestEncoding
from batch_pipeline.provider.openai_api import OpenAIProvider
from batch_pipeline.spec import BatchSpec

PROVIDERS: dict[str, type] = {"openai": OpenAIProvider, "azure": AzureOpenAIProvider}
DEFAULT_PROVIDER = "openai"


def default_provider() -> Provider:
    """The provider requests are written for when none is named: OpenAI, with the `openai`
    client's own environment (OPENAI_API_KEY, OPENAI_BASE_URL)."""
    return OpenAIProvider()


def default_encoding(spec: BatchSpec) -> RequestEncoding:
    return default_provider().encoding(spec)
