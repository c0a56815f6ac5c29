"""Anthropic's Message Batches, on the official `anthropic` client: an adapter of the provider
port (`contract.py`).

A batch is created from its requests inline (no file upload) and holds no metadata, so it
cannot carry our idempotency key: the two-phase intent log finds a shard's batch, and a crash
between the create and the record blocks the partition with its candidates named
(docs/provider-port.md). Create calls go out with the client's retries off for the same reason:
a retried POST could create a second, billed batch. Results are a JSONL stream, one line per
request in any order, with their own outcome (`succeeded`, `errored`, `canceled`, `expired`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pyarrow as pa
from anthropic.types.messages import MessageBatch

from batch_pipeline.provider.anthropic_results import parse_results
from batch_pipeline.provider.contract import (
    GeneratedImage,
    ProviderBatch,
    ProviderSettingError,
    ProviderUnavailable,
    RequestCounts,
    RequestEncoding,
    shard_limits,
)
from batch_pipeline.provider.listing import created_since, states_of
from batch_pipeline.provider.openai_api import public_url
from batch_pipeline.spec import BatchSpec

DEFAULT_BASE_URL = "https://api.anthropic.com"
MAX_REQUESTS = 100_000  # per batch
MAX_BYTES = 256 * 1024 * 1024  # per batch's create body
DEFAULT_MAX_TOKENS = 1024  # Anthropic requires max_tokens; a spec that names none gets this
LIST_PAGE_SIZE = 100
CHAT_ENDPOINTS = ("/v1/chat/completions", "/v1/responses")
# The spec's parameters (named as OpenAI names them) and their Messages API names.
PARAMETERS = {"max_tokens": "max_tokens", "max_completion_tokens": "max_tokens", "max_output_tokens": "max_tokens",
              "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "stop": "stop_sequences"}


@dataclass(frozen=True)
class AnthropicEncoding:
    """Request lines as Message Batches take them: `{"custom_id", "params"}`, the params those of
    one Messages API call (model, max_tokens, system, one user message, parameters, JSON output)."""

    model: str
    max_requests: int
    max_bytes: int
    params: Mapping[str, Any]
    tokens_per_message: int = 3
    tokens_per_reply: int = 3

    @property
    def signature(self) -> bytes:
        return b'"params":{"model":' + orjson.dumps(self.model)

    def line(self, custom_id: str, texts: Mapping[str, str]) -> dict[str, Any]:
        system = {"system": texts["system"]} if "system" in texts else {}
        return {"custom_id": custom_id, "params": {"model": self.model, **system, "messages": [
            {"role": "user", "content": texts["user"]}], **self.params}}

    def count_tokens(self, texts: list[str]) -> list[int]:
        """An offline approximation (no tokenizer of Claude's ships): about 3.5 characters a token;
        the estimate's learned correction from harvested partitions absorbs the difference."""
        return [-(-len(text) * 2 // 7) for text in texts]


def anthropic_params(spec: BatchSpec) -> dict[str, Any]:
    """The spec's parameters as the Messages API names them, `max_tokens` always set, and a
    response model as JSON output (`output_config`, the schema as the SDK transforms it)."""
    unknown = sorted(set(spec.parameters) - PARAMETERS.keys())
    if unknown:
        raise ProviderSettingError(f"spec '{spec.name}': anthropic takes no parameter {unknown} "
                                   f"(it takes {sorted(PARAMETERS)})")
    params: dict[str, Any] = {"max_tokens": DEFAULT_MAX_TOKENS}
    for name, value in spec.parameters.items():
        params[PARAMETERS[name]] = [value] if name == "stop" and isinstance(value, str) else value
    if spec.response_model is not None:
        params["output_config"] = {"format": {"type": "json_schema",
                                              "schema": anthropic.transform_schema(spec.response_model)}}
    return params


@dataclass(frozen=True)
class AnthropicProvider:
    """Anthropic's Message Batches API; unset fields are read by the `anthropic` client from its
    variables (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    name: str = field(default="anthropic", init=False)
    deployments: Mapping[str, str] = field(default_factory=dict, init=False)

    def client(self, http_client: Any = None, **options: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(api_key=self.api_key, base_url=self.base_url, http_client=http_client, **options)

    def connect(self, http_client: Any = None, **options: Any) -> AnthropicBatchAPI:
        return AnthropicBatchAPI(self, self.client(http_client, **options))

    def at(self, origin: str, api_key: str) -> AnthropicProvider:
        return dataclasses.replace(self, base_url=origin.rstrip("/"), api_key=api_key)

    def encoding(self, spec: BatchSpec) -> RequestEncoding:
        if spec.endpoint not in CHAT_ENDPOINTS:
            raise ProviderSettingError(f"use case '{spec.name}': anthropic has no batch endpoint for "
                                       f"{spec.endpoint} (Message Batches serve chat requests only)")
        requests, size = shard_limits(spec, MAX_REQUESTS, MAX_BYTES)
        return AnthropicEncoding(spec.model_for(self.name), requests, size, anthropic_params(spec))

    def describe(self) -> str:
        return f"Anthropic {public_url(self.base_url or DEFAULT_BASE_URL)}"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.name}|{self.describe()}".encode()).hexdigest()[:16]


def provider_batch(batch: MessageBatch) -> ProviderBatch:
    """A Message Batch in the pipeline's vocabulary: `ended` is cancelled when a cancel was asked,
    expired when every request expired, else completed (each result line has its own outcome)."""
    counts = batch.request_counts
    total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
    if batch.processing_status == "in_progress":
        status = "in_progress"
    elif batch.processing_status == "canceling":
        status = "cancelling"
    elif batch.cancel_initiated_at is not None:
        status = "cancelled"
    else:
        status = "expired" if total and counts.expired == total else "completed"
    return ProviderBatch(batch.id, status, batch.created_at.timestamp(),
                         RequestCounts(total, counts.succeeded, counts.errored + counts.canceled + counts.expired))


@dataclass
class AnthropicBatchAPI:
    """The contract's operations on one `anthropic` client."""

    provider: AnthropicProvider
    client: anthropic.Anthropic
    calls: int = 0
    holds_keys: bool = field(default=False, init=False)

    def pages(self) -> Iterator[list[ProviderBatch]]:
        """Pages of batches, newest first, one list call per page."""
        after: str | None = None
        while True:
            self.calls += 1
            page = self.client.messages.batches.list(limit=LIST_PAGE_SIZE, after_id=after or anthropic.omit)
            if not page.data:
                return
            yield [provider_batch(b) for b in page.data]
            if not page.has_more:
                return
            after = page.last_id or page.data[-1].id

    def submit(self, data: bytes, encoding: RequestEncoding, key: str, tags: Mapping[str, str],
               earlier_attempt: bool, log: Callable[[str], None]) -> ProviderBatch:
        requests = [orjson.loads(line) for line in data.splitlines() if line.strip()]
        self.calls += 1
        batch = self.client.with_options(max_retries=0).messages.batches.create(requests=requests)
        log(f"sent {len(requests)} requests inline")
        return provider_batch(batch)

    def find(self, keys: set[str], since: float) -> dict[str, ProviderBatch]:
        raise NotImplementedError("Message Batches hold no idempotency key: the intent log finds a shard's batch")

    def created_since(self, since: float) -> list[ProviderBatch]:
        return created_since(self.pages(), since)

    def enqueued_tokens(self, model: str) -> int:
        return 0  # batches hold no tags to count ours by

    def batches(self, batch_ids: set[str], since: float) -> dict[str, ProviderBatch]:
        try:
            return states_of(self.pages(), self._known, batch_ids, since)
        except anthropic.APIError as exc:  # its text may echo request details: only its type is kept
            raise ProviderUnavailable(f"listing batches failed: {type(exc).__name__}") from None

    def _known(self, batch_id: str) -> ProviderBatch | None:
        try:
            return self.retrieve(batch_id)
        except anthropic.NotFoundError:
            return None

    def retrieve(self, batch_id: str) -> ProviderBatch:
        self.calls += 1
        return provider_batch(self.client.messages.batches.retrieve(batch_id))

    def result_kinds(self, batch: ProviderBatch) -> Sequence[str]:
        return ["output"] if batch.terminal else []

    def download(self, batch: ProviderBatch, kind: str) -> bytes:
        """The results stream's bytes as sent (the SDK would parse them line by line)."""
        self.calls += 2  # the SDK retrieves the batch for its results_url first
        return self.client.messages.batches.with_raw_response.results(batch.id).read()

    def parse_results(self, files: Sequence[bytes | Path]) -> pa.Table:
        return parse_results(files)

    def images(self, files: Sequence[bytes | Path]) -> Iterator[GeneratedImage]:
        return iter(())  # no image endpoint here: `encoding` refuses one before anything is built

    def cancel(self, batch_id: str) -> ProviderBatch:
        self.calls += 1
        return provider_batch(self.client.messages.batches.cancel(batch_id))

    def delete_file(self, file_id: str) -> bool:
        return False  # Message Batches keep no files of ours; results expire with the batch
