"""OpenAI and Azure OpenAI: the two implementations of the provider contract (`contract.py`).

Both are spoken to through the official `openai` package: `openai.OpenAI`, and
`openai.AzureOpenAI`, which sends files and batches to `{endpoint}/openai/...?api-version=V`
with an `api-key` header (reference §8).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai

from batch_pipeline.provider.contract import FileLimits, ProviderSettingError
from batch_pipeline.spec import MAX_BYTES_PER_FILE, MAX_REQUESTS_PER_FILE

DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_LIMITS = FileLimits(MAX_REQUESTS_PER_FILE, MAX_BYTES_PER_FILE)
AZURE_LIMITS = FileLimits(100_000, 200 * 1024 * 1024)  # per input file (reference §8)
# A batch runs within a day and its lines stay in the warehouse, so the provider's copy is kept
# briefly (a crashed run leaks no storage): a week on OpenAI; Azure accepts 14 to 30 days only.
OPENAI_INPUT_FILE_TTL_SECONDS = 7 * 24 * 3600
AZURE_INPUT_FILE_TTL_SECONDS = 14 * 24 * 3600
AZURE_DEPLOYMENTS_VARIABLE = "BATCH_PIPELINE_AZURE_DEPLOYMENTS"


def public_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for logs and metadata."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class OpenAIProvider:
    """OpenAI's Batch API, or an OpenAI-compatible one at `base_url`; unset fields are read by
    the `openai` client from its variables (OPENAI_API_KEY, OPENAI_BASE_URL, ...)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    organization: str | None = None
    project: str | None = None
    name: str = field(default="openai", init=False)
    limits: FileLimits = field(default=OPENAI_LIMITS, init=False)
    input_file_ttl_seconds: int = field(default=OPENAI_INPUT_FILE_TTL_SECONDS, init=False)
    deployments: Mapping[str, str] = field(default_factory=dict, init=False)

    def client(self, http_client: httpx2.Client | None = None, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(api_key=self.api_key, base_url=self.base_url, organization=self.organization,
                             project=self.project, http_client=http_client, **options)

    def at(self, origin: str, api_key: str) -> OpenAIProvider:
        return dataclasses.replace(self, base_url=f"{origin.rstrip('/')}/v1", api_key=api_key)

    def line_url(self, endpoint: str) -> str:
        return endpoint

    def line_model(self, model: str) -> str:
        return model

    def describe(self) -> str:
        return public_url(self.base_url or DEFAULT_BASE_URL)


@dataclass(frozen=True)
class AzureOpenAIProvider:
    """An Azure OpenAI resource: its endpoint (`https://RESOURCE.openai.azure.com`), the API
    version, its key, and the Global-Batch deployment that serves each model.

    A request line names the deployment as its `model` and the endpoint without `/v1` as its
    `url` (`/chat/completions`), the form Azure's batch documentation uses; the batch is created
    with the same endpoint.
    """

    endpoint: str
    api_version: str
    api_key: str | None = field(default=None, repr=False)
    deployments: Mapping[str, str] = field(default_factory=dict)
    name: str = field(default="azure", init=False)
    limits: FileLimits = field(default=AZURE_LIMITS, init=False)
    input_file_ttl_seconds: int = field(default=AZURE_INPUT_FILE_TTL_SECONDS, init=False)

    def client(self, http_client: httpx2.Client | None = None, **options: Any) -> openai.OpenAI:
        return openai.AzureOpenAI(azure_endpoint=self.endpoint, api_version=self.api_version, api_key=self.api_key,
                                  http_client=http_client, **options)

    def at(self, origin: str, api_key: str) -> AzureOpenAIProvider:
        return dataclasses.replace(self, endpoint=origin.rstrip("/"), api_key=api_key)

    def line_url(self, endpoint: str) -> str:
        return endpoint.removeprefix("/v1")

    def line_model(self, model: str) -> str:
        deployment = self.deployments.get(model)
        if not deployment:
            known = ", ".join(f"{m}={d}" for m, d in sorted(self.deployments.items())) or "none"
            raise ProviderSettingError(
                f"Azure OpenAI has no deployment for model '{model}' (deployments: {known}); map it in "
                f"AzureOpenAIProviderResource(deployments={{'{model}': ...}}) or in {AZURE_DEPLOYMENTS_VARIABLE} "
                f"('{model}=<deployment name>')"
            )
        return deployment

    def describe(self) -> str:
        return f"Azure OpenAI {public_url(self.endpoint)} (api-version {self.api_version})"


def parse_deployments(text: str) -> dict[str, str]:
    """`model=deployment` pairs separated by commas (BATCH_PIPELINE_AZURE_DEPLOYMENTS)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        model, _, deployment = (side.strip() for side in item.partition("="))
        if not model or not deployment:
            raise ProviderSettingError(
                f"{AZURE_DEPLOYMENTS_VARIABLE}: '{item}' is not model=deployment "
                "(e.g. gpt-4o-mini=gpt-4o-mini-batch,text-embedding-3-small=embeddings-batch)"
            )
        pairs[model] = deployment
    return pairs
