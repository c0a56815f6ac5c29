"""HTTP routes of the local Batch API (Starlette), the same app served and embedded.

Plain Starlette rather than FastAPI routing: every parameter error must come back in
OpenAI's envelope (400 with ``param``), not as a 422 validation report, so the handlers
parse their own inputs.

The same routes also answer as Azure OpenAI under ``/openai`` (``?api-version=`` required), for
the unmodified ``openai.AzureOpenAI`` client: batches created there take Azure's endpoint form
(``/chat/completions``), deployment names as models, its limits and error codes, and its quirks
(``""`` for a file it has not, an empty error file for a clean batch); docs/provider-port.md lists them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route

from batch_pipeline.local_api.errors import APIError, bad_request, error_body, not_found
from batch_pipeline.local_api.faults import ApiFaults, api_fault_error
from batch_pipeline.local_api.lifecycle import Lifecycle, empty_usage
from batch_pipeline.local_api.responders import RESPONDERS
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.local_api.store import (
    AZURE,
    OPENAI,
    BatchRow,
    OverQuota,
    Quota,
    Store,
    file_object,
    new_batch_id,
)
from batch_pipeline.local_api.upstream import upstream_executor, upstream_models
from batch_pipeline.local_api.validation import openai_path, supported_values, validate_input

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
RouteTable = list[tuple[str, Handler, list[str]]]  # path, handler, methods

UPLOAD_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
ENDPOINTS = tuple(RESPONDERS)
MIN_EXPIRY, MAX_EXPIRY = 3600, 2_592_000
AZURE_MIN_EXPIRY = 1_209_600  # Azure keeps an uploaded file 14 to 30 days
BATCH_FILE_TTL = 30 * 86400
NAMELESS = "upload"  # the filename the openai SDK sends for raw bytes or a nameless stream
BATCH_TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
                    "expired_at", "cancelling_at", "cancelled_at")
# Marks a response standing for a stalled call; the embedded transport turns it into a timeout.
STALL_HEADER = "x-local-api-stalled"


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ContentResponse(FileResponse):
    """File download in 1 MiB chunks: Starlette's 64 KiB default costs one thread hop per chunk."""

    chunk_size = 1 << 20


class LocalBatchAPI:
    """The state behind the routes: store, lifecycle, faults and the key check."""

    def __init__(self, data_dir: str | Path, api_key: str | None, settings: LocalAPISettings, offload: bool):
        self.settings = settings
        self.store = Store(data_dir, settings.file_clock_offset_seconds)
        if settings.upstream_url:
            # One round of concurrent upstream calls per chunk keeps each checkpoint near the budget.
            self.lifecycle = Lifecycle(self.store, settings, upstream_executor(settings),
                                       chunk_lines=settings.upstream_concurrency,
                                       served_models=upstream_models(settings), prompt_cache=False)
        else:
            self.lifecycle = Lifecycle(self.store, settings)
        self.api_key = api_key
        self.faults = ApiFaults(settings)
        self.offload = offload

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work off the event loop when served; inline when embedded (caller's thread)."""
        if self.offload:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.headers.get("api-key", "")
        if not given or not secrets.compare_digest(given.encode(), self.api_key.encode()):
            raise APIError(401, "Incorrect API key provided. You can find your API key in the local API's settings.",
                           code="invalid_api_key")


def _gate(api: LocalBatchAPI, handler: Handler, azure: bool) -> Handler:
    """Wrap a route: request id, key check (and Azure's api-version), injected API faults, error
    envelope."""

    async def wrapped(request: Request) -> Response:
        request_id = "req_" + secrets.token_hex(16)
        try:
            api.check_key(request)
            if azure and not request.query_params.get("api-version"):
                raise APIError(404, "Resource not found: the api-version query parameter is missing.", code="404")
            fault = api.faults.draw() if api.faults.enabled else None
            if fault == "timeout":
                response = await _stall(api, request)
            elif fault is not None:
                raise api_fault_error(fault)
            else:
                response = await handler(request)
        except APIError as error:
            response = JSONResponse(error.body(), error.status, headers=error.headers)
        except Exception:
            log.exception("local Batch API: unhandled error on %s %s", request.method, request.url.path)
            response = JSONResponse(error_body("The server had an error while processing your request.",
                                               "server_error"), 500)
        response.headers["x-request-id"] = request_id
        return response

    return wrapped


async def _stall(api: LocalBatchAPI, request: Request) -> Response:
    """Hold the call for ``api_timeout_seconds``, or a little past the client's own read timeout."""
    hint = request.headers.get("x-stainless-read-timeout", "")
    client_timeout = float(hint) * 1.1 + 0.1 if hint.replace(".", "", 1).isdigit() else math.inf
    await anyio.sleep(min(api.settings.api_timeout_seconds, client_timeout))
    return JSONResponse(error_body("Request timed out.", "timeout_error"), 408, headers={STALL_HEADER: "1"})


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid '{name}': expected an integer, but got '{raw}' instead.", name,
                          "invalid_type") from None
    if value < 1:
        raise bad_request(f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got"
                          f" {value} instead.", name, "integer_below_min_value")
    if value > maximum:
        raise bad_request(f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, but got"
                          f" {value} instead.", name, "integer_above_max_value")
    return value


def _page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more and bool(data)}


def _expiry_seconds(value: Any, param: str, least: int = MIN_EXPIRY) -> int:
    """Validate an ``{anchor: created_at, seconds: N}`` object (N within 1 h, or ``least``, .. 30 d)."""
    if not isinstance(value, dict):
        raise bad_request(f"Invalid '{param}': expected an object.", param, "invalid_type")
    if value.get("anchor") != "created_at":
        raise bad_request(f"Invalid '{param}.anchor': expected 'created_at'.", f"{param}.anchor", "invalid_value")
    seconds = value.get("seconds")
    if isinstance(seconds, str) and seconds.isdigit():
        seconds = int(seconds)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not least <= seconds <= MAX_EXPIRY:
        raise bad_request(f"Invalid '{param}.seconds': expected an integer between {least} and {MAX_EXPIRY}.",
                          f"{param}.seconds", "invalid_value")
    return seconds


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise bad_request("Invalid type for 'metadata': expected an object.", "metadata", "invalid_type")
    if len(metadata) > 16:
        raise bad_request(f"Invalid 'metadata': too many properties. Expected an object with at most 16 properties,"
                          f" but got an object with {len(metadata)} properties instead.", "metadata",
                          "object_above_max_properties")
    for key, value in metadata.items():
        if len(key) > 64:
            raise bad_request(f"Invalid 'metadata': key '{key[:64]}...' is longer than 64 characters.",
                              f"metadata.{key}", "invalid_value")
        if not isinstance(value, str):
            kind = {list: "an array", dict: "an object", bool: "a boolean", int: "an integer", float: "a number",
                    type(None): "null"}.get(type(value), "another type")
            raise bad_request(f"Invalid type for 'metadata.{key}': expected a string, but got {kind} instead.",
                              f"metadata.{key}", "invalid_type")
        if len(value) > 512:
            raise bad_request(f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length"
                              f" 512, but got a string with length {len(value)} instead.", f"metadata.{key}",
                              "string_above_max_length")
    return metadata


def _routes(api: LocalBatchAPI, azure: bool = False) -> list[Route]:
    """Every endpoint behind ``_gate``; ``build_app`` mounts the list under ``/v1`` and bare, and
    the Azure list under ``/openai``."""
    table = [*_file_routes(api, azure), *_batch_routes(api, azure)]
    return [Route(path, _gate(api, handler, azure), methods=methods) for path, handler, methods in table]


def _file_routes(api: LocalBatchAPI, azure: bool) -> RouteTable:
    store, settings = api.store, api.settings

    async def create_file(request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > settings.max_upload_bytes + 65536:
            raise _too_large()
        async with request.form(max_part_size=1 << 20) as form:
            await anyio.sleep(settings.upload_seconds)
            upload, purpose = _upload_fields(form)
            created_at = int(time.time())
            expires_at = _upload_expires_at(form, purpose, created_at, AZURE_MIN_EXPIRY if azure else MIN_EXPIRY)
            row = await api.run(lambda: store.save_upload(
                upload.file, filename=upload.filename or "upload", purpose=purpose, expires_at=expires_at,
                created_at=created_at, max_bytes=settings.max_upload_bytes))
        if row is None:
            raise _too_large()
        return JSONResponse(file_object(row))

    async def list_files(request: Request) -> Response:
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request(f"Invalid value for 'order': '{order}'. Supported values are: 'asc' and 'desc'.",
                              "order", "invalid_value")
        limit = _int_param(request, "limit", 10_000, 10_000)
        rows, has_more = await api.run(lambda: store.list_files(
            after=request.query_params.get("after"), limit=limit, order=order,
            purpose=request.query_params.get("purpose")))
        return JSONResponse(_page([file_object(r) for r in rows], has_more))

    async def retrieve_file(request: Request) -> Response:
        return JSONResponse(file_object(await api.run(store.get_file, request.path_params["file_id"])))

    async def delete_file(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        await api.run(store.delete_file, file_id)
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    async def file_content(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        await api.run(store.get_file, file_id)
        path = store.file_path(file_id)
        try:
            # Stat here (inline when embedded): FileResponse would otherwise stat in an anyio
            # worker thread, and with the embedded transport's pathsend no thread is needed at all.
            stat_result = await api.run(os.stat, path)
        except FileNotFoundError:
            raise not_found(f"No such File object: {file_id}") from None
        return ContentResponse(path, media_type="application/octet-stream", stat_result=stat_result)

    return [
        ("/files", create_file, ["POST"]),
        ("/files", list_files, ["GET"]),
        ("/files/{file_id}", retrieve_file, ["GET"]),
        ("/files/{file_id}", delete_file, ["DELETE"]),
        ("/files/{file_id}/content", file_content, ["GET"]),
    ]


def _upload_fields(form: FormData) -> tuple[UploadFile, str]:
    """The uploaded file and its purpose, checked in the order OpenAI reports them.

    A batch input must be a ``.jsonl`` file: another extension gets OpenAI's 400 (its message,
    null param and code). Content sent with no name (the SDKs name raw bytes ``upload``, as
    clients such as openai-batch send their input) names no type and is accepted.
    """
    purpose = form.get("purpose")
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise bad_request("Missing required parameter: 'file'.", "file", "missing_required_parameter")
    if not isinstance(purpose, str) or not purpose:
        raise bad_request("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
    if purpose not in UPLOAD_PURPOSES:
        raise bad_request(f"Invalid value for 'purpose': '{purpose}'. Supported values are: "
                          + ", ".join(f"'{p}'" for p in sorted(UPLOAD_PURPOSES)) + ".", "purpose",
                          "invalid_value")
    if purpose == "batch" and upload.filename != NAMELESS and not (upload.filename or "").lower().endswith(".jsonl"):
        raise bad_request("Invalid file format for Batch API. Must be .jsonl")
    return upload, purpose


def _upload_expires_at(form: FormData, purpose: str, created_at: int, least: int) -> int | None:
    """``expires_after`` in either form encoding the SDKs send (at least ``least`` seconds);
    batch files default to 30 days."""
    anchor = form.get("expires_after[anchor]", form.get("expires_after.anchor"))
    seconds = form.get("expires_after[seconds]", form.get("expires_after.seconds"))
    if anchor is not None or seconds is not None:
        return created_at + _expiry_seconds({"anchor": anchor, "seconds": seconds}, "expires_after", least)
    return created_at + BATCH_FILE_TTL if purpose == "batch" else None


def _batch_routes(api: LocalBatchAPI, azure: bool) -> RouteTable:
    store, lifecycle = api.store, api.lifecycle
    shown = _azure_legacy_forms if azure and api.settings.azure_legacy_forms else _as_stored

    async def create_batch(request: Request) -> Response:
        params = _batch_params(await request.body(), azure)
        doc = await api.run(_insert_batch, api, params, azure)
        return JSONResponse(shown(doc))

    async def list_batches(request: Request) -> Response:
        limit = _int_param(request, "limit", 20, 100)
        await api.run(lifecycle.advance)
        rows, has_more = await api.run(lambda: store.list_batches(after=request.query_params.get("after"),
                                                                  limit=limit))
        return JSONResponse(_page([shown(row) for row in rows], has_more))

    async def retrieve_batch(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        await api.run(store.get_batch, batch_id)
        await api.run(lifecycle.advance, [batch_id])
        return JSONResponse(shown((await api.run(store.get_batch, batch_id)).doc))

    async def cancel_batch(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        doc = await api.run(lifecycle.cancel, batch_id)
        return JSONResponse(shown(doc))

    return [
        ("/batches", create_batch, ["POST"]),
        ("/batches", list_batches, ["GET"]),
        ("/batches/{batch_id}", retrieve_batch, ["GET"]),
        ("/batches/{batch_id}/cancel", cancel_batch, ["POST"]),
    ]


def _as_stored(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


def _azure_legacy_forms(doc: dict[str, Any]) -> dict[str, Any]:
    """A batch as Azure's older REST samples show one (docs/provider-port.md): a capitalised status
    (``InProgress``) and ISO-8601 timestamps; the stored document keeps OpenAI's forms."""
    shown = dict(doc, status="".join(word.capitalize() for word in doc["status"].split("_")))
    for name in BATCH_TIMESTAMPS:
        if isinstance(doc.get(name), int):
            shown[name] = datetime.fromtimestamp(doc[name], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return shown


@dataclass(frozen=True)
class _BatchParams:
    input_file_id: str
    endpoint: str  # as given: Azure's form on Azure routes (``/chat/completions``)
    metadata: dict[str, str] | None
    output_ttl: int | None
    idempotency_key: str | None = None  # an extension (llama-stack's), not an OpenAI parameter


def _batch_params(raw: bytes, azure: bool) -> _BatchParams:
    """Input file id, endpoint, metadata and output TTL of a create-batch body.

    Only the request itself is checked here; the input file's lines are checked later, in
    ``validating``, as OpenAI does. On Azure the endpoint may be written without ``/v1``.
    An optional ``idempotency_key`` (a string) makes the create repeatable, see ``_insert_batch``.
    """
    try:
        params = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise bad_request("We could not parse the JSON body of your request.") from None
    if not isinstance(params, dict):
        raise bad_request("We could not parse the JSON body of your request.")
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(params.get(name), str) or not params[name]:
            raise bad_request(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
    endpoint = params["endpoint"]
    if (openai_path(endpoint) if azure else endpoint) not in ENDPOINTS:
        raise bad_request(f"Invalid value: '{endpoint}'. Supported values are: {supported_values(ENDPOINTS)}.",
                          "endpoint", "invalid_value")
    if params["completion_window"] != "24h":
        raise bad_request(f"Invalid value: '{params['completion_window']}'. Supported values are: '24h'.",
                          "completion_window", "invalid_value")
    metadata = _check_metadata(params.get("metadata"))
    output_ttl = None
    if params.get("output_expires_after") is not None:
        output_ttl = _expiry_seconds(params["output_expires_after"], "output_expires_after",
                                     AZURE_MIN_EXPIRY if azure else MIN_EXPIRY)
    key = params.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key):
        raise bad_request("Invalid type for 'idempotency_key': expected a non-empty string.", "idempotency_key",
                          "invalid_type")
    return _BatchParams(params["input_file_id"], endpoint, metadata, output_ttl, key)


def _too_large() -> APIError:
    return bad_request("File is too large.", "file", "file_too_large")


def _insert_batch(api: LocalBatchAPI, params: _BatchParams, azure: bool) -> dict[str, Any]:
    """Accept the batch in ``validating``; input problems surface later as a failed batch.

    With an idempotency key, a repeated create returns the batch the key first created.
    """
    input_file_id, no_file = params.input_file_id, "" if azure else None  # Azure writes "" for no file
    input_sha256 = ""
    try:
        file = api.store.get_file(input_file_id)
    except APIError:
        file = None
    if file is not None:
        if file["purpose"] != "batch":
            raise bad_request(f"Invalid input file '{input_file_id}': the file must be uploaded with purpose"
                              " 'batch'.", "input_file_id", "invalid_value")
        input_sha256 = file["sha256"]
    now = time.time()
    created_at = int(now)
    batch_id = new_batch_id(params.idempotency_key)
    doc = {
        "id": batch_id, "object": "batch", "endpoint": params.endpoint,
        "model": None, "errors": None, "input_file_id": input_file_id, "completion_window": "24h",
        "status": "validating", "output_file_id": no_file, "error_file_id": no_file, "created_at": created_at,
        "in_progress_at": None,
        "expires_at": created_at + math.ceil(api.settings.completion_window_seconds), "finalizing_at": None,
        "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0}, "usage": empty_usage(),
        "metadata": params.metadata,
    }
    quota = _fail_fast_quota(api, input_file_id, params.endpoint) if azure and file is not None else None
    try:
        inserted = api.store.insert_batch(doc, due_at=now + api.settings.pace_seconds,
                                          expires_ts=now + api.settings.completion_window_seconds,
                                          input_sha256=input_sha256, output_ttl=params.output_ttl,
                                          endpoint=openai_path(params.endpoint), flavour=AZURE if azure else OPENAI,
                                          quota=quota)
    except OverQuota as over:
        raise bad_request(f"The number of enqueued tokens has surpassed the configured limit of {over.quota.limit:,}"
                          f" for the deployment '{over.quota.model}'. Please try again once some in_progress batches"
                          " have been completed.", None, "token_limit_exceeded") from None
    return doc if inserted else _replayed_batch(api.store.get_batch(batch_id), params)


def _replayed_batch(row: BatchRow, params: _BatchParams) -> dict[str, Any]:
    """The batch an idempotency key created, if this create repeats it; 409 if it differs."""
    first = (row.doc["input_file_id"], row.doc["endpoint"], row.doc["metadata"], row.output_ttl)
    if first != (params.input_file_id, params.endpoint, params.metadata, params.output_ttl):
        raise APIError(409, f"Conflict: the idempotency key '{params.idempotency_key}' was already used with"
                       " different parameters. Use a new key, or repeat the original parameters.",
                       param="idempotency_key", headers={"x-should-retry": "false"})
    return row.doc


def _fail_fast_quota(api: LocalBatchAPI, input_file_id: str, endpoint: str) -> Quota | None:
    """With ``azure_quota_fail_fast``, a valid input file's tokens, checked against its
    deployment's enqueued-token limit when the batch is created (Azure in some regions:
    docs/provider-port.md, "Azure OpenAI's differences"); None when the check does not apply and
    validation decides later, as on OpenAI."""
    settings = api.settings
    if not settings.azure_quota_fail_fast:
        return None
    found = validate_input(api.store.file_path(input_file_id), openai_path(endpoint), settings,
                           api.lifecycle.served_models(), azure=True)
    limit = settings.token_limit_for(found.model or "")
    if found.errors or found.model is None or limit is None:
        return None
    return Quota(found.model, found.prompt_tokens, limit)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = (f"Invalid URL ({request.method} {request.url.path})" if status in (404, 405)
               else "The server had an error while processing your request.")
    return JSONResponse(error_body(message, "invalid_request_error" if status < 500 else "server_error"), status,
                        headers={"x-request-id": "req_" + secrets.token_hex(16)})


def _background_advancer(api: LocalBatchAPI) -> Callable[[Starlette], Any]:
    """Lifespan for a served app: a thread advances batches so they progress without polls."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        interval = min(0.1, max(0.01, api.settings.pace_seconds / 10))

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    api.lifecycle.advance()
                except Exception:
                    log.exception("local Batch API: background advance failed")

        thread = threading.Thread(target=loop, name="local-batch-api-advancer", daemon=True)
        thread.start()
        webhooks = _webhook_sender(api, interval)
        try:
            yield
        finally:
            stop.set()
            if webhooks is not None:
                webhooks.set()
            await asyncio.to_thread(thread.join)

    return lifespan


def _webhook_sender(api: LocalBatchAPI, interval: float) -> threading.Event | None:
    """With a webhook URL, the thread that delivers batch events (webhook_sender.py); its stop event."""
    if not api.settings.webhook_url:
        return None
    from batch_pipeline.local_api.webhook_sender import start_sender

    return start_sender(api.store, api.settings, interval)


def build_app(data_dir: str | Path, *, api_key: str | None, settings: LocalAPISettings, offload: bool) -> Starlette:
    # Imported here: the Anthropic routes and Gemini's dispatch build on this module.
    from batch_pipeline.local_api.anthropic_routes import anthropic_routes
    from batch_pipeline.local_api.gemini_routes import GeminiDispatch

    api = LocalBatchAPI(data_dir, api_key, settings, offload)
    routes = _routes(api)
    app = Starlette(
        routes=[*anthropic_routes(api), Mount("/v1", routes=routes), Mount("/openai", routes=_routes(api, azure=True)),
                *routes],
        middleware=[Middleware(GeminiDispatch, api=api)],  # Gemini's requests, by protocol and under /gemini
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
        lifespan=_background_advancer(api),
    )
    app.state.local_api = api
    return app


def create_app(data_dir: str | Path, *, api_key: str | None = None,
               settings: LocalAPISettings | None = None) -> Starlette:
    """The local Batch API as an ASGI app, mounted under ``/v1`` (and at the bare prefix)."""
    return build_app(data_dir, api_key=api_key, settings=settings or LocalAPISettings(), offload=True)
