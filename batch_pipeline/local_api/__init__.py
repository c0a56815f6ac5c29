"""A local, durable, fault-injectable stand-in for OpenAI's Files + Batches API.

Served: ``serve()`` (``batch-pipeline local-api``). Embedded: ``embedded_client(data_dir)``
returns an unmodified ``openai.OpenAI`` that runs the same app in-process.
"""

from batch_pipeline.local_api.app import create_app
from batch_pipeline.local_api.embedded import embedded_client
from batch_pipeline.local_api.server import serve
from batch_pipeline.local_api.settings import (
           LocalAPISettings,
           add_settings_arguments,
           settings_from_args,
)

__all__ = ["LocalAPISettings", "add_settings_arguments", "create_app", "embedded_client", "serve",
           "settings_from_args"]
