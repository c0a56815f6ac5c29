"""What a use case declares of its requests: the `BatchSpec`.

A use case module builds one source (`batch_pipeline.sources`) and one `BatchSpec`; everything else (assets,
partitions, jobs, checks) is derived from them by `batch_pipeline.dagster.assets`.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from batch_pipeline.errors import SpecError

IMAGES_ENDPOINT = "/v1/images/generations"
SUPPORTED_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/moderations",
                       "/v1/completions", IMAGES_ENDPOINT)
# Endpoints whose request is one rendered input text with no output tokens (embeddings, moderations).
INPUT_ENDPOINTS = ("/v1/embeddings", "/v1/moderations")
# Endpoints whose request is one rendered `prompt` (a completion, an image to generate).
PROMPT_ENDPOINTS = ("/v1/completions", IMAGES_ENDPOINT)
# Endpoints with one rendered text and no system prompt or response model.
ONE_TEXT_ENDPOINTS = (*INPUT_ENDPOINTS, *PROMPT_ENDPOINTS)
# The image formats OpenAI's image models write, by `output_format`, with their file extension.
IMAGE_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
# Columns every results table has; a response model's fields may not reuse these names.
RESULT_COLUMNS = (
    "custom_id", "status", "output", "error_code", "error_message", "attempts", "model",
    "input_tokens", "output_tokens", "cost_usd", "batch_id", "request_hash", "embedding", "flagged",
    "flagged_categories", "image_files", "revised_prompt", "image_size", "image_quality",
    "output_image_tokens",
)

# OpenAI's limits for one batch input file (50,000 requests, 200 MB), the smallest of the providers'.
MAX_REQUESTS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200 * 1024 * 1024
# The widest range of file expiry any provider accepts (OpenAI's: 1 hour to 30 days).
EXPIRY_SECONDS_RANGE = (3600, 2_592_000)


def template_fields(template: str, *, spec: str, name: str) -> list[str]:
    """Column names a `{column}` template refers to, in order of first use.

    Only bare `{column}` fields are allowed: format specs, conversions and attribute or index
    access would let a template do more than substitute a cell, so they are refused here.
    """
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SpecError(f"spec '{spec}': template '{name}' is not a valid template: {exc}") from exc
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        if not field_name.isidentifier() or format_spec or conversion:
            raise SpecError(
                f"spec '{spec}': template '{name}' field '{{{field_name}}}' must be a bare column "
                "name such as {medication_name}"
            )
        if field_name not in fields:
            fields.append(field_name)
    return fields


@dataclass(frozen=True)
class BatchSpec:
    """How each source row becomes one Batch API request.

    Templates use `{column}` placeholders filled from the row's cells; a cell is inserted as
    data, never re-parsed as a template, so braces in the data are harmless. For
    `/v1/embeddings` and `/v1/moderations` the rendered `prompt` is the input text and
    `system_prompt` is unused; a moderation lands `flagged`, `flagged_categories` and one
    `<category>_score` column per category. Moderations are free, so their price defaults to 0.
    For `/v1/completions` and `/v1/images/generations` it is the `prompt`; the image parameters
    (`size`, `quality`, `n`, `output_format`, ...) go in `parameters`, and each image lands as a
    file in the warehouse, named in the row's `image_files`.

    `response_model` (a Pydantic model) makes requests carry its strict JSON schema and lands
    each of its fields as a typed column. `price_per_million_tokens` ((input, output) USD at
    batch prices) is needed only for a model the `genai-prices` package does not know.
    `max_cost_usd` stops a partition's submission, before any upload, when its estimate is higher.
    The estimate's output tokens per request are learned from the use case's harvested partitions;
    before there are any, `expected_output_tokens` (else the max tokens parameter, else 512).
    Requests that fail for retryable reasons are resubmitted in follow-up batches until they have
    been sent `max_attempts` times, waiting `retry_backoff_seconds` (doubling each round) first.
    A shard (one input file) holds at most `max_requests_per_shard` requests and `max_shard_bytes`
    bytes, within the provider's own limits; unset, the provider's (OpenAI 50,000 requests, Azure
    OpenAI 100,000). A value set here is at most 50,000, so the spec fits every provider.
    `model` is the model on OpenAI (and, through its deployments, on Azure OpenAI); `models`
    names the model on each other provider the use case may run on (`{"anthropic":
    "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}`).
    `input_expires_after_seconds` and `output_expires_after_seconds` say how long OpenAI (or
    Azure OpenAI) keeps the uploaded request files and the batches' output and error files
    (`expires_after`, `output_expires_after`; 3600..2592000, Azure at least 1209600); unset, the
    provider resource's setting (README, "File expiry at the provider").
    """

    name: str
    model: str
    prompt: str
    system_prompt: str | None = None
    endpoint: str = "/v1/chat/completions"
    parameters: dict[str, Any] = field(default_factory=dict)
    response_model: type[BaseModel] | None = None
    description: str = ""
    owners: tuple[str, ...] = ()
    expected_output_tokens: int | None = None
    price_per_million_tokens: tuple[float, float] | None = None
    max_cost_usd: float | None = None
    max_invalid_output_rate: float = 0.05
    max_refusal_rate: float = 0.02
    max_attempts: int = 3
    retry_backoff_seconds: float = 60.0
    max_prompt_chars: int = 32_000
    max_requests_per_shard: int | None = None
    max_shard_bytes: int = MAX_BYTES_PER_FILE
    models: dict[str, str] = field(default_factory=dict)
    input_expires_after_seconds: int | None = None
    output_expires_after_seconds: int | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise SpecError(f"spec '{self.name}': name must be a Python identifier")
        if self.endpoint not in SUPPORTED_ENDPOINTS:
            raise SpecError(
                f"spec '{self.name}': endpoint '{self.endpoint}' is not supported; "
                f"use one of {', '.join(SUPPORTED_ENDPOINTS)}"
            )
        if self.max_requests_per_shard is not None and not 0 < self.max_requests_per_shard <= MAX_REQUESTS_PER_FILE:
            raise SpecError(
                f"spec '{self.name}': max_requests_per_shard must be 1..{MAX_REQUESTS_PER_FILE}"
            )
        low, high = EXPIRY_SECONDS_RANGE
        for name in ("input_expires_after_seconds", "output_expires_after_seconds"):
            seconds = getattr(self, name)
            if seconds is not None and not low <= seconds <= high:
                raise SpecError(f"spec '{self.name}': {name} must be {low}..{high} seconds (1 hour to 30 days)")
        if self.max_attempts < 1:
            raise SpecError(f"spec '{self.name}': max_attempts must be at least 1")
        if not 0 < self.max_shard_bytes <= MAX_BYTES_PER_FILE:
            raise SpecError(f"spec '{self.name}': max_shard_bytes must be 1..{MAX_BYTES_PER_FILE}")
        reserved = {"model", "messages", "input", "instructions", "stream", "response_format", "text", "prompt"}
        if reserved & set(self.parameters):
            raise SpecError(
                f"spec '{self.name}': parameters may not set {sorted(reserved & set(self.parameters))}; "
                "the spec's model, templates and response_model fill them"
            )
        if self.endpoint == "/v1/embeddings" and not isinstance(self.parameters.get("dimensions"), int):
            raise SpecError(
                f"spec '{self.name}': embeddings need parameters={{'dimensions': N}}; the results "
                "store them as a fixed-size list column"
            )
        if self.endpoint == "/v1/moderations" and self.price_per_million_tokens is None:
            object.__setattr__(self, "price_per_million_tokens", (0.0, 0.0))  # OpenAI bills no moderation
        if self.endpoint == IMAGES_ENDPOINT:
            self._check_image_parameters()
        if self.response_model is not None:
            if self.endpoint in ONE_TEXT_ENDPOINTS:
                raise SpecError(f"spec '{self.name}': {self.endpoint.rsplit('/', 1)[-1]} take no response_model")
            clash = set(self.response_model.model_fields) & set(RESULT_COLUMNS)
            if clash:
                raise SpecError(
                    f"spec '{self.name}': response_model fields {sorted(clash)} clash with result "
                    "columns; rename them"
                )
            from batch_pipeline.response_schema import arrow_fields

            try:
                self.response_model.model_json_schema()
                arrow_fields(self.response_model)
            except Exception as exc:  # pydantic/openai raise several types for unusable models
                raise SpecError(
                    f"spec '{self.name}': response_model {self.response_model.__name__} cannot be "
                    f"used as a strict response schema: {exc}"
                ) from exc
        self.template_columns()  # validates the templates early, when the use case is imported

    def _check_image_parameters(self) -> None:
        """Each image lands as a file of a format the results can name: base64 answers only (a
        URL expires), a format with a known extension, no streaming of partial images."""
        n = self.parameters.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
            raise SpecError(f"spec '{self.name}': parameters 'n' must be an integer 1..10 (images per row)")
        if self.parameters.get("output_format", "png") not in IMAGE_EXTENSIONS:
            raise SpecError(f"spec '{self.name}': parameters 'output_format' must be one of "
                            f"{', '.join(IMAGE_EXTENSIONS)}; each image lands as a file of that format")
        if "partial_images" in self.parameters:
            raise SpecError(f"spec '{self.name}': parameters may not set 'partial_images' (a batch does not stream)")

    def image_extension(self) -> str:
        """The file extension of this use case's images (`output_format`, PNG by default)."""
        return IMAGE_EXTENSIONS[self.parameters.get("output_format", "png")]

    def model_for(self, provider: str) -> str:
        """The model this use case asks `provider` for; a provider with no model named gets a
        clear error naming the setting."""
        if provider in ("openai", "azure"):
            return self.models.get(provider, self.model)
        if not self.models.get(provider):
            raise SpecError(f"spec '{self.name}' names no model for {provider}: set "
                            f"BatchSpec(models={{'{provider}': '<model>'}})")
        return self.models[provider]

    def templates(self) -> dict[str, str]:
        """The prompt templates by message role."""
        out = {"user": self.prompt}
        if self.system_prompt and self.endpoint not in ONE_TEXT_ENDPOINTS:
            out = {"system": self.system_prompt, **out}
        return out

    def template_columns(self) -> list[str]:
        """Every column any template refers to, in order of first use."""
        columns: list[str] = []
        for role, template in self.templates().items():
            for column in template_fields(template, spec=self.name, name=role):
                if column not in columns:
                    columns.append(column)
        return columns

    def fingerprint(self) -> str:
        """A digest of what the model is asked: endpoint, prompt templates, parameters and response
        schema. Output lengths learned under one fingerprint are not used to estimate another:
        a rewritten prompt or a new `max_tokens` makes the model write differently."""
        schema = self.response_model.model_json_schema() if self.response_model else None
        asked = {"endpoint": self.endpoint, "templates": self.templates(), "parameters": self.parameters,
                 "schema": schema}
        return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def output_tokens_prior(self) -> tuple[int, str]:
        """Output tokens assumed per request before any partition of the use case was harvested,
        and what they come from (shown beside the estimate)."""
        if self.endpoint in INPUT_ENDPOINTS:
            return 0, f"{self.endpoint.rsplit('/', 1)[-1]} have no output tokens"
        if self.expected_output_tokens is not None:
            return self.expected_output_tokens, f"expected_output_tokens {self.expected_output_tokens}"
        for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
            if self.parameters.get(name):
                return int(self.parameters[name]), f"{name} {self.parameters[name]}"
        return 512, "no max_tokens set, 512 assumed"
