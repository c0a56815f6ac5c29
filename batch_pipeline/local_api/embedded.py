"""The local Batch API inside the caller's process, behind an unmodified ``openai.OpenAI``.

The client's own HTTP hook (an ``httpx2`` transport) hands each request to the same ASGI
app that ``serve`` runs, on a short-lived event loop in the calling thread: no port, no
server, no thread left behind. Batches advance whenever any process reads them, so the
Dagster webserver, daemon and run workers all move the same shared state forward.

The app's web stack (the ``local-api`` extra) is imported by ``embedded_client``, not by this
module: ``LocalBatchAPIResource`` imports without it and says which extra to install when used.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2  # a dependency of openai
import openai

from batch_pipeline.local_api import require_web_stack
from batch_pipeline.local_api.settings import LocalAPISettings

if TYPE_CHECKING:
    from google import genai
    from starlette.types import ASGIApp, Message

T = TypeVar("T")

EMBEDDED_ORIGIN = "http://local-batch-api"
EMBEDDED_BASE_URL = f"{EMBEDDED_ORIGIN}/v1"
EMBEDDED_API_KEY = "local-batch-api"  # the embedded API checks no key; the clients need one


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop's thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # The caller's thread already runs a loop (an async framework calling sync code):
    # run ours on a helper thread that ends with the call.
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(factory())
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    helper = threading.Thread(target=target, name="local-batch-api-call")
    helper.start()
    helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class EmbeddedTransport(httpx2.BaseTransport):
    """An ``httpx2`` transport that answers requests with an in-process ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        from batch_pipeline.local_api.app import STALL_HEADER  # the app is loaded: it was built

        self.app = app
        self._stall_header = STALL_HEADER.encode()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        url = request.url
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
            "headers": [(key.lower(), value) for key, value in request.headers.raw], "scheme": url.scheme,
            "path": url.path, "raw_path": url.raw_path.split(b"?")[0], "query_string": url.query,
            "server": (url.host, url.port or 80), "client": ("127.0.0.1", 0), "root_path": "",
            # File downloads arrive as one path to read here, not as 1 MiB chunks over thread hops.
            "extensions": {"http.response.pathsend": {}},
        }
        # The coroutine leaves its result here instead of returning it: on Python 3.11,
        # ``asyncio.run`` formats the finished task's repr (via ``signal.getsignal``), and a
        # returned 48 MB body would be repr'd in full, twice, per call.
        result: list[tuple[int, list[tuple[bytes, bytes]], bytes]] = []

        async def call() -> None:
            result.append(await self._call(scope, body))

        _run(call)
        status, headers, content = result[0]
        if any(key == self._stall_header for key, _ in headers):
            raise httpx2.ReadTimeout("The local Batch API stalled this call (injected timeout).", request=request)
        return httpx2.Response(status, headers=headers, content=content, request=request)

    async def _call(self, scope: dict[str, Any], body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        sent_request = False
        finished = asyncio.Event()
        response: dict[str, Any] = {"status": 500, "headers": [], "chunks": []}

        async def receive() -> Message:
            nonlocal sent_request
            if sent_request:
                # The client stays connected until the whole response is sent.
                await finished.wait()
                return {"type": "http.disconnect"}
            sent_request = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.pathsend":
                response["chunks"].append(Path(message["path"]).read_bytes())
                finished.set()
            elif message["type"] == "http.response.body":
                response["chunks"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    finished.set()

        try:
            await self.app(scope, receive, send)
        finally:
            finished.set()
        chunks = response["chunks"]
        return response["status"], response["headers"], chunks[0] if len(chunks) == 1 else b"".join(chunks)


def embedded_http_client(data_dir: str | Path, *, settings: LocalAPISettings | None = None) -> httpx2.Client:
    """An HTTP client for the ``openai`` clients (``OpenAI``, ``AzureOpenAI``) and ``anthropic.Anthropic``
    (base URL ``EMBEDDED_ORIGIN``: both take any ``httpx2.Client``) that answers every request to
    ``EMBEDDED_ORIGIN`` with the local Batch API on ``data_dir``, in-process.

    Raises ``LocalAPIExtraMissing`` (an ``ImportError``) without the ``local-api`` extra."""
    require_web_stack()
    from batch_pipeline.local_api.app import build_app

    app = build_app(data_dir, api_key=None, settings=settings or LocalAPISettings(), offload=False)
    return openai.DefaultHttpxClient(transport=EmbeddedTransport(app))


def embedded_client(data_dir: str | Path, *, settings: LocalAPISettings | None = None,
                    **openai_kwargs: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` client talking to the local Batch API on ``data_dir``, in-process.

    Raises ``LocalAPIExtraMissing`` (an ``ImportError``) without the ``local-api`` extra."""
    http_client = embedded_http_client(data_dir, settings=settings)
    openai_kwargs.setdefault("api_key", EMBEDDED_API_KEY)
    openai_kwargs.setdefault("base_url", EMBEDDED_BASE_URL)
    return openai.OpenAI(http_client=http_client, **openai_kwargs)


def embedded_genai_client(data_dir: str | Path, *, settings: LocalAPISettings | None = None,
                          api_version: str | None = None) -> genai.Client:
    """A ``google.genai.Client`` (Gemini Developer API) talking to the local Batch API on
    ``data_dir``, in-process: the SDK takes the same in-process transport through
    ``HttpOptions(httpx_client=httpx2.Client(transport=EmbeddedTransport(app)))``.

    ``api_version`` is the SDK's (``v1`` by default, or ``v1beta``). Needs the ``gemini`` extra
    (google-genai) besides ``local-api``."""
    require_web_stack()
    from google import genai
    from google.genai import types

    from batch_pipeline.local_api.app import build_app

    app = build_app(data_dir, api_key=None, settings=settings or LocalAPISettings(), offload=False)
    options = types.HttpOptions(base_url=EMBEDDED_ORIGIN, api_version=api_version,
                                httpx_client=httpx2.Client(transport=EmbeddedTransport(app)))
    return genai.Client(api_key=EMBEDDED_API_KEY, http_options=options)
