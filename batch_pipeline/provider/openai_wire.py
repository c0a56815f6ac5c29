"""OpenAI's wire format, shared by the OpenAI and Azure OpenAI adapters: request lines, the
strict JSON schema of a response model, moderation categories, and a `Batch` in the pipeline's
vocabulary.

Azure OpenAI speaks the same protocol through the same SDK, with other forms the client accepts
without converting them: statuses in PascalCase (`InProgress`) or American spelling
(`canceled`), ISO-8601 timestamps, null request counts. `provider_batch` reads them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openai
import orjson
from openai.types import Batch
from pydantic import BaseModel

from batch_pipeline.provider.contract import PIPELINE, BatchUsage, ProviderBatch, RequestCounts
from batch_pipeline.provider.openai_tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, count_tokens
from batch_pipeline.spec import INPUT_ENDPOINTS, PROMPT_ENDPOINTS, BatchSpec

_SPELLINGS = {"canceled": "cancelled", "canceling": "cancelling"}  # American spellings seen on Azure
# How long OpenAI keeps a file given `expires_after` (uploads) or `output_expires_after` (a
# batch's output and error files): 1 hour to 30 days after the file's creation.
OPENAI_EXPIRY_RANGE = (3600, 2_592_000)
# By default a request file is kept a week (it runs within a day, and its lines stay in the
# warehouse: a crashed run leaks no storage), output and error files 30 days (OpenAI's own
# default), so a results run days late still finds them.
INPUT_EXPIRY_SECONDS = 7 * 24 * 3600
OUTPUT_EXPIRY_SECONDS = 30 * 24 * 3600
_FILE_KINDS = (("input", "input_file_id"), ("output", "output_file_id"), ("error", "error_file_id"))


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The strict JSON schema of `model`, as structured outputs send it: the SDK's own converter,
    through its public `pydantic_function_tool` (the same conversion `chat.completions.parse`
    uses), so requests carry exactly what the SDK would send."""
    return openai.pydantic_function_tool(model)["function"]["parameters"]


def moderation_categories() -> dict[str, str]:
    """Column stem by wire name of every category `openai.types.Moderation` scores
    (`self-harm/intent` -> `self_harm_intent`), so new SDK categories become columns."""
    from openai.types.moderation import CategoryScores

    return {f.alias or name: name for name, f in CategoryScores.model_fields.items()}


@dataclass(frozen=True)
class OpenAIEncoding:
    """Request lines in OpenAI's form: `{"custom_id", "method", "url", "body"}`, the body naming
    `model` (the provider's name of the spec's model) and the endpoint path as `url`; tokens
    counted with `spec_model`'s encoding, with chat formatting's overhead where there are messages;
    and how long the provider keeps the request file and the batch's results."""

    url: str
    model: str
    max_requests: int
    max_bytes: int
    body: Callable[[Mapping[str, str]], dict[str, Any]]
    spec_model: str
    chat: bool
    input_expires_after: int = INPUT_EXPIRY_SECONDS  # seconds the provider keeps an uploaded request file
    output_expires_after: int = OUTPUT_EXPIRY_SECONDS  # and a batch's output and error files

    @property
    def tokens_per_message(self) -> int:
        return TOKENS_PER_MESSAGE if self.chat else 0

    @property
    def tokens_per_reply(self) -> int:
        return TOKENS_PER_REPLY if self.chat else 0

    def count_tokens(self, texts: list[str]) -> list[int]:
        return count_tokens(self.spec_model, texts)

    @property
    def signature(self) -> bytes:
        return b'"url":%s,"body":{"model":%s' % (orjson.dumps(self.url), orjson.dumps(self.model))

    def line(self, custom_id: str, texts: Mapping[str, str]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": self.url, "body": self.body(texts)}


def body_builder(spec: BatchSpec, model: str) -> Callable[[Mapping[str, str]], dict[str, Any]]:
    """A function from one row's rendered texts (by role) to its request body, naming `model`."""
    params = dict(spec.parameters)
    if spec.endpoint in INPUT_ENDPOINTS:
        return lambda t: {"model": model, "input": t["user"], **params}
    if spec.endpoint in PROMPT_ENDPOINTS:
        return lambda t: {"model": model, "prompt": t["user"], **params}
    schema = None
    if spec.response_model is not None:
        schema = {"name": spec.response_model.__name__, "strict": True,
                  "schema": strict_json_schema(spec.response_model)}
    if spec.endpoint == "/v1/responses":
        if schema:
            params["text"] = {"format": {"type": "json_schema", **schema}}
        return lambda t: {"model": model, **({"instructions": t["system"]} if "system" in t else {}),
                          "input": t["user"], **params}
    if schema:
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    return lambda t: {"model": model,
                      "messages": [{"role": role, "content": text} for role, text in t.items()], **params}


def provider_batch(batch: Batch) -> ProviderBatch:
    """`batch` in the pipeline's vocabulary, whichever of OpenAI's or Azure's forms it came in."""
    meta = batch.metadata or {}
    ours = meta.get("pipeline") == PIPELINE
    counts = batch.request_counts
    first_error = batch.errors.data[0] if batch.errors and batch.errors.data else None
    return ProviderBatch(
        id=batch.id,
        status=batch_status(str(batch.status)),
        created_at=float(epoch_seconds(batch.created_at) or 0),
        request_counts=RequestCounts(counts.total or 0, counts.completed or 0, counts.failed or 0) if counts else None,
        key=meta.get("idempotency_key") if ours else None,
        tags=dict(meta) if ours else {},
        files={kind: getattr(batch, name) for kind, name in _FILE_KINDS if getattr(batch, name, None)},
        error_code=first_error.code if first_error else None,
        error_message=first_error.message if first_error else None,
        model=batch.model or None,
        usage=batch_usage(batch),
    )


def batch_usage(batch: Batch) -> BatchUsage | None:
    """The batch's own `usage` (OpenAI fills it on batches created after 2025-09-07; Azure and
    older batches may have none, or parts of it null)."""
    usage = batch.usage
    if usage is None:
        return None
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else 0
    reasoning = usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details else 0
    return BatchUsage(usage.input_tokens or 0, cached or 0, usage.output_tokens or 0, reasoning or 0,
                      usage.total_tokens or 0)


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
