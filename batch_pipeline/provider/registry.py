"""The providers the pipeline can speak, by the name users give (`BATCH_PIPELINE_PROVIDER`).

OpenAI, Azure OpenAI, Anthropic and Gemini are built in: each has a resource in `dagster/resources.py` that reads
its settings and key, and falls back to the embedded local Batch API without a key. Any other
provider is its adapter module and one `register(name, factory)` call: the factory builds the
provider from its own settings (its environment), and the Dagster resource speaks to its real
API when `BATCH_PIPELINE_PROVIDER` names it.
"""

from __future__ import annotations

from collections.abc import Callable

from batch_pipeline.provider.contract import Provider, RequestEncoding
from batch_pipeline.provider.openai_api import OpenAIProvider
from batch_pipeline.spec import BatchSpec

BUILT_IN = ("openai", "azure", "anthropic", "gemini")
REGISTERED: dict[str, Callable[[], Provider]] = {}


def register(name: str, factory: Callable[[], Provider]) -> None:
    """Make `name` a provider the pipeline can be set to speak."""
    if name in BUILT_IN:
        raise ValueError(f"'{name}' is a built-in provider")
    REGISTERED[name] = factory


def names() -> list[str]:
    return [*BUILT_IN, *REGISTERED]


def default_provider() -> Provider:
    """The provider requests are written for when none is named: OpenAI, with the `openai`
    client's own environment (OPENAI_API_KEY, OPENAI_BASE_URL)."""
    return OpenAIProvider()


def default_encoding(spec: BatchSpec) -> RequestEncoding:
    return default_provider().encoding(spec)
