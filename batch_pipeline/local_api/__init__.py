"""A local, durable, fault-injectable stand-in for OpenAI's Files + Batches API.

Served: ``serve()`` (``batch-pipeline local-api``). Embedded: ``embedded_client(data_dir)``
returns an unmodified ``openai.OpenAI`` that runs the same app in-process.

Its web stack (starlette, uvicorn, python-multipart) is the ``local-api`` extra. The settings
import without it; ``create_app``, ``serve`` and ``embedded_client`` load it on first use and,
when it is missing, say which extra to install (``require_web_stack``).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from batch_pipeline.local_api.settings import (
           LocalAPISettings,
           add_settings_arguments,
           settings_from_args,
)

if TYPE_CHECKING:
    from batch_pipeline.local_api.app import create_app
    from batch_pipeline.local_api.embedded import embedded_client
    from batch_pipeline.local_api.server import serve

EXTRA_MESSAGE = "the local Batch API needs the extra: pip install 'batch_pipeline[local-api]'"

# What the app (starlette, which parses uploads with python-multipart) and the server (uvicorn)
# import. httpx2, the embedded client's transport, comes with openai.
_APP_MODULES = ("starlette", "python_multipart")
_SERVER_MODULES = ("uvicorn",)


class LocalAPIExtraMissing(ImportError):
    """The ``local-api`` extra is not installed."""


def require_web_stack(*, server: bool = False) -> None:
    """Import the web stack the app needs (and uvicorn with ``server``), or raise
    ``LocalAPIExtraMissing`` naming the extra to install."""
    for module in _APP_MODULES + (_SERVER_MODULES if server else ()):
        try:
            import_module(module)
        except ImportError as exc:
            raise LocalAPIExtraMissing(f"{EXTRA_MESSAGE} ({exc})", name=module) from exc


# Loaded on first use: the web stack is imported only by what needs it.
_LAZY = {
    "create_app": ("batch_pipeline.local_api.app", False),
    "embedded_client": ("batch_pipeline.local_api.embedded", False),
    "serve": ("batch_pipeline.local_api.server", True),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'batch_pipeline.local_api' has no attribute '{name}'")
    module, server = _LAZY[name]
    require_web_stack(server=server)
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["EXTRA_MESSAGE", "LocalAPIExtraMissing", "LocalAPISettings", "add_settings_arguments", "create_app",
           "embedded_client", "require_web_stack", "serve", "settings_from_args"]
