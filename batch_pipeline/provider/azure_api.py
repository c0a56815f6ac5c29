"""Azure OpenAI's Batch API: the second adapter of the provider port, on `openai.AzureOpenAI`.

It speaks OpenAI's protocol (`openai_api.OpenAIBatchAPI` makes the calls) to
`{endpoint}/openai/...?api-version=V` with an `api-key` header, with Azure's differences: a
request line names the Global-Batch deployment as its `model` and the endpoint without `/v1` as
its `url` (`/chat/completions`), an input file holds up to 100,000 requests, and files (uploads,
and a batch's output and error files) may be kept 14 to 30 days only: a spec asking for less is
refused before anything is uploaded. Its other forms (PascalCase statuses, ISO-8601
timestamps, null counts, `""` file ids) are read by `openai_wire.provider_batch`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import openai

from batch_pipeline.provider.contract import ProviderSettingError, RequestEncoding
from batch_pipeline.provider.openai_api import OpenAIBatchAPI, openai_encoding, public_url
from batch_pipeline.provider.openai_wire import OUTPUT_EXPIRY_SECONDS
from batch_pipeline.spec import BatchSpec

AZURE_MAX_REQUESTS = 100_000
AZURE_MAX_BYTES = 200 * 1024 * 1024
# Azure keeps an uploaded file, and a batch's output and error files, 14 to 30 days.
AZURE_EXPIRY_RANGE = (14 * 24 * 3600, 30 * 24 * 3600)
AZURE_INPUT_EXPIRY_SECONDS = AZURE_EXPIRY_RANGE[0]  # the shortest Azure accepts
AZURE_DEPLOYMENTS_VARIABLE = "BATCH_PIPELINE_AZURE_DEPLOYMENTS"


@dataclass(frozen=True)
class AzureOpenAIProvider:
    """An Azure OpenAI resource: its endpoint (`https://RESOURCE.openai.azure.com`), the API
    version, its key, and the Global-Batch deployment that serves each model."""

    endpoint: str
    api_version: str
    api_key: str | None = field(default=None, repr=False)
    deployments: Mapping[str, str] = field(default_factory=dict)
    input_expires_after_seconds: int = AZURE_INPUT_EXPIRY_SECONDS
    output_expires_after_seconds: int = OUTPUT_EXPIRY_SECONDS
    name: str = field(default="azure", init=False)
    max_requests: int = field(default=AZURE_MAX_REQUESTS, init=False)
    max_bytes: int = field(default=AZURE_MAX_BYTES, init=False)
    expiry_range: tuple[int, int] = field(default=AZURE_EXPIRY_RANGE, init=False)

    def client(self, http_client: Any = None, **options: Any) -> openai.OpenAI:
        return openai.AzureOpenAI(azure_endpoint=self.endpoint, api_version=self.api_version, api_key=self.api_key,
                                  http_client=http_client, **options)

    def connect(self, http_client: Any = None, **options: Any) -> OpenAIBatchAPI:
        return OpenAIBatchAPI(self, self.client(http_client, **options))

    def encoding(self, spec: BatchSpec) -> RequestEncoding:
        return openai_encoding(self, spec)

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

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.name}|{public_url(self.endpoint)}".encode()).hexdigest()[:16]


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
