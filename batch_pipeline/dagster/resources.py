"""Dagster resources: the Batch API and the warehouse.

The Batch API is one resource, `BatchAPIResource`, under the key `batch_api`. It composes one
resource per place requests can go, and picks between them with one rule (docs/architecture.md,
"Provider selection"), in `BatchAPIResource.selected`:

    the provider (`provider`, else BATCH_PIPELINE_PROVIDER): `openai` (the default), `azure`,
    `anthropic` or `gemini`;
    its key set (OPENAI_API_KEY, AZURE_OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or
    GOOGLE_API_KEY, or an `api_key` configured)
        ->  `OpenAIProviderResource` (OpenAI, or the OpenAI-compatible API at OPENAI_BASE_URL),
            `AzureOpenAIProviderResource` (an Azure OpenAI resource), `AnthropicProviderResource`
            or `GeminiProviderResource`;
    no key
        ->  `LocalBatchAPIResource`, the embedded local Batch API, with nothing for the user to
            start, answering in that provider's protocol (Azure: its routes, its client, its
            deployments; Anthropic's Message Batches; Gemini's Batch Mode).

Whichever answers, the provider's contract (`batch_pipeline.provider.contract.Provider`,
`provider_in_use()`) says how request lines are written and how large a shard may be.

The rule is evaluated when a run or a sensor tick initializes the resource
(`setup_for_execution`), or on first use of a resource built by hand; never at import time.

Environment variables are declared once below as `dg.EnvVar`s and read with `.get_value()` at that
moment. A field may also be bound to a `dg.EnvVar` explicitly (`api_key=dg.EnvVar("MY_KEY")`), but
Dagster then requires that variable when the resource initializes, whichever side the rule picks;
so the defaults are unbound, and an unset OPENAI_API_KEY selects the local Batch API instead of
failing the run's config.

Each resource instance builds one connection (`provider.contract.BatchAPI`, on the provider's
official client) on first use and keeps it. Dagster initializes a fresh
copy of every resource for each run (each step process) and each sensor tick, so a client lives
as long as that run or tick and is closed in `teardown_after_execution`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import ConfigDict, Field, PrivateAttr, create_model
from pydantic.fields import FieldInfo

from batch_pipeline.local_api.embedded import (
    EMBEDDED_API_KEY,
    EMBEDDED_ORIGIN,
    embedded_http_client,
)
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.provider import registry
from batch_pipeline.provider.azure_api import (
    AZURE_DEPLOYMENTS_VARIABLE,
    AZURE_EXPIRY_RANGE,
    AZURE_INPUT_EXPIRY_SECONDS,
    AzureOpenAIProvider,
    parse_deployments,
)
from batch_pipeline.provider.contract import (
    BatchAPI,
    ClosableClient,
    Provider,
    ProviderSettingError,
)
from batch_pipeline.provider.openai_api import DEFAULT_BASE_URL, OpenAIProvider
from batch_pipeline.provider.openai_wire import (
    INPUT_EXPIRY_SECONDS,
    OPENAI_EXPIRY_RANGE,
    OUTPUT_EXPIRY_SECONDS,
)
from batch_pipeline.provider.submission import QUOTA_BACKOFF_SECONDS, Sending
from batch_pipeline.warehouse.storage import Warehouse

OPENAI_API_KEY = dg.EnvVar("OPENAI_API_KEY")
OPENAI_BASE_URL = dg.EnvVar("OPENAI_BASE_URL")
OPENAI_ORG_ID = dg.EnvVar("OPENAI_ORG_ID")
OPENAI_PROJECT_ID = dg.EnvVar("OPENAI_PROJECT_ID")
PROVIDER = dg.EnvVar("BATCH_PIPELINE_PROVIDER")
AZURE_OPENAI_API_KEY = dg.EnvVar("AZURE_OPENAI_API_KEY")
AZURE_OPENAI_ENDPOINT = dg.EnvVar("AZURE_OPENAI_ENDPOINT")
OPENAI_API_VERSION = dg.EnvVar("OPENAI_API_VERSION")  # the variable openai.AzureOpenAI reads
AZURE_DEPLOYMENTS = dg.EnvVar(AZURE_DEPLOYMENTS_VARIABLE)
ANTHROPIC_API_KEY = dg.EnvVar("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = dg.EnvVar("ANTHROPIC_BASE_URL")
GEMINI_API_KEY = dg.EnvVar("GEMINI_API_KEY")
GOOGLE_API_KEY = dg.EnvVar("GOOGLE_API_KEY")  # the other variable google-genai reads
GEMINI_BASE_URL = dg.EnvVar("GOOGLE_GEMINI_BASE_URL")
LOCAL_API_DIR = dg.EnvVar("BATCH_PIPELINE_LOCAL_API_DIR")
WAREHOUSE_ROOT = dg.EnvVar("BATCH_PIPELINE_WAREHOUSE")
DEPLOYMENT = dg.EnvVar("BATCH_PIPELINE_DEPLOYMENT")
DAGSTER_HOME = dg.EnvVar("DAGSTER_HOME")

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


def _required(configured: str | None, variable: dg.EnvVar, field: str) -> str:
    """A setting the provider cannot work without; missing, it fails naming the field and the
    variable (never a value)."""
    value = _setting(configured, variable)
    if not value:
        raise ProviderSettingError(
            f"Azure OpenAI needs its {field}: set {variable.env_var_name} or "
            f"AzureOpenAIProviderResource({field}=...); nothing was uploaded"
        )
    return value


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
    """One connection (the provider's official client) per resource instance, built on first
    use, closed at teardown."""

    max_retries: int = Field(default=5, description="Client retries on 429/5xx/timeouts.")
    timeout_seconds: float = Field(default=120.0, description="Per-request timeout.")

    _api: BatchAPI | None = PrivateAttr(default=None)

    def api(self) -> BatchAPI:
        if self._api is None:
            self._api = self._connect(max_retries=self.max_retries, timeout=self.timeout_seconds)
        return self._api

    def client(self) -> ClosableClient:
        """The provider's official client (to look at batches and files directly)."""
        return self.api().client

    def describe(self) -> str:
        """Where requests go, for logs and metadata; never includes a key."""
        raise NotImplementedError

    def _connect(self, **options: Any) -> BatchAPI:
        raise NotImplementedError

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._api is not None:
            self._api.client.close()
            self._api = None


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
    input_expires_after_seconds: int = Field(
        default=INPUT_EXPIRY_SECONDS, ge=OPENAI_EXPIRY_RANGE[0], le=OPENAI_EXPIRY_RANGE[1],
        description="How long OpenAI keeps an uploaded request file (`expires_after`), unless the spec says.",
    )
    output_expires_after_seconds: int = Field(
        default=OUTPUT_EXPIRY_SECONDS, ge=OPENAI_EXPIRY_RANGE[0], le=OPENAI_EXPIRY_RANGE[1],
        description="How long OpenAI keeps a batch's output and error files (`output_expires_after`), unless "
        "the spec says.",
    )

    def has_key(self) -> bool:
        return bool(_setting(self.api_key, OPENAI_API_KEY))

    def provider(self, local: bool = False) -> OpenAIProvider:
        """These settings as a provider (`local`: the local Batch API stands in for OpenAI, so
        only the expiry settings apply)."""
        expiry = OpenAIProvider(input_expires_after_seconds=self.input_expires_after_seconds,
                                output_expires_after_seconds=self.output_expires_after_seconds)
        if local:
            return expiry
        return dataclasses.replace(
            expiry,
            api_key=_setting(self.api_key, OPENAI_API_KEY),
            base_url=_setting(self.base_url, OPENAI_BASE_URL),
            organization=_setting(self.organization, OPENAI_ORG_ID),
            project=_setting(self.project, OPENAI_PROJECT_ID),
        )

    def _connect(self, **options: Any) -> BatchAPI:
        return self.provider().connect(**options)  # without a key, the client itself says so

    def describe(self) -> str:
        return self.provider().describe()


class AzureOpenAIProviderResource(_BatchAPIClientResource):
    """An Azure OpenAI resource's Batch API, through `openai.AzureOpenAI`.

    Unset fields are read from AZURE_OPENAI_ENDPOINT, OPENAI_API_VERSION, AZURE_OPENAI_API_KEY
    and BATCH_PIPELINE_AZURE_DEPLOYMENTS when the client is built. Request lines name each
    model's deployment; a model with none, or no endpoint or API version, fails the run before
    anything is uploaded, naming the setting.
    """

    endpoint: str | None = Field(
        default=None, description="https://RESOURCE.openai.azure.com; defaults to $AZURE_OPENAI_ENDPOINT."
    )
    api_version: str | None = Field(
        default=None, description="The API version (e.g. 2024-10-21); defaults to $OPENAI_API_VERSION."
    )
    api_key: str | None = Field(
        default=None,
        repr=False,
        description="Defaults to $AZURE_OPENAI_API_KEY. Binding a dg.EnvVar makes that variable required.",
    )
    deployments: dict[str, str] = Field(
        default_factory=dict,
        description=f"The Global-Batch deployment of each model (model -> deployment name); defaults to "
        f"${AZURE_DEPLOYMENTS_VARIABLE} ('gpt-4o-mini=gpt-4o-mini-batch,...').",
    )
    input_expires_after_seconds: int = Field(
        default=AZURE_INPUT_EXPIRY_SECONDS, ge=AZURE_EXPIRY_RANGE[0], le=AZURE_EXPIRY_RANGE[1],
        description="How long Azure keeps an uploaded request file (14 to 30 days), unless the spec says.",
    )
    output_expires_after_seconds: int = Field(
        default=OUTPUT_EXPIRY_SECONDS, ge=AZURE_EXPIRY_RANGE[0], le=AZURE_EXPIRY_RANGE[1],
        description="How long Azure keeps a batch's output and error files (14 to 30 days), unless the spec says.",
    )

    def has_key(self) -> bool:
        return bool(_setting(self.api_key, AZURE_OPENAI_API_KEY))

    def provider(self, local: bool = False) -> AzureOpenAIProvider:
        """These settings as a provider, checked now (`local`: the local Batch API stands in for
        the resource, so no endpoint is needed)."""
        endpoint = "" if local else _required(self.endpoint, AZURE_OPENAI_ENDPOINT, "endpoint")
        return AzureOpenAIProvider(
            endpoint, _required(self.api_version, OPENAI_API_VERSION, "api_version"),
            _setting(self.api_key, AZURE_OPENAI_API_KEY),
            self.deployments or parse_deployments(AZURE_DEPLOYMENTS.get_value() or ""),
            input_expires_after_seconds=self.input_expires_after_seconds,
            output_expires_after_seconds=self.output_expires_after_seconds,
        )

    def _connect(self, **options: Any) -> BatchAPI:
        return self.provider().connect(**options)

    def describe(self) -> str:
        return self.provider().describe()


class AnthropicProviderResource(_BatchAPIClientResource):
    """Anthropic's Message Batches API, through `anthropic.Anthropic` (the `[anthropic]` extra).

    Unset fields are read from ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL when the client is built.
    """

    api_key: str | None = Field(
        default=None, repr=False,
        description="Defaults to $ANTHROPIC_API_KEY. Binding a dg.EnvVar makes that variable required.",
    )
    base_url: str | None = Field(default=None, description="Defaults to $ANTHROPIC_BASE_URL, else Anthropic's.")

    def has_key(self) -> bool:
        return bool(_setting(self.api_key, ANTHROPIC_API_KEY))

    def provider(self) -> Provider:
        from batch_pipeline.provider.anthropic_api import (
            AnthropicProvider,  # the optional extra's SDK
        )

        return AnthropicProvider(api_key=_setting(self.api_key, ANTHROPIC_API_KEY),
                                 base_url=_setting(self.base_url, ANTHROPIC_BASE_URL))

    def _connect(self, **options: Any) -> BatchAPI:
        return self.provider().connect(**options)

    def describe(self) -> str:
        return self.provider().describe()


class GeminiProviderResource(_BatchAPIClientResource):
    """Google Gemini's Batch Mode (the Gemini Developer API), through `google.genai.Client` (the
    `[gemini]` extra). Unset fields are read from GEMINI_API_KEY (else GOOGLE_API_KEY) and
    GOOGLE_GEMINI_BASE_URL when the client is built."""

    api_key: str | None = Field(
        default=None, repr=False,
        description="Defaults to $GEMINI_API_KEY, else $GOOGLE_API_KEY. Binding a dg.EnvVar makes it required.",
    )
    base_url: str | None = Field(default=None, description="Defaults to $GOOGLE_GEMINI_BASE_URL, else Google's.")

    def _key(self) -> str | None:
        return _setting(self.api_key, GEMINI_API_KEY) or _setting(None, GOOGLE_API_KEY)

    def has_key(self) -> bool:
        return bool(self._key())

    def provider(self) -> Provider:
        from batch_pipeline.provider.gemini_api import GeminiProvider  # the optional extra's SDK

        return GeminiProvider(api_key=self._key(), base_url=_setting(self.base_url, GEMINI_BASE_URL))

    def _connect(self, **options: Any) -> BatchAPI:
        return self.provider().connect(**options)

    def describe(self) -> str:
        return self.provider().describe()


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

    _speaks: Provider | None = PrivateAttr(default=None)

    def speak(self, provider: Provider) -> None:
        """Answer as `provider` (its client and routes; Azure's deployments served as their
        models) from the next client built; by default as OpenAI."""
        self._speaks = provider

    def folder(self) -> Path:
        return Path(_location(self.data_dir, LOCAL_API_DIR, "local_batch_api", DEFAULT_LOCAL_API_DIR))

    def api_settings(self) -> LocalAPISettings:
        settings = LocalAPISettings(**self.settings.model_dump())
        deployments = self._speaks.deployments if self._speaks is not None else {}
        if not deployments:
            return settings
        served = {name: model for model, name in deployments.items()}
        return settings.model_copy(update={"azure_deployments": served | settings.azure_deployments})

    def provider(self) -> Provider:
        """The provider it answers as, at the embedded origin."""
        return (self._speaks or OpenAIProvider()).at(EMBEDDED_ORIGIN, EMBEDDED_API_KEY)

    def _connect(self, **options: Any) -> BatchAPI:
        return self.provider().connect(embedded_http_client(self.folder(), settings=self.api_settings()), **options)

    def describe(self) -> str:
        described = f"embedded local Batch API ({self.folder()})"
        if self._speaks is None:
            return described
        return f"{described} as {self.provider().describe()}"


class _Registered:
    """A provider added with `provider.registry.register`: its real API, one connection per run
    or tick (it reads its own settings and key)."""

    def __init__(self, provider: Provider, **options: Any) -> None:
        self.provider, self._options = provider, options
        self._api: BatchAPI | None = None

    def api(self) -> BatchAPI:
        if self._api is None:
            self._api = self.provider.connect(**self._options)
        return self._api

    def client(self) -> ClosableClient:
        return self.api().client

    def describe(self) -> str:
        return self.provider.describe()

    def close(self) -> None:
        if self._api is not None:
            self._api.client.close()
            self._api = None


_Real = OpenAIProviderResource | AzureOpenAIProviderResource | AnthropicProviderResource | GeminiProviderResource
Answering = _Real | LocalBatchAPIResource | _Registered


class BatchAPIResource(dg.ConfigurableResource):
    """The Batch API the pipeline talks to: the provider's real API with a key, else the local one.

    Assets and the sensor use `api()`, `provider_in_use()`, `enqueued_token_limits`,
    `delete_provider_files` and `describe()`. Which of `openai`, `azure` and `local` serves them is
    decided by `selected()`, the one place the provider rule lives (see the module docstring).
    """

    provider: str | None = Field(
        default=None,
        description="Whose Batch API to speak, 'openai' or 'azure'; defaults to $BATCH_PIPELINE_PROVIDER, "
        "else 'openai'. Without that provider's key, the embedded local Batch API answers as it.",
    )
    openai: OpenAIProviderResource
    azure: AzureOpenAIProviderResource
    anthropic: AnthropicProviderResource
    gemini: GeminiProviderResource
    local: LocalBatchAPIResource
    enqueued_token_limits: dict[str, int] = Field(
        default_factory=dict,
        description="Per-model enqueued-token limit of your organization (the 'batch queue "
        "limit'); shards that would exceed it wait and are submitted as earlier batches finish.",
    )
    quota_backoff_seconds: float = Field(
        default=QUOTA_BACKOFF_SECONDS, ge=0,
        description="When the provider refuses a batch at creation because the model's enqueued-token "
        "quota is full (Azure OpenAI's fail-fast 400 token_limit_exceeded), the shard waits this long "
        "before the batch monitor offers it again; the run stays green.",
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
        "provider expires them (the provider resource's or spec's expiry settings: by default inputs "
        "after a week, on Azure two, and outputs after 30 days).",
    )

    harvest_wait_seconds: float = Field(
        default=5.0, ge=0,
        description="How long a results step waits for its partitions' batches still running before it "
        "leaves them to the batch monitor (once per run, not per partition): a small partition on a "
        "fast provider then lands in the run that submitted it, instead of a second run. 0: never waits.",
    )

    _selected: Answering | None = PrivateAttr(default=None)
    _provider: Provider | None = PrivateAttr(default=None)
    _elsewhere: dict[str, LocalBatchAPIResource] = PrivateAttr(default_factory=dict)
    _others: dict[str, _Registered] = PrivateAttr(default_factory=dict)  # registered providers

    def __init__(self, **data: Any) -> None:
        # Dagster treats resource-typed fields as required; these defaults are the environment's.
        data.setdefault("openai", OpenAIProviderResource())
        data.setdefault("azure", AzureOpenAIProviderResource())
        data.setdefault("anthropic", AnthropicProviderResource())
        data.setdefault("gemini", GeminiProviderResource())
        data.setdefault("local", LocalBatchAPIResource())
        super().__init__(**data)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Decide when the run or tick starts. An incomplete provider setting is raised again by
        the first step that uses the resource, where Dagster shows its message as the step's
        failure (raised here, the run would fail with only a wrapper's message)."""
        with contextlib.suppress(ProviderSettingError):
            self.selected()

    def selected(self) -> Answering:
        """THE provider rule: the provider's key means its real API; no key, the embedded local
        Batch API, answering as that provider."""
        if self._selected is None:
            name = self.provider or PROVIDER.get_value() or "openai"
            if name not in registry.names():
                raise ProviderSettingError(f"BATCH_PIPELINE_PROVIDER (or `provider`) is '{name}'; use one of "
                                           f"{', '.join(registry.names())}")
            if name in registry.REGISTERED:
                registered = self._registered(name)
                self._selected, self._provider = registered, registered.provider
                return registered
            real = self._real(name)
            if real.has_key():
                self._selected, self._provider = real, real.provider()
            else:
                self._provider = self._stand_in(name)
                self.local.speak(self._provider)
                self._selected = self.local
        return self._selected

    def provider_in_use(self) -> Provider:
        """The contract of the provider spoken to: how request lines are written, file limits."""
        self.selected()
        assert self._provider is not None  # set with the selection
        return self._provider

    def client(self) -> ClosableClient:
        """The official client of the provider in use (to look at batches and files directly)."""
        return self.selected().client()

    def api(self) -> BatchAPI:
        """The connection to the provider in use, for this run or tick."""
        return self.selected().api()

    def _real(self, name: str) -> _Real:
        real: dict[str, _Real] = {"openai": self.openai, "azure": self.azure, "anthropic": self.anthropic,
                                  "gemini": self.gemini}
        return real[name]

    def _stand_in(self, name: str) -> Provider:
        """The provider whose protocol the embedded local Batch API speaks when `name` has no key."""
        if name == "azure":
            return self.azure.provider(local=True)
        if name in ("anthropic", "gemini"):
            return self._real(name).provider()
        return self.openai.provider(local=True)

    def api_at(self, fingerprint: str) -> BatchAPI | None:
        """The connection to the provider whose settings have `fingerprint`, among those configured
        (a real provider with its key, or the embedded local API as any of them): where batches
        sent before the provider setting changed are watched and harvested. None: not configured."""
        for name in registry.BUILT_IN:
            with contextlib.suppress(ProviderSettingError, ImportError):  # incomplete, or its extra missing
                real = self._real(name)
                if real.has_key() and real.provider().fingerprint() == fingerprint:
                    return real.api()
        for name in registry.BUILT_IN:
            with contextlib.suppress(ProviderSettingError, ImportError):
                speaks = self._stand_in(name)
                if speaks.at(EMBEDDED_ORIGIN, EMBEDDED_API_KEY).fingerprint() != fingerprint:
                    continue
                if fingerprint not in self._elsewhere:
                    local = LocalBatchAPIResource(data_dir=self.local.data_dir, settings=self.local.settings)
                    local.speak(speaks)
                    self._elsewhere[fingerprint] = local
                return self._elsewhere[fingerprint].api()
        for name in registry.REGISTERED:
            if self._registered(name).provider.fingerprint() == fingerprint:
                return self._registered(name).api()
        return None

    def _registered(self, name: str) -> _Registered:
        if name not in self._others:
            provider = registry.REGISTERED[name]()
            self._others[name] = _Registered(provider, max_retries=self.openai.max_retries,
                                             timeout=self.openai.timeout_seconds)
        return self._others[name]

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for local in self._elsewhere.values():
            local.teardown_after_execution(context)
        for registered in self._others.values():
            registered.close()
        self._elsewhere.clear()
        self._others.clear()

    def describe(self) -> str:
        """Where requests go, for logs and metadata; never includes the key."""
        return self.selected().describe()

    def sending(self, model: str, log: Callable[[str], None]) -> Sending:
        """How a run sends a model's shards: the connection, the model's enqueued-token limit, the
        deployment name, the provider's contract."""
        return Sending(self.api(), self.enqueued_token_limits.get(model),
                       _setting(self.deployment, DEPLOYMENT) or "", log, self.quota_backoff_seconds, self.api_at)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse root: a folder or an fsspec URL (s3://, gs://, ...)."""

    root: str | None = Field(
        default=None,
        description="An absolute folder or a URL; defaults to $BATCH_PIPELINE_WAREHOUSE, else "
        "`warehouse` in $DAGSTER_HOME.",
    )

    def warehouse(self) -> Warehouse:
        return Warehouse(_location(self.root, WAREHOUSE_ROOT, "warehouse", "warehouse"))
