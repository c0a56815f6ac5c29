"""Gemini's Batch Mode and Files API routes, and the dispatch that shares ``/v1`` with OpenAI.

Gemini's SDK (API version ``v1``) uses ``/v1/batches`` and ``/v1/files`` as OpenAI's does, so
``GeminiDispatch`` sits in front of the OpenAI routes and sends a request to Gemini's routes
when it carries Gemini's key (``x-goog-api-key`` or ``?key=``), has one of Gemini's ``:verb``
suffixes, or starts with ``/upload/``, ``/download/`` or ``/v1beta/``; everything under
``/gemini`` is Gemini's without guessing. Everything else stays OpenAI's. docs/local-api-gemini.md
lists the routes and what is and is not reproduced.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import anyio
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from batch_pipeline.local_api.app import STALL_HEADER, ContentResponse, JSONResponse, LocalBatchAPI
from batch_pipeline.local_api.errors import APIError
from batch_pipeline.local_api.gemini_batches import GeminiBatches, GeminiError
from batch_pipeline.local_api.gemini_files import GeminiFiles, file_object
from batch_pipeline.local_api.gemini_store import GeminiStore
from batch_pipeline.local_api.gemini_translate import CANONICAL

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
VERSIONS = ("v1", "v1beta")
PREFIX = "/gemini"
_OWN_PREFIXES = ("/upload/", "/download/", "/v1beta/")
_KEY_INVALID = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]


def is_gemini(scope: Scope) -> bool:
    """Whether a request outside ``/gemini`` is Gemini's (see the module docstring)."""
    path: str = scope["path"]
    if path.startswith(_OWN_PREFIXES) or ":" in path.rsplit("/", 1)[-1]:
        return True
    if any(name == b"x-goog-api-key" for name, _ in scope["headers"]):
        return True
    return "key" in parse_qs(scope.get("query_string", b"").decode("latin-1"))


def error_response(http_status: int, message: str, details: list[dict[str, Any]] | None = None,
                   status: str | None = None) -> Response:
    code_status = status or CANONICAL.get(http_status, CANONICAL[500])[1]
    return JSONResponse({"error": {"code": http_status, "message": message, "status": code_status,
                                   "details": details or []}}, http_status)


class GeminiDispatch:
    """ASGI middleware: Gemini's requests to Gemini's routes, every other one to the app behind."""

    def __init__(self, app: ASGIApp, api: LocalBatchAPI) -> None:
        self.app = app
        self.router = Router(routes=gemini_routes(api), default=_unknown_route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == PREFIX or path.startswith(PREFIX + "/"):
            scope = dict(scope, root_path=scope.get("root_path", "") + PREFIX)
        elif not is_gemini(scope):
            await self.app(scope, receive, send)
            return
        try:
            await self.router(scope, receive, send)
        except HTTPException as exc:  # a known path with another method
            await error_response(exc.status_code, f"Method {scope['method']} is not allowed here.")(
                scope, receive, send)


async def _unknown_route(scope: Scope, receive: Receive, send: Send) -> None:
    await error_response(404, f"Method not found: {scope['method']} {scope['path']}.")(scope, receive, send)


class _Gate:
    """Wraps every Gemini route: API version, key check, injected API faults, Google's error shape."""

    def __init__(self, api: LocalBatchAPI) -> None:
        self.api = api

    def __call__(self, handler: Handler, keyless: bool = False) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                if request.path_params.get("v") not in VERSIONS:
                    raise GeminiError(404, f"API version {request.path_params.get('v')} is not served.")
                if not keyless:
                    check_key(self.api, request)
                response = await self._answer(handler, request)
            except GeminiError as error:
                response = error_response(error.http_status, error.message, error.details, error.status)
            except APIError as error:
                response = error_response(error.status, error.message)
            except Exception:
                log.exception("local Batch API (Gemini): unhandled error on %s %s", request.method, request.url.path)
                response = error_response(500, "An internal error has occurred.")
            response.headers["x-request-id"] = secrets.token_hex(8)
            return response

        return wrapped

    async def _answer(self, handler: Handler, request: Request) -> Response:
        fault = self.api.faults.draw() if self.api.faults.enabled else None
        if fault == "timeout":
            await anyio.sleep(self.api.settings.api_timeout_seconds)
            stalled = error_response(504, "Deadline expired before operation could complete.")
            stalled.headers[STALL_HEADER] = "1"  # the embedded transport turns it into a timeout
            return stalled
        if fault == "rate_limit":
            raise GeminiError(429, "Resource has been exhausted (e.g. check quota).")
        if fault == "server_error":
            raise GeminiError(500, "An internal error has occurred. Please retry or report in"
                              " https://developers.generativeai.google/guide/troubleshooting")
        if fault == "overloaded":
            raise GeminiError(503, "The model is overloaded. Please try again later.")
        return await handler(request)


def check_key(api: LocalBatchAPI, request: Request) -> None:
    """Google's answers: no key 403 PERMISSION_DENIED, a wrong one 400 API_KEY_INVALID."""
    expected = api.api_key
    if expected is None:
        return
    given = request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""
    if not given:
        raise GeminiError(403, "Method doesn't allow unregistered callers (callers without established"
                          " identity). Please use API Key or other form of API consumer identity to call this API.")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise GeminiError(400, "API key not valid. Please pass a valid API key.", _KEY_INVALID)


async def _json(request: Request, limit: int | None = None) -> Any:
    """The request's JSON body; over ``limit`` bytes, Google's front end's 400."""
    length = request.headers.get("content-length", "")
    if limit is not None and length.isdigit() and int(length) > limit:
        raise GeminiError(400, f"Request payload size exceeds the limit: {limit} bytes.")
    raw = await request.body()
    if limit is not None and len(raw) > limit:
        raise GeminiError(400, f"Request payload size exceeds the limit: {limit} bytes.")
    try:
        return orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise GeminiError(400, "Invalid JSON payload received.") from None


def _page_params(request: Request, default: int, maximum: int) -> tuple[int, int]:
    """Offset (from ``pageToken``) and page size (``pageSize``), 400 when malformed."""
    size, token = request.query_params.get("pageSize", ""), request.query_params.get("pageToken", "")
    if (size and not size.isdigit()) or (token and not token.isdigit()):
        raise GeminiError(400, "Invalid pageSize or pageToken.")
    return int(token or 0), min(int(size or default) or default, maximum)


def _base(request: Request) -> str:
    """This API's URL prefix for the request's version, e.g. ``http://host:port/gemini/v1beta``."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}/" \
           f"{request.path_params['v']}"


def gemini_routes(api: LocalBatchAPI) -> list[Route]:
    """Every Gemini route behind the gate (``:verb`` routes first: ``{id}`` would take them)."""
    gemini = GeminiStore(api.store)
    batches, files = GeminiBatches(api, gemini), GeminiFiles(api, gemini)
    gate = _Gate(api)
    table = [*_batch_routes(api, batches), *_file_routes(api, batches, files)]
    return [Route(path, gate(handler, keyless=path == "/upload/{v}/files"), methods=methods)
            for path, handler, methods in table]


def _batch_routes(api: LocalBatchAPI, batches: GeminiBatches) -> list[tuple[str, Handler, list[str]]]:
    async def create(request: Request) -> Response:
        body = await _json(request, api.settings.gemini_max_inline_bytes)
        embed = request.url.path.endswith(":asyncBatchEmbedContent")
        return JSONResponse(await api.run(batches.create, request.path_params["model"], body, embed))

    async def get(request: Request) -> Response:
        batch_id = request.path_params["id"]
        await api.run(batches.advance, batch_id)
        return JSONResponse(await api.run(batches.operation, batch_id))

    async def list_batches(request: Request) -> Response:
        offset, size = _page_params(request, 50, 1000)
        await api.run(batches.advance)
        operations, more = await api.run(batches.page, offset, size)
        page: dict[str, Any] = {"operations": operations}
        if more:
            page["nextPageToken"] = str(offset + size)
        return JSONResponse(page)

    async def cancel(request: Request) -> Response:
        await api.run(batches.cancel, request.path_params["id"])
        return JSONResponse({})

    async def delete(request: Request) -> Response:
        await api.run(batches.delete, request.path_params["id"])
        return JSONResponse({})

    return [
        ("/{v}/models/{model}:batchGenerateContent", create, ["POST"]),
        ("/{v}/models/{model}:asyncBatchEmbedContent", create, ["POST"]),
        ("/{v}/batches/{id}:cancel", cancel, ["POST"]),
        ("/{v}/batches", list_batches, ["GET"]),
        ("/{v}/batches/{id}", get, ["GET"]),
        ("/{v}/batches/{id}", delete, ["DELETE"]),
    ]


def _file_routes(api: LocalBatchAPI, batches: GeminiBatches, files: GeminiFiles
                 ) -> list[tuple[str, Handler, list[str]]]:
    async def upload(request: Request) -> Response:
        """The resumable protocol: ``start`` opens a session, then chunks go to its upload URL."""
        command = request.headers.get("x-goog-upload-command", "")
        upload_id = request.query_params.get("upload_id")
        if upload_id is None:
            if command != "start":
                raise GeminiError(400, "Only the resumable upload protocol is served: start with"
                                  " X-Goog-Upload-Command: start.")
            check_key(api, request)
            upload_id = await api.run(files.start_upload, await _json(request),
                                      request.headers.get("x-goog-upload-header-content-length", ""),
                                      request.headers.get("x-goog-upload-header-content-type", ""))
            url = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?upload_id={upload_id}" \
                  "&upload_protocol=resumable"
            return JSONResponse({}, headers={"x-goog-upload-url": url, "x-goog-upload-status": "active"})
        steps = {step.strip() for step in command.split(",")}
        stored = await api.run(files.receive, upload_id, request.headers.get("x-goog-upload-offset", ""),
                               await request.body(), "finalize" in steps)
        if stored is None:
            return Response(b"", headers={"x-goog-upload-status": "active"})
        file_id, doc, row = stored
        return JSONResponse({"file": file_object(file_id, doc, row, _base(request))},
                            headers={"x-goog-upload-status": "final"})

    async def get(request: Request) -> Response:
        return JSONResponse(file_object(*await api.run(files.get, request.path_params["id"]), _base(request)))

    async def list_files(request: Request) -> Response:
        offset, size = _page_params(request, 10, 100)
        found, more = await api.run(files.list, offset, size)
        page: dict[str, Any] = {"files": [file_object(*stored, _base(request)) for stored in found]}
        if more:
            page["nextPageToken"] = str(offset + size)
        return JSONResponse(page)

    async def delete(request: Request) -> Response:
        await api.run(files.delete, request.path_params["id"])
        return JSONResponse({})

    async def download(request: Request) -> Response:
        path = await api.run(batches.file_path, request.path_params["id"])
        return ContentResponse(path, media_type="application/octet-stream")

    return [
        ("/upload/{v}/files", upload, ["POST"]),
        ("/{v}/files/{id}:download", download, ["GET"]),
        ("/download/{v}/files/{id}:download", download, ["GET"]),
        ("/{v}/files", list_files, ["GET"]),
        ("/{v}/files/{id}", get, ["GET"]),
        ("/{v}/files/{id}", delete, ["DELETE"]),
    ]
