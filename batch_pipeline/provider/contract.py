"""The provider port: what the pipeline needs of a Batch API, in neutral types only.

A provider is two objects. `Provider` is its settings (frozen, safe to log through `describe()`):
how a use case's requests are encoded for it (`encoding`), its limits, and how to connect.
`BatchAPI` is a connection to it, the operations the stages call: submit a shard under an
idempotency key, find our batches, report their status in one vocabulary (`RUNNING`,
`TERMINAL`), download and parse results into neutral rows (`RESULT_ROWS`) and images, cancel, delete
provider-side files. Only the adapters (`openai_api.py`, `azure_api.py`) and `local_api/`
import a provider SDK; requests, submission, harvest, state and the Dagster layer speak this
module's types. A new provider is one adapter module and its registration
(`provider/registry.py`); it is done when it passes `tests/test_provider_contract.py` unchanged.
docs/provider-port.md explains the seam.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

# The provider's errors, importable from here as they always were.
from batch_pipeline.errors import ProviderSettingError as ProviderSettingError
from batch_pipeline.errors import ProviderUnavailable as ProviderUnavailable
from batch_pipeline.errors import QuotaRefused as QuotaRefused
from batch_pipeline.errors import SubmissionBlocked as SubmissionBlocked
from batch_pipeline.spec import BatchSpec
from batch_pipeline.state.partition_state import TERMINAL

# A batch's status, whoever answered: running ones, then the terminal ones (state.TERMINAL).
RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
STATUSES = RUNNING | TERMINAL
MAX_EMBEDDING_INPUTS = 50_000  # per embeddings batch; one input per request line
PIPELINE = "batch_pipeline"  # the tag that marks our batches among an organisation's

# A parsed result line, one per request the provider answered (or a batch accounts for).
# `status` is the row's outcome: succeeded, invalid_output (a refusal), failed, expired, cancelled.
RESULT_ROWS = pa.schema(
    [
        ("custom_id", pa.string()),
        ("status", pa.string()),
        ("output", pa.string()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("model", pa.string()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cached_input_tokens", pa.int64()),
        ("embedding", pa.list_(pa.float32())),
    ]
)


@dataclass(frozen=True)
class RequestCounts:
    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class BatchUsage:
    """The tokens a provider reports for a whole batch (OpenAI's `usage`): what it bills."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class ProviderBatch:
    """One batch as the provider reports it, in the pipeline's vocabulary.

    `key` is our idempotency key where the provider holds it (None where it cannot, or for a
    batch that is not ours); `tags` what else it holds for us (model, estimated tokens).
    `files` are provider-side files by kind (`input`, `output`, `error`), what cleanup deletes.
    `model` and `usage` are the batch's own figures where the provider reports them (else None).
    """

    id: str
    status: str
    created_at: float
    request_counts: RequestCounts | None = None
    key: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    model: str | None = None
    usage: BatchUsage | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class GeneratedImage:
    """One image a result line holds (its request's `position`-th, from 0), decoded, with the
    file extension of its format."""

    custom_id: str
    position: int
    extension: str
    data: bytes


class RequestEncoding(Protocol):
    """How one use case's requests are written for one provider, and how many fit one batch.

    `line(custom_id, texts)` is the JSON object of one request line, given the rendered text of
    each template role (`system`, `user`); its first member must be the custom id (a JSON
    string), so an id is read from a line without parsing it (`requests.lines.line_custom_id`).
    `signature` is bytes every line of this encoding holds: a shard written for another provider
    or model is refused before upload. `count_tokens` counts input tokens offline as the
    provider's model does, and a request costs `tokens_per_message` more per template role and
    `tokens_per_reply` more in all: the estimate and queue admission use them.
    """

    @property
    def max_requests(self) -> int: ...

    @property
    def tokens_per_message(self) -> int: ...

    @property
    def tokens_per_reply(self) -> int: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    @property
    def max_bytes(self) -> int: ...

    @property
    def signature(self) -> bytes: ...

    def line(self, custom_id: str, texts: Mapping[str, str]) -> dict[str, Any]: ...


class ClosableClient(Protocol):
    """The provider's official SDK client, closed when the run or tick ends."""

    def close(self) -> None: ...


class BatchAPI(Protocol):
    """A connection to one provider's Batch API; `calls` counts requests sent, for monitoring."""

    @property
    def provider(self) -> Provider: ...

    @property
    def client(self) -> ClosableClient: ...

    @property
    def holds_keys(self) -> bool:
        """The provider keeps our idempotency key with the batch, so `find` can look it up."""
        ...

    calls: int

    def submit(self, data: bytes, encoding: RequestEncoding, key: str, tags: Mapping[str, str],
               earlier_attempt: bool, log: Callable[[str], None]) -> ProviderBatch:
        """Create one batch of the request lines `data` under idempotency `key`, uploading them
        where the provider needs a file (`earlier_attempt`: an upload of an attempt that died
        before its create may exist; it is reused). Raises `QuotaRefused` when the provider
        refuses it for its queue quota (nothing created)."""
        ...

    def find(self, keys: set[str], since: float) -> dict[str, ProviderBatch]:
        """Our batches carrying any of `keys`, created after `since` (newest wins); only where
        `holds_keys`. A lookup that cannot finish raises, never passes for "not found"."""
        ...

    def created_since(self, since: float) -> list[ProviderBatch]:
        """Every batch the provider holds created after `since`: the candidates for an intent
        whose batch id was never recorded, where the provider holds no key."""
        ...

    def enqueued_tokens(self, model: str) -> int:
        """Estimated tokens of our running batches of `model` (0 where the provider cannot tell)."""
        ...

    def batches(self, batch_ids: set[str], since: float) -> dict[str, ProviderBatch]:
        """The current state of our batches `batch_ids`, created after `since`, in few calls
        whatever else the organisation holds; a batch the provider does not know is absent."""
        ...

    def retrieve(self, batch_id: str) -> ProviderBatch: ...

    def result_kinds(self, batch: ProviderBatch) -> Sequence[str]:
        """The kinds of result files a terminal batch has (`output`, `error`), to keep raw."""
        ...

    def download(self, batch: ProviderBatch, kind: str) -> bytes:
        """One result file's bytes, exactly as the provider sent them."""
        ...

    def parse_results(self, files: Sequence[bytes | Path]) -> pa.Table:
        """Result files (bytes, or local copies) as `RESULT_ROWS`, one row per line; a line of an
        unexpected shape is a failed row naming its line, never a failed harvest."""
        ...

    def images(self, files: Sequence[bytes | Path]) -> Iterator[GeneratedImage]:
        """The images the answered lines of result files hold, one line at a time (an image is
        megabytes; a file of them never is in memory whole); none where the provider makes none."""
        ...

    def cancel(self, batch_id: str) -> ProviderBatch: ...

    def delete_file(self, file_id: str) -> bool:
        """Delete a provider-side file; False when it was gone already (deleting is idempotent)."""
        ...


class Provider(Protocol):
    """A provider's settings: its name, limits, request encoding and how to connect."""

    @property
    def name(self) -> str: ...

    @property
    def deployments(self) -> Mapping[str, str]:
        """The provider's own names of models (Azure's deployments), by model; empty when
        requests name models directly. The local Batch API serves them as those models."""
        ...

    def fingerprint(self) -> str:
        """Where this provider's batches live (endpoint, organisation), never a key: recorded
        with each submission so in-flight batches are watched where they were sent."""
        ...

    def describe(self) -> str:
        """Where requests go, for logs and metadata; never includes a key."""
        ...

    def encoding(self, spec: BatchSpec) -> RequestEncoding:
        """`spec`'s requests for this provider; raises `ProviderSettingError` when the provider
        cannot serve the spec (an endpoint it lacks, a model with no deployment)."""
        ...

    def at(self, origin: str, api_key: str) -> Provider:
        """The same protocol spoken to another server (the local Batch API at `origin`)."""
        ...

    def connect(self, http_client: Any = None, **options: Any) -> BatchAPI:
        """A connection on the provider's official client; `http_client` carries its calls
        elsewhere (the embedded local Batch API), `options` are the client's (retries, timeout)."""
        ...


def shard_limits(spec: BatchSpec, max_requests: int, max_bytes: int) -> tuple[int, int]:
    """A spec's own shard limits within a provider's; `max_requests_per_shard=None` takes the
    provider's whole limit, except that an embeddings batch holds at most 50,000 inputs."""
    requests = min(spec.max_requests_per_shard or max_requests, max_requests)
    if spec.endpoint == "/v1/embeddings":
        requests = min(requests, MAX_EMBEDDING_INPUTS)
    return requests, min(spec.max_shard_bytes, max_bytes)
