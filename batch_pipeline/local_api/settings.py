"""Settings of the local Batch API: pace, limits, faults and upstream forwarding.

One frozen pydantic model drives the served and the embedded mode alike, and the CLI
flags are generated from its fields so a new setting is a flag without extra code.
"""

from __future__ import annotations

import argparse
import os
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MB = 1024 * 1024


def _literal_values(annotation: Any) -> list[str]:
    """The strings a `Literal` type (or a union of them, `str` aside) admits, in order."""
    if typing.get_origin(annotation) is Literal:
        return [value for value in typing.get_args(annotation) if isinstance(value, str)]
    return [value for arg in typing.get_args(annotation) for value in _literal_values(arg)]


def _openai_models() -> tuple[str, ...]:
    """Every model id the installed `openai` SDK names for the endpoints a batch can call, dated
    snapshots included (its `ChatModel`, `ResponsesModel`, `EmbeddingModel`, `ModerationModel`,
    `ImageModel`, `VideoModel` and the completions `model` types): what a client written against
    OpenAI may ask for, kept in step with the SDK instead of by hand."""
    from openai.types import (
        ChatModel,
        EmbeddingModel,
        ImageModel,
        ModerationModel,
        ResponsesModel,
        VideoModel,
    )
    from openai.types.completion_create_params import CompletionCreateParamsBase

    completion = typing.get_type_hints(CompletionCreateParamsBase, include_extras=True)["model"]
    kinds = (ChatModel, ResponsesModel, EmbeddingModel, ModerationModel, ImageModel, VideoModel, completion)
    return tuple(dict.fromkeys(model for kind in kinds for model in _literal_values(kind)))


# Models the local API serves by default: every model the `openai` SDK names (`_openai_models`).
DEFAULT_SERVED_MODELS = _openai_models()
# In `served_models`, stands for the default list: `["default", "house-model-7b"]` widens it.
DEFAULT_MODELS_ENTRY = "default"
# Claude models the Anthropic routes serve by default: current aliases, their dated snapshots, and
# the ids the anthropic SDK (2.17) names in its `Model` type.
DEFAULT_SERVED_ANTHROPIC_MODELS = (
    "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-haiku-4-5-20251001",
    "claude-opus-4-5", "claude-opus-4-5-20251101", "claude-opus-4-1", "claude-opus-4-1-20250805",
    "claude-opus-4-0", "claude-opus-4-20250514", "claude-sonnet-4-0", "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest", "claude-3-7-sonnet-20250219", "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022",
    "claude-3-haiku-20240307", "claude-sonnet-4-6", "claude-opus-4-6", "claude-opus-4-7", "claude-opus-4-8",
    "claude-sonnet-5", "claude-opus-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-5-5",
)

# Models the Gemini routes serve by default (docs/local-api-gemini.md): generation and embedding.
DEFAULT_GEMINI_MODELS = (
    "gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-2.0-flash", "gemini-2.0-flash-lite",
    "gemini-3-flash-preview", "gemini-3-pro-preview", "gemini-flash-latest", "gemini-flash-lite-latest",
    "gemini-embedding-001", "text-embedding-004",
)


class LocalAPISettings(BaseModel):
    """How the local Batch API behaves. Every field has a default suited to tests and demos."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Pace and lifecycle
    pace_seconds: float = Field(
        0.3, ge=0, description="roughly how long each stage (validating, in_progress, finalizing) takes"
    )
    finalizing_seconds: float = Field(0.0, ge=0, description="extra time spent in finalizing (slow finalizing)")
    upload_seconds: float = Field(0.0, ge=0, description="extra time each file upload takes (large files, slow links)")
    completion_window_seconds: float = Field(
        86400.0, gt=0, description="time from create to expiry; OpenAI's 24h window by default"
    )
    file_clock_offset_seconds: float = Field(
        0.0, ge=0, description="files count as expired this many seconds before their expires_at (which is"
        " unchanged): with an hour's offset a file uploaded with expires_after of an hour is gone at once, so"
        " expiry is tested without waiting",
    )
    advance_budget_seconds: float = Field(
        0.5, gt=0, description="most time one API call spends advancing batches, so a poll never blocks long"
    )

    # Provider limits (OpenAI's values by default; smaller in tests)
    max_requests_per_batch: int = Field(50_000, ge=1)
    max_batch_input_bytes: int = Field(200 * MB, ge=1)
    max_embedding_inputs: int = Field(50_000, ge=1)
    max_upload_bytes: int = Field(512 * MB, ge=1)
    enqueued_token_limit: int | None = Field(
        None, ge=1, description="per-model limit on prompt tokens of non-terminal batches (None: unlimited)"
    )
    enqueued_token_limits: dict[str, int] = Field(
        default_factory=dict, description="per-model overrides of enqueued_token_limit"
    )

    # Azure OpenAI, on the routes under /openai (docs/provider-port.md, "Azure OpenAI's differences")
    azure_max_requests_per_batch: int = Field(100_000, ge=1)
    azure_quota_fail_fast: bool = Field(
        False, description="on Azure routes, a batch over the enqueued-token limit is refused at create with HTTP 400"
        " token_limit_exceeded (as in eastus, swedencentral, ...) instead of failing after validation",
    )
    azure_legacy_forms: bool = Field(
        False, description="on Azure routes, batches show capitalised statuses (InProgress) and ISO-8601 timestamps,"
        " as in Azure's older REST samples",
    )
    azure_deployments: dict[str, str] = Field(
        default_factory=dict,
        description="Azure deployment name -> the model it runs; a deployment not listed runs the model of its name",
    )

    # Models: a request naming another one fails its batch with model_not_found, as on OpenAI
    served_models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SERVED_MODELS),
        description="models the API serves ('*' serves any, 'default' stands for the default list: every model"
        " the openai SDK names); with upstream_url the upstream's /v1/models decides",
    )

    # Anthropic's Message Batches, on the routes under /v1/messages/batches (docs/local-api-anthropic.md)
    anthropic_served_models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SERVED_ANTHROPIC_MODELS),
        description="Claude models the Anthropic routes serve ('*' serves any); a request naming another one ends"
        " errored with not_found_error",
    )
    anthropic_max_requests_per_batch: int = Field(100_000, ge=1)
    anthropic_max_batch_bytes: int = Field(256 * MB, ge=1, description="largest create body (else 413)")
    gemini_models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GEMINI_MODELS),
        description="models the Gemini routes serve ('*' serves any); another answers 404 NOT_FOUND at create",
    )
    gemini_max_inline_bytes: int = Field(
        20 * MB, ge=1, description="largest Gemini batch create body, inline requests included (else 400)")
    gemini_max_file_bytes: int = Field(2048 * MB, ge=1, description="largest Gemini file upload (else 400)")

    # Faults, reproducible from fault_seed
    fault_seed: int = 0
    line_rate_limit_fraction: float = Field(0.0, ge=0, le=1, description="request lines failing with 429")
    line_server_error_fraction: float = Field(0.0, ge=0, le=1, description="request lines failing with 500")
    line_invalid_request_fraction: float = Field(0.0, ge=0, le=1, description="request lines failing with 400")
    line_overloaded_fraction: float = Field(
        0.0, ge=0, le=1, description="request lines failing as overloaded (OpenAI 503, Anthropic 529"
        " overloaded_error, Gemini UNAVAILABLE)")
    api_rate_limit_fraction: float = Field(0.0, ge=0, le=1, description="API calls answered with HTTP 429")
    api_server_error_fraction: float = Field(0.0, ge=0, le=1, description="API calls answered with HTTP 500")
    api_timeout_fraction: float = Field(0.0, ge=0, le=1, description="API calls that stall (client timeout)")
    api_overloaded_fraction: float = Field(
        0.0, ge=0, le=1, description="API calls answered as overloaded (OpenAI 503, Anthropic 529, Gemini 503"
        " UNAVAILABLE)")
    api_timeout_seconds: float = Field(30.0, ge=0, description="how long a stalled API call stalls")
    usage_skew_input_tokens: int = Field(
        0, ge=0, description="added to each batch's reported usage.input_tokens as it ends, not to its result"
        " lines: a provider's bill that disagrees with its answers",
    )

    # Upstream forwarding: turn an OpenAI-compatible synchronous server into a Batch API
    upstream_url: str | None = Field(None, description="base URL of a synchronous server, e.g. http://127.0.0.1:8001/v1")
    upstream_api_key: str | None = Field(None, description="key sent to the upstream server")
    upstream_concurrency: int = Field(8, ge=1)
    upstream_max_retries: int = Field(3, ge=0)
    upstream_timeout_seconds: float = Field(120.0, gt=0)

    # Webhooks: signed batch.* events POSTed when a batch ends, as OpenAI sends them (webhook_sender.py)
    webhook_url: str | None = Field(
        None, description="where batch.completed/failed/expired/cancelled events are sent, e.g."
        " http://127.0.0.1:8010/webhooks/openai (served mode: batch-pipeline local-api)",
    )
    webhook_secret: str | None = Field(None, description="the whsec_ secret deliveries are signed with")
    webhook_max_attempts: int = Field(8, ge=1, description="tries per delivery before it is given up")
    webhook_retry_seconds: float = Field(
        1.0, gt=0, description="wait before a failed delivery's first retry; it doubles each time, up to 60 s",
    )
    webhook_drop_fraction: float = Field(0.0, ge=0, le=1, description="deliveries never sent (lost), for tests")
    webhook_duplicate_fraction: float = Field(
        0.0, ge=0, le=1, description="deliveries sent twice with the same webhook-id, for tests",
    )

    @model_validator(mode="after")
    def _webhooks_signed(self) -> LocalAPISettings:
        """A webhook URL needs the secret its deliveries are signed with."""
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("webhook_url needs webhook_secret (for `batch-pipeline local-api`, the variable "
                             "BATCH_PIPELINE_LOCAL_API_WEBHOOK_SECRET)")
        return self

    def token_limit_for(self, model: str) -> int | None:
        """The enqueued-token limit that applies to ``model``."""
        return self.enqueued_token_limits.get(model, self.enqueued_token_limit)

    def azure_model(self, deployment: str) -> str:
        """The model an Azure deployment runs."""
        return self.azure_deployments.get(deployment, deployment)

    def serves_any_model(self) -> bool:
        return "*" in self.served_models

    def served_model_set(self) -> frozenset[str] | None:
        """The models served (None: any), with `default` expanded to the default list."""
        if self.serves_any_model():
            return None
        named = set(self.served_models)
        if DEFAULT_MODELS_ENTRY in named:
            named |= set(DEFAULT_SERVED_MODELS)
        return frozenset(named)

    def line_fault_total(self) -> float:
        return (self.line_rate_limit_fraction + self.line_server_error_fraction + self.line_invalid_request_fraction
                + self.line_overloaded_fraction)


# Settings given one value per flag, the flag repeated for several: (flag, metavar, help).
_REPEATED = {
    "enqueued_token_limits": ("--enqueued-token-limit-for", "MODEL=TOKENS",
                              "per-model enqueued-token limit; repeat for several models"),
    "azure_deployments": ("--azure-deployment", "DEPLOYMENT=MODEL",
                          "an Azure deployment and the model it runs; repeat for several"),
    "served_models": ("--served-model", "MODEL",
                      "a model the API serves, replacing the default list; repeat for several, '*' for any,"
                      " 'default' for the default list"),
    "anthropic_served_models": ("--served-anthropic-model", "MODEL",
                                "a Claude model the Anthropic routes serve, replacing the default list; repeat"
                                " for several, '*' for any"),
    "gemini_models": ("--gemini-model", "MODEL",
                      "a model the Gemini routes serve, replacing the default list; repeat for several, '*' for any"),
}

# Secrets are never flags (a command line is visible to every user of the machine, in `ps`):
# `batch-pipeline local-api` reads them from these environment variables.
SECRET_VARIABLES = {"upstream_api_key": "BATCH_PIPELINE_UPSTREAM_API_KEY",
                    "webhook_secret": "BATCH_PIPELINE_LOCAL_API_WEBHOOK_SECRET"}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per settings field (``pace_seconds`` -> ``--pace-seconds``) but secrets."""
    group = parser.add_argument_group("local Batch API behaviour")
    for name, field in LocalAPISettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.get_default(call_default_factory=True)
        help_text = (field.description or name.replace("_", " ")) + f" (default: {default!r})"
        if name in _REPEATED:
            repeated_flag, metavar, repeated_help = _REPEATED[name]
            group.add_argument(repeated_flag, dest=name, action="append", metavar=metavar, help=repeated_help)
            continue
        if name in SECRET_VARIABLES:
            continue
        annotation = field.annotation
        if annotation is bool:  # a switch: given means on
            group.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
            continue
        kind: Any = str
        if annotation in (int, int | None):
            kind = int
        elif annotation in (float, float | None):
            kind = float
        group.add_argument(flag, dest=name, type=kind, default=None, help=help_text)


def settings_from_args(namespace: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> LocalAPISettings:
    """Build settings from parsed flags and the secrets' variables; what is unset keeps its default."""
    values: dict[str, Any] = {name: environ[var] for name, var in SECRET_VARIABLES.items() if environ.get(var)}
    for name in LocalAPISettings.model_fields:
        value = getattr(namespace, name, None)
        if value is None:
            continue
        if name == "enqueued_token_limits":
            limits: dict[str, int] = {}
            for item in value:
                model, _, tokens = item.partition("=")
                if not model or not tokens.isdigit():
                    raise argparse.ArgumentTypeError(f"--enqueued-token-limit-for expects MODEL=TOKENS, got {item!r}")
                limits[model] = int(tokens)
            value = limits
        if name == "azure_deployments":
            pairs = [item.partition("=") for item in value]
            if any(not deployment or not model for deployment, _, model in pairs):
                raise argparse.ArgumentTypeError(f"--azure-deployment expects DEPLOYMENT=MODEL, got {value!r}")
            value = {deployment: model for deployment, _, model in pairs}
        values[name] = value
    return LocalAPISettings(**values)
