"""Serve the local Batch API over HTTP with uvicorn (``batch-pipeline local-api``)."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from batch_pipeline.local_api.app import create_app
from batch_pipeline.local_api.settings import LocalAPISettings

DEFAULT_DATA_DIR = Path(".local_batch_api")


def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: str | Path = DEFAULT_DATA_DIR,
          api_key: str | None = None, settings: LocalAPISettings | None = None) -> None:
    """Block serving ``http://host:port/v1``; batches also advance in the background."""
    app = create_app(data_dir, api_key=api_key, settings=settings)
    # Access logs show paths and statuses only, never headers, so the key never reaches a log.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
