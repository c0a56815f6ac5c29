"""The one contract between the pipeline and a Batch API provider.

Everything provider-specific sits behind `Provider`: how its official client is built, how a
request line names its endpoint (`url`) and model, how large one input file may be and how long
an uploaded input may be kept. OpenAI and Azure OpenAI implement it
(`batch_pipeline.provider.providers`); the rest of the pipeline (requests, submission, harvest)
asks it and knows no provider by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx2
import openai
import orjson
from openai.types import Batch

from batch_pipeline.spec import BatchSpec

EMBEDDINGS = "/v1/embeddings"
# A Batch's timestamps: epoch seconds on OpenAI, ISO-8601 strings in Azure's older REST answers.
TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
              "expired_at", "cancelling_at", "cancelled_at")
_SPELLINGS = {"canceled": "cancelled", "canceling": "cancelling"}  # American spellings seen on Azure
MAX_EMBEDDING_INPUTS = 50_000  # per embeddings batch (reference §7); one input per request line


class ProviderSettingError(ValueError):
    """A provider setting is missing or unusable; the message names the setting, never a key."""


class QuotaRefused(Exception):
    """The provider refused to create a batch because the model's enqueued-token quota is full.

    Azure OpenAI does this synchronously in some regions (HTTP 400 `token_limit_exceeded`,
    reference §8) where OpenAI fails the batch after validation. Nothing was created, so the
    shard can wait and be sent again as the same batch (same idempotency key, same upload).
    """


@dataclass(frozen=True)
class FileLimits:
    """How much one batch input file may hold at this provider."""

    max_requests: int
    max_bytes: int


class Provider(Protocol):
    """What the pipeline needs of a Batch API provider."""

    @property
    def name(self) -> str: ...

    @property
    def limits(self) -> FileLimits: ...

    @property
    def input_file_ttl_seconds(self) -> int:
        """Asked for on upload; within the range the provider accepts."""
        ...

    @property
    def deployments(self) -> Mapping[str, str]:
        """The provider's own names of models (Azure's deployment names), by model; empty when
        requests name models directly. The local Batch API serves them as those models."""
        ...

    def client(self, http_client: httpx2.Client | None = None, **options: Any) -> openai.OpenAI:
        """The provider's official client (`openai.OpenAI` or a subclass); `http_client` carries
        its calls elsewhere (the embedded local Batch API)."""
        ...

    def at(self, origin: str, api_key: str) -> Provider:
        """The same provider's protocol spoken to another server (the local Batch API at
        `origin`, e.g. `http://127.0.0.1:8000`), with that server's key."""
        ...

    def line_url(self, endpoint: str) -> str:
        """A request line's `url` (and the batch's `endpoint`) for an OpenAI endpoint path."""
        ...

    def line_model(self, model: str) -> str:
        """The `model` a request body names for `model`; raises `ProviderSettingError` when the
        provider has no name for it."""
        ...

    def describe(self) -> str:
        """Where requests go, for logs and metadata; never includes a key."""
        ...


@dataclass(frozen=True)
class LineForm:
    """How one use case's request lines are written for one provider: each line's `url`, the
    `model` in each body, and the most lines and bytes one shard (one input file) holds."""

    url: str
    model: str
    max_requests: int
    max_bytes: int

    def prefix(self) -> bytes:
        """Bytes every request line in this form holds (url, then the body's model first)."""
        return b'"url":%s,"body":{"model":%s' % (orjson.dumps(self.url), orjson.dumps(self.model))


def line_form(spec: BatchSpec, provider: Provider) -> LineForm:
    """`spec`'s request lines for `provider`.

    A spec's own shard limits apply within the provider's; `max_requests_per_shard=None` takes
    the provider's whole limit, except that an embeddings file holds at most 50,000 inputs.
    """
    limits = provider.limits
    requests = min(spec.max_requests_per_shard or limits.max_requests, limits.max_requests)
    if spec.endpoint == EMBEDDINGS:
        requests = min(requests, MAX_EMBEDDING_INPUTS)
    return LineForm(provider.line_url(spec.endpoint), provider.line_model(spec.model), requests,
                    min(spec.max_shard_bytes, limits.max_bytes))


def normalized_batch(batch: Batch) -> Batch:
    """`batch` in OpenAI's vocabulary, whoever answered: statuses lowercase (`InProgress` is
    `in_progress`), timestamps epoch seconds, request counts numbers (Azure may send nulls).

    The state machine and the sensor compare statuses with OpenAI's names and timestamps with
    numbers; the `openai` client accepts Azure's other forms without converting them
    (reference §8), so they are converted here, where every Batch enters the pipeline.
    """
    update: dict[str, Any] = {"status": batch_status(str(batch.status))}
    for name in TIMESTAMPS:
        value = getattr(batch, name, None)
        if value is not None and not isinstance(value, int):
            update[name] = epoch_seconds(value)
    counts = batch.request_counts
    if counts is not None and None in (counts.total, counts.completed, counts.failed):
        update["request_counts"] = counts.model_copy(update={
            "total": counts.total or 0, "completed": counts.completed or 0, "failed": counts.failed or 0})
    return batch.model_copy(update=update)


def batch_status(status: str) -> str:
    """OpenAI's name of a batch status: `Completed` -> `completed`, `InProgress` -> `in_progress`."""
    snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", status.strip()).replace(" ", "_").replace("-", "_").lower()
    return _SPELLINGS.get(snake, snake)


def epoch_seconds(value: object) -> int | None:
    """Epoch seconds from a number, a numeric string or an ISO-8601 string (UTC when it names no
    zone); None when it is none of these, so a timestamp the pipeline cannot read is absent."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d*)?", text):
        return int(float(text))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
