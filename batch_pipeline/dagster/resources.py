"""Dagster resources: the Batch API and the warehouse.

Optional settings are read through `dg.EnvVar(...).get_value()` when a run or a sensor tick
starts, never at import time. (A field bound to `dg.EnvVar` would make an unset variable a
config error, but an unset `OPENAI_API_KEY` is meaningful: it selects the local Batch API.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import openai
from pydantic import Field

from batch_pipeline.provider.gateway import BatchGateway
from batch_pipeline.warehouse.storage import Warehouse


class BatchAPIResource(dg.ConfigurableResource):
    """The Batch API: OpenAI (or a compatible provider) with a key, else the embedded local one.

    The embedded local Batch API runs inside whichever process calls it, on state in
    `local_api_dir`, so the webserver, the daemon and every run see the same batches with
    nothing to start.
    """

    api_key: str | None = Field(
        default=None, description="API key; defaults to $OPENAI_API_KEY. Unset: local Batch API."
    )
    base_url: str | None = Field(default=None, description="Defaults to $OPENAI_BASE_URL.")
    organization: str | None = Field(default=None, description="Defaults to $OPENAI_ORG_ID.")
    project: str | None = Field(default=None, description="Defaults to $OPENAI_PROJECT_ID.")
    local_api_dir: str | None = Field(
        default=None,
        description="State of the embedded local Batch API; defaults to "
        "$BATCH_PIPELINE_LOCAL_API_DIR, else `.local_batch_api` in the working directory.",
    )
    local_api_settings: dict[str, Any] = Field(
        default_factory=dict,
        description="LocalAPISettings fields (pace, limits, faults) of the embedded local Batch API.",
    )
    max_retries: int = Field(default=5, description="Client retries on 429/5xx/timeouts.")
    enqueued_token_limits: dict[str, int] = Field(
        default_factory=dict,
        description="Per-model enqueued-token limit of your organization (the 'batch queue "
        "limit'); shards that would exceed it wait and are submitted as earlier batches finish.",
    )
    timeout_seconds: float = Field(default=120.0, description="Per-request timeout.")

    def uses_local_api(self) -> bool:
        return not (self.api_key or dg.EnvVar("OPENAI_API_KEY").get_value())

    def client(self) -> openai.OpenAI:
        options = {"max_retries": self.max_retries, "timeout": self.timeout_seconds}
        if self.uses_local_api():
            from batch_pipeline.local_api import LocalAPISettings, embedded_client

            folder = self.local_api_dir or dg.EnvVar("BATCH_PIPELINE_LOCAL_API_DIR").get_value()
            settings = LocalAPISettings(**self.local_api_settings)
            return embedded_client(Path(folder or ".local_batch_api").resolve(), settings=settings, **options)
        return openai.OpenAI(
            api_key=self.api_key or dg.EnvVar("OPENAI_API_KEY").get_value(),
            base_url=self.base_url or dg.EnvVar("OPENAI_BASE_URL").get_value(),
            organization=self.organization or dg.EnvVar("OPENAI_ORG_ID").get_value(),
            project=self.project or dg.EnvVar("OPENAI_PROJECT_ID").get_value(),
            **options,
        )

    def gateway(self) -> BatchGateway:
        return BatchGateway(self.client())

    def describe(self) -> str:
        """Where requests go, for logs and metadata; never includes the key."""
        if self.uses_local_api():
            return "embedded local Batch API"
        return self.base_url or dg.EnvVar("OPENAI_BASE_URL").get_value() or "api.openai.com"


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse root: a folder or an fsspec URL (s3://, gs://, ...)."""

    root: str | None = Field(
        default=None,
        description="Defaults to $BATCH_PIPELINE_WAREHOUSE, else `warehouse` in the working "
        "directory.",
    )

    def warehouse(self) -> Warehouse:
        root = self.root or dg.EnvVar("BATCH_PIPELINE_WAREHOUSE").get_value() or "warehouse"
        if "://" not in root:
            root = str(Path(root).resolve())
        return Warehouse(root)
