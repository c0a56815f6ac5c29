"""OpenAI's Batch API (or an OpenAI-compatible one), on the official `openai` client: the first
adapter of the provider port (`contract.py`).

Batches carry our idempotency key in their metadata, so a batch is found by its key after any
crash. Create calls are sent with the client's own retries turned off: the client retries POSTs
without an idempotency key, so a timeout could otherwise create a second, billed batch. A failed
create is reconciled by looking the batch up by its key before trying again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import openai
import pyarrow as pa

from batch_pipeline.failpoints import failpoint
from batch_pipeline.provider.contract import (
    GeneratedImage,
    Provider,
    ProviderBatch,
    ProviderSettingError,
    ProviderUnavailable,
    QuotaRefused,
    RequestEncoding,
    shard_limits,
)
from batch_pipeline.provider.listing import CLOCK_SLACK_SECONDS, created_since, states_of
from batch_pipeline.provider.openai_images import images_in
from batch_pipeline.provider.openai_results import parse_results
from batch_pipeline.provider.openai_wire import (
    INPUT_EXPIRY_SECONDS,
    OPENAI_EXPIRY_RANGE,
    OUTPUT_EXPIRY_SECONDS,
    OpenAIEncoding,
    body_builder,
    provider_batch,
)
from batch_pipeline.spec import (
    MAX_BYTES_PER_FILE,
    MAX_REQUESTS_PER_FILE,
    PROMPT_ENDPOINTS,
    SUPPORTED_ENDPOINTS,
    BatchSpec,
)
from batch_pipeline.state.backoff import backoff_seconds

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LIST_PAGE_SIZE = 100  # the provider's maximum page size for batches.list
# A batch is terminal within its 24 h completion window (plus finalizing); older ones hold no
# enqueued tokens.
ENQUEUED_WINDOW_SECONDS = 26 * 3600
QUOTA_CODE = "token_limit_exceeded"  # the enqueued-token quota, at create (Azure) or validation
CREATE_ATTEMPTS = 4
NEWLINE = b"\n"


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
    the `openai` client from its variables (OPENAI_API_KEY, OPENAI_BASE_URL, ...). A spec that
    sets no expiry of its own gets `input_expires_after_seconds` and `output_expires_after_seconds`."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    organization: str | None = None
    project: str | None = None
    input_expires_after_seconds: int = INPUT_EXPIRY_SECONDS
    output_expires_after_seconds: int = OUTPUT_EXPIRY_SECONDS
    name: str = field(default="openai", init=False)
    max_requests: int = field(default=MAX_REQUESTS_PER_FILE, init=False)
    max_bytes: int = field(default=MAX_BYTES_PER_FILE, init=False)
    expiry_range: tuple[int, int] = field(default=OPENAI_EXPIRY_RANGE, init=False)
    deployments: Mapping[str, str] = field(default_factory=dict, init=False)

    def client(self, http_client: Any = None, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(api_key=self.api_key, base_url=self.base_url, organization=self.organization,
                             project=self.project, http_client=http_client, **options)

    def connect(self, http_client: Any = None, **options: Any) -> OpenAIBatchAPI:
        return OpenAIBatchAPI(self, self.client(http_client, **options))

    def at(self, origin: str, api_key: str) -> OpenAIProvider:
        return dataclasses.replace(self, base_url=f"{origin.rstrip('/')}/v1", api_key=api_key)

    def encoding(self, spec: BatchSpec) -> RequestEncoding:
        return openai_encoding(self, spec)

    def line_url(self, endpoint: str) -> str:
        return endpoint

    def line_model(self, model: str) -> str:
        return model

    def describe(self) -> str:
        return public_url(self.base_url or DEFAULT_BASE_URL)

    def fingerprint(self) -> str:
        where = f"{self.name}|{self.describe()}|{self.organization or ''}|{self.project or ''}"
        return hashlib.sha256(where.encode()).hexdigest()[:16]


class _OpenAIFamily(Provider, Protocol):
    """What `openai_encoding` asks of OpenAI's and Azure's settings."""

    @property
    def max_requests(self) -> int: ...

    @property
    def max_bytes(self) -> int: ...

    @property
    def expiry_range(self) -> tuple[int, int]: ...

    @property
    def input_expires_after_seconds(self) -> int: ...

    @property
    def output_expires_after_seconds(self) -> int: ...

    def line_url(self, endpoint: str) -> str: ...

    def line_model(self, model: str) -> str: ...


def openai_encoding(provider: _OpenAIFamily, spec: BatchSpec) -> RequestEncoding:
    """`spec`'s request lines in OpenAI's form, as `provider` names endpoints and models."""
    if spec.endpoint not in SUPPORTED_ENDPOINTS:
        raise ProviderSettingError(f"{provider.name} has no batch endpoint {spec.endpoint}")
    model = provider.line_model(spec.model)
    requests, size = shard_limits(spec, provider.max_requests, provider.max_bytes)
    try:
        body = body_builder(spec, model)
    except Exception as exc:  # the SDK's schema converter raises several types for models it cannot use
        raise ProviderSettingError(f"response_model of spec '{spec.name}' cannot be sent as {provider.name}'s "
                                   f"strict JSON schema: {exc}") from exc
    return OpenAIEncoding(provider.line_url(spec.endpoint), model, requests, size, body, spec.model,
                          chat=spec.endpoint not in ("/v1/embeddings", *PROMPT_ENDPOINTS),
                          input_expires_after=_expiry(provider, spec, "input_expires_after_seconds"),
                          output_expires_after=_expiry(provider, spec, "output_expires_after_seconds"))


def _expiry(provider: _OpenAIFamily, spec: BatchSpec, name: str) -> int:
    """The spec's expiry setting `name`, else the provider's, within what the provider accepts."""
    seconds: int = getattr(spec, name) or getattr(provider, name)
    low, high = provider.expiry_range
    if not low <= seconds <= high:
        raise ProviderSettingError(f"spec '{spec.name}': {name}={seconds} is outside what {provider.name} accepts "
                                   f"({low}..{high} seconds); nothing was uploaded")
    return seconds


@dataclass
class OpenAIBatchAPI:
    """The contract's operations on one `openai` client (`openai.OpenAI` or `openai.AzureOpenAI`)."""

    provider: Provider
    client: openai.OpenAI
    calls: int = 0
    holds_keys: bool = field(default=True, init=False)

    def pages(self) -> Iterator[list[ProviderBatch]]:
        """Pages of batches, newest first, one list call per page."""
        after: str | None = None
        while True:
            self.calls += 1
            page = self.client.batches.list(limit=LIST_PAGE_SIZE, after=after or openai.omit)
            if not page.data:
                return
            yield [provider_batch(batch) for batch in page.data]
            if not page.has_more:
                return
            after = page.data[-1].id

    def find(self, keys: set[str], since: float) -> dict[str, ProviderBatch]:
        """Pages are read newest first back to `since` (no batch carrying these keys is older),
        with no page limit; a list call that fails raises, so a lookup that cannot finish never
        passes for "not found" and submission fails closed instead of paying twice."""
        found: dict[str, ProviderBatch] = {}
        for page in self.pages():
            for batch in page:
                if batch.key in keys and batch.key not in found:
                    found[batch.key] = batch
            if found.keys() >= keys or page[-1].created_at < since - CLOCK_SLACK_SECONDS:
                break
        return found

    def created_since(self, since: float) -> list[ProviderBatch]:
        return created_since(self.pages(), since)

    def enqueued_tokens(self, model: str) -> int:
        """From our batches' metadata, back over the completion window."""
        return sum(int(b.tags.get("estimated_tokens") or 0) for b in self.created_since(
            time.time() - ENQUEUED_WINDOW_SECONDS) if b.tags.get("model") == model and not b.terminal)

    def batches(self, batch_ids: set[str], since: float) -> dict[str, ProviderBatch]:
        try:
            return states_of(self.pages(), self._known, batch_ids, since)
        except openai.APIError as exc:  # its text may echo request details: only its type is kept
            raise ProviderUnavailable(f"listing batches failed: {type(exc).__name__}") from None

    def _known(self, batch_id: str) -> ProviderBatch | None:
        try:
            return self.retrieve(batch_id)
        except openai.NotFoundError:
            return None

    def retrieve(self, batch_id: str) -> ProviderBatch:
        self.calls += 1
        return provider_batch(self.client.batches.retrieve(batch_id))

    def submit(self, data: bytes, encoding: RequestEncoding, key: str, tags: Mapping[str, str],
               earlier_attempt: bool, log: Callable[[str], None]) -> ProviderBatch:
        filename = f"{key}.jsonl"
        file_id = self._uploads().get(filename) if earlier_attempt else None
        assert isinstance(encoding, OpenAIEncoding)  # made by this provider's `encoding`
        if file_id is None:
            file_id = self._upload(filename, data, encoding.input_expires_after)
            log(f"uploaded {data.count(NEWLINE)} requests as {file_id}")
            failpoint("submission.uploaded")
        else:
            log(f"reusing upload {file_id} left by an earlier attempt")
        return self._create(file_id, encoding, {**tags, "idempotency_key": key})

    def _uploads(self) -> dict[str, str]:
        """Uploaded batch input files by name (the newest of a name wins), from one listing: an
        upload whose batch was never created (a crash between the two calls) is reused."""
        self.calls += 1
        found: dict[str, str] = {}
        for file in self.client.files.list(purpose="batch"):  # newest first
            if file.status != "error":
                found.setdefault(file.filename, file.id)
        return found

    def _upload(self, filename: str, data: bytes, expires_after: int) -> str:
        """An input file the provider deletes by itself after `expires_after` seconds (a crashed
        run leaks none)."""
        self.calls += 1
        return self.client.files.create(
            file=(filename, data), purpose="batch",
            expires_after={"anchor": "created_at", "seconds": expires_after},
        ).id

    def _create(self, file_id: str, encoding: OpenAIEncoding, metadata: dict[str, str]) -> ProviderBatch:
        """Create a batch exactly once, reconciling by idempotency key after any failed attempt.
        Raises `QuotaRefused` when the provider refuses it for its enqueued-token quota (nothing
        was created; the provider's message is not kept, as it may name deployments)."""
        key, started = metadata["idempotency_key"], time.time()  # a batch this call created is newer
        no_retry = self.client.with_options(max_retries=0)
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                self.calls += 1
                return provider_batch(no_retry.batches.create(
                    input_file_id=file_id, endpoint=encoding.url,  # type: ignore[arg-type]
                    completion_window="24h", metadata=metadata,
                    output_expires_after={"anchor": "created_at", "seconds": encoding.output_expires_after}))
            except openai.BadRequestError as exc:
                if exc.code == QUOTA_CODE or QUOTA_CODE in str(exc.body):  # the code, or a body naming it
                    raise QuotaRefused(f"the provider refused batch creation: {QUOTA_CODE}") from None
                raise
            except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError):
                existing = self.find({key}, since=started).get(key)
                if existing is not None:
                    return existing
                if attempt == CREATE_ATTEMPTS:
                    raise
                time.sleep(backoff_seconds(2.0, attempt, cap=30.0))
        raise AssertionError("unreachable")

    def result_kinds(self, batch: ProviderBatch) -> Sequence[str]:
        return [kind for kind in ("output", "error") if batch.files.get(kind)]  # null, or "" on Azure

    def download(self, batch: ProviderBatch, kind: str) -> bytes:
        self.calls += 1
        return self.client.files.content(batch.files[kind]).content

    def parse_results(self, files: Sequence[bytes | Path]) -> pa.Table:
        return parse_results(files)

    def images(self, files: Sequence[bytes | Path]) -> Iterator[GeneratedImage]:
        return images_in(files)

    def cancel(self, batch_id: str) -> ProviderBatch:
        self.calls += 1
        return provider_batch(self.client.batches.cancel(batch_id))

    def delete_file(self, file_id: str) -> bool:
        self.calls += 1
        try:
            return bool(self.client.files.delete(file_id).deleted)
        except openai.NotFoundError:
            return False
        except openai.OpenAIError as exc:  # its text may echo request details: type and status only
            status = getattr(exc, "status_code", None)
            raise ProviderUnavailable(type(exc).__name__ + (f", HTTP {status}" if status else "")) from None
