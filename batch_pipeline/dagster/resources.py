"""Dagster resources: the Batch API and the warehouse.

The Batch API is one resource, `BatchAPIResource`, under the key `batch_api`. It composes two
resources, one per place requests can go, and picks between them with one rule (DESIGN,
"Provider selection"), in `BatchAPIResource.selected`:

    OPENAI_API_KEY set (or an `api_key` configured)  ->  `OpenAIProviderResource`, the real
        provider (OpenAI, or the OpenAI-compatible one at OPENAI_BASE_URL);
    no key                                            ->  `LocalBatchAPIResource`, the embedded
        local Batch API, with nothing for the user to start.

The rule is evaluated when a run or a sensor tick initializes the resource
(`setup_for_execution`), or on first use of a resource built by hand; never at import time.

Environment variables are declared once below as `dg.EnvVar`s and read with `.get_value()` at that
moment. A field may also be bound to a `dg.EnvVar` explicitly (`api_key=dg.EnvVar("MY_KEY")`), but
Dagster then requires that variable when the resource initializes, whichever side the rule picks;
so the defaults are unbound, and an unset OPENAI_API_KEY selects the local Batch API instead of
failing the run's config.

Each resource instance builds one `openai.OpenAI` client (and `BatchAPIResource` one
`BatchGateway`) on first use and keeps it. Dagster initializes a fresh copy of every resource
for each run (each step process) and each sensor tick, so a client lives as long as that run or
tick and is closed in `teardown_after_execution`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import openai
from openai import OpenAI
from pydantic import ConfigDict, Field, PrivateAttr, create_model
from pydantic.fields import FieldInfo

from batch_pipeline.local_api.embedded import embedded_client
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.provider.gateway import BatchGateway
from batch_pipeline.provider.submission import Sending
from batch_pipeline.warehouse.storage import Warehouse

OPENAI_API_KEY = dg.EnvVar("OPENAI_API_KEY")
OPENAI_BASE_URL = dg.EnvVar("OPENAI_BASE_URL")
OPENAI_ORG_ID = dg.EnvVar("OPENAI_ORG_ID")
OPENAI_PROJECT_ID = dg.EnvVar("OPENAI_PROJECT_ID")
LOCAL_API_DIR = dg.EnvVar("BATCH_PIPELINE_LOCAL_API_DIR")
WAREHOUSE_ROOT = dg.EnvVar("BATCH_PIPELINE_WAREHOUSE")
DEPLOYMENT = dg.EnvVar("BATCH_PIPELINE_DEPLOYMENT")
DAGSTER_HOME = dg.EnvVar("DAGSTER_HOME")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_LOCAL_API_DIR = ".local_batch_api"


def _setting(configured: str | None, variable: dg.EnvVar) -> str | None:
    """A configured value, else the environment variable's (read now).

    Inside a run Dagster has already resolved a field bound to a `dg.EnvVar`; on a resource
    used directly (a test, a notebook) the field still holds the `dg.EnvVar`, read here.
    """
    if isinstance(configured, dg.EnvVar):
        return configured.get_value()
    return configured or variable.get_value()


def _location(configured: str | None, variable: dg.EnvVar, under_home: str, fallback: str) -> str:
    """One answer for every process: the webserver, the daemon and each run worker start in
    different folders, so a relative path would name a different place in each.

    A configured folder must be absolute (or a URL); unset, it lives in the Dagster instance's
    home ($DAGSTER_HOME/<under_home>), which every process of one deployment shares. Without a
    DAGSTER_HOME (an ephemeral instance: one process) it falls back to the working directory.
    """
    value = _setting(configured, variable)
    if value:
        if "://" in value or Path(value).is_absolute():
            return value
        raise ValueError(
            f"{variable.env_var_name} is the relative path '{value}': the webserver, the daemon and "
            "each run resolve it from their own working directory; set an absolute path or a URL"
        )
    home = DAGSTER_HOME.get_value()
    return str(Path(home, under_home) if home else Path(fallback).resolve())


def _public_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for logs and metadata."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class _SettingsConfig(dg.Config):
    model_config = ConfigDict(extra="forbid")


def _config_field(name: str, field: FieldInfo) -> FieldInfo:
    if name.endswith("api_key"):  # keys stay out of reprs (and so out of logs)
        field = FieldInfo.merge_field_infos(field, repr=False)
    return field


LocalBatchAPISettings: type[dg.Config] = create_model(  # type: ignore[call-overload]
    "LocalBatchAPISettings",
    __base__=_SettingsConfig,
    __module__=__name__,
    __doc__="`LocalAPISettings` (pace, limits, faults, upstream) as typed Dagster config: the "
    "same fields, types, defaults and bounds, generated from it so the two never drift.",
    **{name: (field.annotation, _config_field(name, field)) for name, field in LocalAPISettings.model_fields.items()},
)


class _BatchAPIClientResource(dg.ConfigurableResource):
    """One `openai.OpenAI` client per resource instance, built on first use, closed at teardown."""

    max_retries: int = Field(default=5, description="Client retries on 429/5xx/timeouts.")
    timeout_seconds: float = Field(default=120.0, description="Per-request timeout.")

    _client: openai.OpenAI | None = PrivateAttr(default=None)

    def client(self) -> OpenAI:
        if self._client is None:
            self._client = self._new_client(max_retries=self.max_retries, timeout=self.timeout_seconds)
        return self._client

    def describe(self) -> str:
        """Where requests go, for logs and metadata; never includes a key."""
        raise NotImplementedError

    def _new_client(self, **options: Any) -> OpenAI:
        raise NotImplementedError

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class OpenAIProviderResource(_BatchAPIClientResource):
    """OpenAI's Batch API, or any OpenAI-compatible provider at `base_url`.

    Unset fields are read from the variables the `openai` client reads (OPENAI_API_KEY,
    OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID) when the client is built.
    """

    api_key: str | None = Field(
        default=None,
        repr=False,
        description="Defaults to $OPENAI_API_KEY. Binding a dg.EnvVar makes that variable required.",
    )
    base_url: str | None = Field(default=None, description=f"Defaults to $OPENAI_BASE_URL, else {DEFAULT_BASE_URL}.")
    organization: str | None = Field(default=None, description="Defaults to $OPENAI_ORG_ID.")
    project: str | None = Field(default=None, description="Defaults to $OPENAI_PROJECT_ID.")

    def has_key(self) -> bool:
        return bool(_setting(self.api_key, OPENAI_API_KEY))

    def _new_client(self, **options: Any) -> OpenAI:
        return openai.OpenAI(  # without a key, the client itself says so
            api_key=_setting(self.api_key, OPENAI_API_KEY),
            base_url=_setting(self.base_url, OPENAI_BASE_URL),
            organization=_setting(self.organization, OPENAI_ORG_ID),
            project=_setting(self.project, OPENAI_PROJECT_ID),
            **options,
        )

    def describe(self) -> str:
        return _public_url(_setting(self.base_url, OPENAI_BASE_URL) or DEFAULT_BASE_URL)


class LocalBatchAPIResource(_BatchAPIClientResource):
    """The local Batch API, embedded: in this process, through the `openai` client's transport.

    Its state (SQLite plus files) lives in `data_dir`, so the webserver, the daemon and every run
    see the same batches with nothing to start; the test double for the real provider.
    """

    data_dir: str | None = Field(
        default=None,
        description="State of the embedded local Batch API, an absolute folder; defaults to "
        "$BATCH_PIPELINE_LOCAL_API_DIR, else `local_batch_api` in $DAGSTER_HOME.",
    )
    settings: LocalBatchAPISettings = Field(
        default_factory=LocalBatchAPISettings,
        description="Pace, limits and injected faults of the local Batch API.",
    )

    def folder(self) -> Path:
        return Path(_location(self.data_dir, LOCAL_API_DIR, "local_batch_api", DEFAULT_LOCAL_API_DIR))

    def api_settings(self) -> LocalAPISettings:
        return LocalAPISettings(**self.settings.model_dump())

    def _new_client(self, **options: Any) -> OpenAI:
        return embedded_client(self.folder(), settings=self.api_settings(), **options)

    def describe(self) -> str:
        return f"embedded local Batch API ({self.folder()})"


class BatchAPIResource(dg.ConfigurableResource):
    """The Batch API the pipeline talks to: the real provider with a key, else the local one.

    Assets and the sensor use `gateway()`, `enqueued_token_limits`, `delete_provider_files` and
    `describe()`. Which of `openai` and `local` serves them is decided by `selected()`, the one
    place the provider rule lives (see the module docstring).
    """

    openai: OpenAIProviderResource
    local: LocalBatchAPIResource
    enqueued_token_limits: dict[str, int] = Field(
        default_factory=dict,
        description="Per-model enqueued-token limit of your organization (the 'batch queue "
        "limit'); shards that would exceed it wait and are submitted as earlier batches finish.",
    )
    deployment: str | None = Field(
        default=None,
        description="This deployment's name (staging, production, ...); defaults to "
        "$BATCH_PIPELINE_DEPLOYMENT. Part of every idempotency key, so deployments sharing one "
        "OpenAI project never take each other's batches. Unset: the default deployment.",
    )
    delete_provider_files: bool = Field(
        default=True,
        description="Delete a partition's batch input, output and error files at the provider once "
        "its results are written and the output and error files are kept raw in the warehouse, so "
        "a busy organisation stays under the provider's file limits. Off: they stay until the "
        "provider expires them (inputs after a week, outputs after 30 days).",
    )

    _selected: OpenAIProviderResource | LocalBatchAPIResource | None = PrivateAttr(default=None)
    _gateway: BatchGateway | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        # Dagster treats resource-typed fields as required; these defaults are the environment's.
        data.setdefault("openai", OpenAIProviderResource())
        data.setdefault("local", LocalBatchAPIResource())
        super().__init__(**data)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.selected()  # decide when the run or tick starts

    def selected(self) -> OpenAIProviderResource | LocalBatchAPIResource:
        """THE provider rule: a key means the real provider; no key, the embedded local Batch API."""
        if self._selected is None:
            self._selected = self.openai if self.openai.has_key() else self.local
        return self._selected

    def client(self) -> OpenAI:
        return self.selected().client()

    def gateway(self) -> BatchGateway:
        if self._gateway is None:
            self._gateway = BatchGateway(self.client())
        return self._gateway

    def describe(self) -> str:
        """Where requests go, for logs and metadata; never includes the key."""
        return self.selected().describe()

    def sending(self, model: str, log: Callable[[str], None]) -> Sending:
        """How a run sends a model's shards: the gateway, the model's enqueued-token limit, the
        deployment name."""
        return Sending(self.gateway(), self.enqueued_token_limits.get(model),
                       _setting(self.deployment, DEPLOYMENT) or "", log)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse root: a folder or an fsspec URL (s3://, gs://, ...)."""

    root: str | None = Field(
        default=None,
        description="An absolute folder or a URL; defaults to $BATCH_PIPELINE_WAREHOUSE, else "
        "`warehouse` in $DAGSTER_HOME.",
    )

    def warehouse(self) -> Warehouse:
        return Warehouse(_location(self.root, WAREHOUSE_ROOT, "warehouse", "warehouse"))
