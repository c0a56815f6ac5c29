"""Anthropic's Message Batches API on the local Batch API (``/v1/messages/batches``).

The unmodified ``anthropic.Anthropic`` client works against it with only a base URL (served) or
the embedded HTTP client. A Message Batch is an engine batch run for these routes: its requests
become an internal chat input file (``anthropic_protocol.translate``), the lifecycle runs it with
its pace, faults, cancel, expiry and restart durability, and these routes render Anthropic's
objects at the edge. The ``anthropic_batches`` table maps each ``msgbatch_`` id to its engine
batch and, once it ended, keeps its request counts; its results are rendered once into
``anthropic/<id>.jsonl`` in the data dir. docs/local-api-anthropic.md says what is faithful.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch_pipeline.local_api.anthropic_protocol import (
    CHAT_ENDPOINT,
    RESULT_TYPES,
    EnvelopeError,
    anthropic_error,
    check_envelope,
    processing_status,
    result_line,
    rfc3339,
    translate,
)
from batch_pipeline.local_api.app import (
    STALL_HEADER,
    ContentResponse,
    Handler,
    JSONResponse,
    LocalBatchAPI,
    _stall,
)
from batch_pipeline.local_api.errors import APIError
from batch_pipeline.local_api.lifecycle import empty_usage
from batch_pipeline.local_api.store import (
    ANTHROPIC,
    TERMINAL_STATUSES,
    BatchRow,
    derived_file_id,
    new_batch_id,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS anthropic_batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    batch_id TEXT NOT NULL,
    tools BLOB NOT NULL,
    counts BLOB
);
"""
_ALPHABET = string.ascii_letters + string.digits
_ENDED_AT = ("completed_at", "cancelled_at", "expired_at", "failed_at")
MAX_LIST_LIMIT = 1000
_ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class AnthropicError(Exception):
    """An error answered in Anthropic's shape with an HTTP status."""

    def __init__(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message, self.headers = status, error_type, message, headers or {}


def _invalid(message: str) -> AnthropicError:
    return AnthropicError(400, "invalid_request_error", message)


def _not_found(batch_id: str) -> AnthropicError:
    return AnthropicError(404, "not_found_error", f"No Message Batch found with id '{batch_id}'.")


@dataclass(frozen=True)
class _Entry:
    """A Message Batch: its ``anthropic_batches`` row and its engine batch."""

    id: str
    batch_id: str
    tools: dict[str, str]
    counts: dict[str, int] | None
    row: BatchRow


class MessageBatches:
    """Message Batches on one data dir: create, look up, render, finish, delete."""

    def __init__(self, api: LocalBatchAPI) -> None:
        self.api, self.store, self.settings = api, api.store, api.settings
        self.results_dir = self.store.root / "anthropic"
        self.results_dir.mkdir(exist_ok=True)
        with self.store.connect() as conn:
            conn.executescript(_SCHEMA)

    def served(self) -> frozenset[str] | None:
        models = self.settings.anthropic_served_models
        return None if "*" in models else frozenset(models)

    def create(self, requests: list[dict[str, Any]]) -> _Entry:
        """Store the translated requests as an engine batch, already in_progress (Anthropic starts
        processing at once: there is no validating stage to show)."""
        served, lines, tools = self.served(), [], {}
        for item in requests:
            translated = translate(item["params"], served)
            lines.append(orjson.dumps(translated.line(item["custom_id"])))
            if translated.tool is not None:
                tools[item["custom_id"]] = translated.tool
        message_batch_id = "msgbatch_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
        now = time.time()
        file = self.store.save_upload(io.BytesIO(b"\n".join(lines) + b"\n"), filename=f"{message_batch_id}.jsonl",
                                      purpose="batch", expires_at=None, created_at=int(now), max_bytes=1 << 62)
        assert file is not None  # no size limit was given
        window = self.settings.completion_window_seconds
        doc = {
            "id": new_batch_id(), "object": "batch", "endpoint": CHAT_ENDPOINT, "model": None, "errors": None,
            "input_file_id": file["id"], "completion_window": "24h", "status": "in_progress",
            "output_file_id": None, "error_file_id": None, "created_at": int(now), "in_progress_at": int(now),
            "expires_at": int(now) + math.ceil(window), "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "usage": empty_usage(),
            "metadata": None,
        }
        self.store.insert_batch(doc, due_at=now + self.settings.pace_seconds, expires_ts=now + window,
                                input_sha256=file["sha256"], output_ttl=None, flavour=ANTHROPIC)
        with self.store.transaction() as conn:
            conn.execute("INSERT INTO anthropic_batches (id, batch_id, tools) VALUES (?, ?, ?)",
                         (message_batch_id, doc["id"], orjson.dumps(tools)))
        # Answered as created (in_progress), even if the served API's advancing thread has moved it on.
        entry = self.get(message_batch_id)
        return dataclasses.replace(entry, row=dataclasses.replace(entry.row, status="in_progress", doc=doc))

    def get(self, message_batch_id: str, advance: bool = False) -> _Entry:
        """A Message Batch (after advancing its engine batch, with ``advance``), or 404."""
        with self.store.connect() as conn:
            found = conn.execute("SELECT * FROM anthropic_batches WHERE id = ?", (message_batch_id,)).fetchone()
        if found is None:
            raise _not_found(message_batch_id)
        if advance:
            self.api.lifecycle.advance([found["batch_id"]])
        try:
            row = self.store.get_batch(found["batch_id"])
        except APIError:
            raise _not_found(message_batch_id) from None
        counts = orjson.loads(found["counts"]) if found["counts"] is not None else None
        return _Entry(found["id"], found["batch_id"], orjson.loads(found["tools"]), counts, row)

    def page(self, after: str | None, before: str | None, limit: int) -> tuple[list[_Entry], bool]:
        """Newest first; ``after_id`` pages to older batches, ``before_id`` to newer ones."""
        with self.store.connect() as conn:
            cursor = after or before
            seq = conn.execute("SELECT seq FROM anthropic_batches WHERE id = ?", (cursor,)).fetchone() \
                if cursor else None
            if before and seq is not None:
                ids = [r["id"] for r in conn.execute("SELECT id FROM anthropic_batches WHERE seq > ? ORDER BY seq"
                                                     " LIMIT ?", (seq["seq"], limit + 1))]
                more, ids = len(ids) > limit, ids[:limit][::-1]
            else:
                bound = seq["seq"] if seq is not None else math.inf
                ids = [r["id"] for r in conn.execute("SELECT id FROM anthropic_batches WHERE seq < ? ORDER BY seq"
                                                     " DESC LIMIT ?", (bound, limit + 1))]
                more, ids = len(ids) > limit, ids[:limit]
        return [self.finished(self.get(i)) for i in ids], more

    def finished(self, entry: _Entry) -> _Entry:
        """The entry with its request counts, rendering its results once its engine batch ended."""
        if entry.counts is not None or entry.row.status not in TERMINAL_STATUSES:
            return entry
        counts = dict.fromkeys(RESULT_TYPES, 0)
        target = self.results_path(entry.id)
        partial = target.with_suffix(f".{secrets.token_hex(4)}.part")
        with open(partial, "wb") as out:
            for kind in ("output", "error"):
                source = self.store.files_dir / derived_file_id(entry.batch_id, kind)
                if not source.exists():
                    continue
                with open(source, "rb") as lines:
                    for raw in lines:
                        if raw.strip():
                            result = result_line(orjson.loads(raw), entry.id, entry.tools)
                            counts[result["result"]["type"]] += 1
                            out.write(orjson.dumps(result) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)  # two processes finishing at once write the same bytes
        with self.store.transaction() as conn:
            conn.execute("UPDATE anthropic_batches SET counts = ? WHERE id = ?", (orjson.dumps(counts), entry.id))
        return _Entry(entry.id, entry.batch_id, entry.tools, counts, entry.row)

    def results_path(self, message_batch_id: str) -> Path:
        return self.results_dir / f"{message_batch_id}.jsonl"

    def cancel(self, message_batch_id: str) -> _Entry:
        """Cancel before the end (in_progress -> canceling -> ended); a batch that already ended,
        even while this call ran, is returned as it is."""
        entry = self.get(message_batch_id)
        try:
            self.api.lifecycle.cancel(entry.batch_id)
        except APIError:  # the engine's 409: terminal already
            pass
        return self.get(message_batch_id)

    def delete(self, entry: _Entry) -> None:
        """Forget an ended Message Batch: its row, its results and its engine batch with its files."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM anthropic_batches WHERE id = ?", (entry.id,))
        self.results_path(entry.id).unlink(missing_ok=True)
        self.store.delete_batch(entry.batch_id)


def message_batch(entry: _Entry, origin: str) -> dict[str, Any]:
    """Anthropic's ``MessageBatch`` object for an entry passed through ``finished``: counts move out
    of ``processing`` only once it ended."""
    doc = entry.row.doc
    status = processing_status(entry.row.status)
    ended = status == "ended"
    tallies = entry.counts if ended and entry.counts else dict.fromkeys(RESULT_TYPES, 0)
    ended_at = next((doc[name] for name in _ENDED_AT if doc.get(name)), None) if ended else None
    return {
        "id": entry.id, "type": "message_batch", "processing_status": status,
        "request_counts": {"processing": 0 if ended else doc["request_counts"]["total"], **tallies},
        "ended_at": rfc3339(ended_at), "created_at": rfc3339(doc["created_at"]),
        "expires_at": rfc3339(doc["expires_at"]), "archived_at": None,
        "cancel_initiated_at": rfc3339(doc.get("cancelling_at")),
        "results_url": f"{origin}/v1/messages/batches/{entry.id}/results" if ended else None,
    }


def _origin(request: Request) -> str:
    """Scheme and host the client used, for an absolute ``results_url`` (as the real API gives)."""
    return f"{request.url.scheme}://{request.url.netloc}"


def _check_key(api: LocalBatchAPI, request: Request) -> None:
    """With a server key, ``x-api-key`` (documented) or ``Authorization: Bearer`` (SDK 2.x) must match."""
    if api.api_key is None:
        return
    header = request.headers.get("authorization", "")
    given = request.headers.get("x-api-key") or (header[7:] if header.lower().startswith("bearer ") else "")
    if not given:
        raise AnthropicError(401, "authentication_error", "x-api-key header is required")
    if not secrets.compare_digest(given.encode(), api.api_key.encode()):
        raise AnthropicError(401, "authentication_error", "invalid x-api-key")


def _fault_error(fault: str) -> AnthropicError:
    if fault == "rate_limit":
        return AnthropicError(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate"
                              " limit.", headers={"retry-after": "1"})
    if fault == "overloaded":
        return AnthropicError(529, "overloaded_error", "Overloaded")
    return AnthropicError(500, "api_error", "Internal server error")


def _gate(api: LocalBatchAPI, handler: Handler) -> Handler:
    """Wrap a route as the app's ``_gate`` does, in Anthropic's terms: request id, key check,
    injected API faults (429, 500, stalls), errors in Anthropic's shape. Any ``anthropic-version``
    and ``anthropic-beta`` header is accepted."""

    async def wrapped(request: Request) -> Response:
        request_id = "req_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
        try:
            _check_key(api, request)
            fault = api.faults.draw() if api.faults.enabled else None
            if fault == "timeout":
                response = await _stall(api, request)
            elif fault is not None:
                raise _fault_error(fault)
            else:
                response = await handler(request)
        except AnthropicError as error:
            response = JSONResponse(anthropic_error(error.error_type, error.message, request_id), error.status,
                                    headers=error.headers)
        except Exception:
            log.exception("local Batch API: unhandled error on %s %s", request.method, request.url.path)
            response = JSONResponse(anthropic_error("api_error", "Internal server error", request_id), 500)
        if STALL_HEADER not in response.headers:
            response.headers["request-id"] = request_id
        return response

    return wrapped


async def _create_body(api: LocalBatchAPI, request: Request) -> list[dict[str, Any]]:
    """The create body's requests: 413 over the size limit, 400 for a bad envelope."""
    limit = api.settings.anthropic_max_batch_bytes
    length = request.headers.get("content-length", "")
    too_large = AnthropicError(413, "request_too_large", f"Request exceeds the maximum size of {limit} bytes.")
    if length.isdigit() and int(length) > limit:
        raise too_large
    raw = await request.body()
    if len(raw) > limit:
        raise too_large
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid("The request body is not valid JSON.") from None
    try:
        return check_envelope(body, api.settings.anthropic_max_requests_per_batch)
    except EnvelopeError as error:
        raise _invalid(str(error)) from None


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit") or "20"
    if not raw.lstrip("-").isdigit():
        raise _invalid("limit: Input should be a valid integer")
    value = int(raw)
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise _invalid(f"limit: Input should be between 1 and {MAX_LIST_LIMIT}")
    return value


def anthropic_routes(api: LocalBatchAPI) -> list[Route]:
    """The Message Batches routes, to mount before the OpenAI routes' ``/v1`` mount."""
    batches = MessageBatches(api)

    async def create(request: Request) -> Response:
        requests = await _create_body(api, request)
        entry = await api.run(batches.create, requests)
        return JSONResponse(message_batch(entry, _origin(request)))

    async def retrieve(request: Request) -> Response:
        entry = await api.run(batches.get, request.path_params["batch_id"], True)
        return JSONResponse(message_batch(await api.run(batches.finished, entry), _origin(request)))

    async def listing(request: Request) -> Response:
        after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
        if after and before:
            raise _invalid("Only one of after_id and before_id may be given.")
        limit = _limit(request)
        await api.run(api.lifecycle.advance)
        entries, more = await api.run(batches.page, after, before, limit)
        data = [message_batch(entry, _origin(request)) for entry in entries]
        return JSONResponse({"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None})

    async def cancel(request: Request) -> Response:
        entry = await api.run(batches.cancel, request.path_params["batch_id"])
        return JSONResponse(message_batch(await api.run(batches.finished, entry), _origin(request)))

    async def delete(request: Request) -> Response:
        entry = await api.run(batches.get, request.path_params["batch_id"], True)
        if entry.row.status not in TERMINAL_STATUSES:
            raise _invalid(f"Message Batch {entry.id} cannot be deleted while it is still processing; cancel it"
                           " first.")
        await api.run(batches.delete, entry)
        return JSONResponse({"id": entry.id, "type": "message_batch_deleted"})

    async def results(request: Request) -> Response:
        entry = await api.run(batches.finished, await api.run(batches.get, request.path_params["batch_id"], True))
        if entry.row.status not in TERMINAL_STATUSES:
            raise _invalid(f"Message Batch {entry.id} has not finished processing; results are not available yet.")
        path = batches.results_path(entry.id)
        return ContentResponse(path, media_type="application/binary", stat_result=await api.run(os.stat, path))

    async def not_served(request: Request) -> Response:
        raise AnthropicError(404, "not_found_error", f"Not Found: {request.method} {request.url.path} is not"
                             " served by the local Batch API (only Message Batches are).")

    table: list[tuple[str, Handler, list[str]]] = [
        ("/v1/messages/batches", create, ["POST"]),
        ("/v1/messages/batches", listing, ["GET"]),
        ("/v1/messages/batches/{batch_id}", retrieve, ["GET"]),
        ("/v1/messages/batches/{batch_id}", delete, ["DELETE"]),
        ("/v1/messages/batches/{batch_id}/cancel", cancel, ["POST"]),
        ("/v1/messages/batches/{batch_id}/results", results, ["GET"]),
        # The rest of Anthropic's /v1/messages (the synchronous Messages API, count_tokens, unknown
        # paths) answers Anthropic's 404 rather than OpenAI's.
        ("/v1/messages", not_served, _ANY_METHOD),
        ("/v1/messages/{rest:path}", not_served, _ANY_METHOD),
    ]
    return [Route(path, _gate(api, handler), methods=methods) for path, handler, methods in table]
