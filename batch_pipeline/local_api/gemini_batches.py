"""Gemini batch jobs on the shared engine: create, render as an Operation, list, cancel, delete.

A Gemini batch is an internal batch of the engine (flavour ``gemini``, id ``batch_<gemini id>``)
over a translated input file, one chat-completions (or embeddings) line per Gemini request, its
``custom_id`` the request's position. The engine paces, faults, expires and cancels it as any
batch; when it ends, its output and error files are rendered once into Gemini's output (inline
responses, or a responses file for file input) and kept in ``gemini_batches.output``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batch_pipeline.local_api.errors import APIError, error_body
from batch_pipeline.local_api.gemini_store import GeminiStore, new_gemini_id, valid_id
from batch_pipeline.local_api.gemini_translate import (
    CHAT,
    EMBEDDINGS,
    InvalidRequest,
    chat_body,
    embed_response,
    embedding_body,
    error_message,
    field,
    generate_response,
    status,
)
from batch_pipeline.local_api.lifecycle import empty_usage
from batch_pipeline.local_api.store import GEMINI, GEMINI_PURPOSE, TERMINAL_STATUSES, BatchRow

if TYPE_CHECKING:
    from batch_pipeline.local_api.app import LocalBatchAPI

TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1main."
STATES = {"validating": "BATCH_STATE_PENDING", "in_progress": "BATCH_STATE_RUNNING",
          "finalizing": "BATCH_STATE_RUNNING", "cancelling": "BATCH_STATE_RUNNING",
          "completed": "BATCH_STATE_SUCCEEDED", "failed": "BATCH_STATE_FAILED",
          "cancelled": "BATCH_STATE_CANCELLED", "expired": "BATCH_STATE_EXPIRED"}
FILE_TTL = 48 * 3600  # Gemini keeps files 48 hours
# Gemini expires a batch pending or running for more than 48 hours: twice the 24-hour window of
# OpenAI and Anthropic, so the one `completion_window_seconds` setting scales all three.
WINDOW_FACTOR = 2


class GeminiError(Exception):
    """An error answered in Google's shape ``{"error": {code, message, status, details}}``; the status
    name is the HTTP status's canonical one unless given (400 is also FAILED_PRECONDITION)."""

    def __init__(self, http_status: int, message: str, details: list[dict[str, Any]] | None = None,
                 status: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.details = details or []
        self.status = status


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def not_found(what: str) -> GeminiError:
    return GeminiError(404, f"{what} not found.")


class GeminiBatches:
    """The batch jobs of the Gemini routes, over the app's store and lifecycle."""

    def __init__(self, api: LocalBatchAPI, gemini: GeminiStore) -> None:
        self.api = api
        self.gemini = gemini

    # -- create --------------------------------------------------------------------------

    def create(self, model: str, body: Any, embed: bool) -> dict[str, Any]:
        """Accept a batch (PENDING) over its translated requests; 404 for a model not served."""
        models = self.api.settings.gemini_models
        if "*" not in models and model not in models:
            method = "asyncBatchEmbedContent" if embed else "batchGenerateContent"
            raise GeminiError(404, f"models/{model} is not found for API version v1beta, or is not supported for"
                              f" {method}. Call ListModels to see the list of available models and their"
                              " supported methods.")
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict) or not isinstance(field(batch, "inputConfig"), dict):
            raise GeminiError(400, "Invalid JSON payload: 'batch.inputConfig' is required.")
        input_config = field(batch, "inputConfig")
        try:
            lines, echo, kind = self._lines(model, input_config, embed)
        except InvalidRequest as invalid:
            raise GeminiError(400, str(invalid)) from None
        batch_id = new_gemini_id(32)
        now = time.time()
        doc = {"model": f"models/{model}", "displayName": field(batch, "displayName") or "", "createTime": now,
               "kind": kind, "embed": embed, "total": len(lines),
               "inputConfig": {"fileName": input_config[k]} if (k := _file_key(input_config)) else None}
        engine_doc = self._insert_internal(batch_id, b"".join(lines), EMBEDDINGS if embed else CHAT, now)
        self.gemini.insert_batch(batch_id, doc, echo)
        # Answered as created (PENDING), even if the served API's advancing thread has moved it on.
        row = dataclasses.replace(self.api.store.get_batch("batch_" + batch_id), status="validating", doc=engine_doc)
        return _operation(batch_id, doc, row, None)

    def _lines(self, model: str, input_config: dict[str, Any], embed: bool) -> tuple[list[bytes], list[Any], str]:
        """The engine's request lines, what each request echoes (metadata or key), and the input kind.

        A request that is not valid does not fail the batch: its line carries its 400 as a
        ``preset_reply`` (the lifecycle's hook) and it ends with an INVALID_ARGUMENT status, the
        other requests run (docs/local-api-gemini.md)."""
        translate = embedding_body if embed else chat_body
        url = EMBEDDINGS if embed else CHAT
        key = _file_key(input_config)
        if key is not None:
            items = list(self._file_items(input_config[key]))
            kind = "file"
        else:
            requests = input_config.get("requests")
            inline = requests.get("requests") if isinstance(requests, dict) else None
            if not isinstance(inline, list) or not inline:
                raise InvalidRequest("Invalid value at 'batch.input_config': give requests or a file_name.")
            items = inline
            kind = "inline"
        lines, echo = [], []
        for index, item in enumerate(items):
            where = f"batch.input_config.requests.requests[{index}]" if kind == "inline" else f"line {index + 1}"
            line: dict[str, Any] = {"custom_id": f"r{index}", "method": "POST", "url": url}
            try:
                if isinstance(item, InvalidRequest):
                    raise item
                if not isinstance(item, dict):
                    raise InvalidRequest(f"Invalid value at '{where}': expected an object.")
                line["body"] = translate(model, item.get("request"), f"{where}.request")
            except InvalidRequest as invalid:
                line["body"] = _placeholder(model, embed)
                line["preset_reply"] = [400, error_body(str(invalid), "invalid_request_error")]
            lines.append(orjson.dumps(line) + b"\n")
            source = item if isinstance(item, dict) else {}
            echo.append(source.get("key") if kind == "file" else source.get("metadata"))
        return lines, echo, kind

    def _file_items(self, name: Any) -> Iterator[Any]:
        """The JSON lines of an uploaded input file ``files/ID``; a line that is not JSON is its
        ``InvalidRequest`` (that request fails, not the batch)."""
        if not isinstance(name, str) or not name.startswith("files/"):
            raise InvalidRequest(f"Invalid value at 'batch.input_config.file_name': '{name}'.")
        path = self.file_path(name.removeprefix("files/"))
        with open(path, "rb") as source:
            for number, raw in enumerate(source, 1):
                if raw.strip():
                    try:
                        yield orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        yield InvalidRequest(f"Invalid JSON on line {number} of {name}.")

    def _insert_internal(self, batch_id: str, data: bytes, endpoint: str, now: float) -> dict[str, Any]:
        """The engine's batch over the translated lines, in ``validating`` as any new batch; returns
        its document."""
        store, settings = self.api.store, self.api.settings
        # No size limit here: Gemini's own (inline body, uploaded file) were applied before.
        file = store.save_upload(io.BytesIO(data), filename=f"{batch_id}-input.jsonl", purpose=GEMINI_PURPOSE,
                                 expires_at=None, created_at=int(now), max_bytes=1 << 62)
        assert file is not None  # no size limit was given
        created, window = int(now), settings.completion_window_seconds * WINDOW_FACTOR
        doc = {"id": "batch_" + batch_id, "object": "batch", "endpoint": endpoint, "model": None, "errors": None,
               "input_file_id": file["id"], "completion_window": "24h", "status": "validating",
               "output_file_id": None, "error_file_id": None, "created_at": created, "in_progress_at": None,
               "expires_at": created + math.ceil(window), "finalizing_at": None,
               "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
               "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
               "usage": empty_usage(), "metadata": None}
        store.insert_batch(doc, due_at=now + settings.pace_seconds, expires_ts=now + window,
                           input_sha256=file["sha256"], output_ttl=None, flavour=GEMINI)
        return doc

    # -- read ----------------------------------------------------------------------------

    def operation(self, batch_id: str) -> dict[str, Any]:
        """The batch as Gemini's ``Operation``, rendering its output first if it has just ended."""
        found = self.gemini.get_batch(batch_id) if valid_id(batch_id) else None
        if found is None:
            raise not_found(f"Batch batches/{batch_id}")
        doc, output = found
        row = self.api.store.get_batch("batch_" + batch_id)
        if row.status in TERMINAL_STATUSES and output is None:
            output = self._render(batch_id, doc, row)
            self.gemini.set_output(batch_id, output)
            output = self.gemini.get_batch(batch_id)[1]  # type: ignore[index]  # the first rendering kept
        return _operation(batch_id, doc, row, output)

    def advance(self, batch_id: str | None = None) -> None:
        """Let the engine do what is due (one batch, or all) before a read, as OpenAI's reads do."""
        self.api.lifecycle.advance(None if batch_id is None else ["batch_" + batch_id])

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        ids, more = self.gemini.list_batches(offset, limit)
        return [self.operation(batch_id) for batch_id in ids], more

    def cancel(self, batch_id: str) -> None:
        self.operation(batch_id)
        try:
            self.api.lifecycle.cancel("batch_" + batch_id)
        except APIError as error:
            raise GeminiError(400, f"Batch batches/{batch_id} is already finished and cannot be cancelled.",
                              status="FAILED_PRECONDITION") from error

    def delete(self, batch_id: str) -> None:
        """Forget the batch; one still running is cancelled first, so the engine stops working on it."""
        self.operation(batch_id)
        row = self.api.store.get_batch("batch_" + batch_id)
        if row.status in ("validating", "in_progress"):
            self.api.lifecycle.cancel(row.id)
        self.gemini.delete_batch(batch_id)

    def file_path(self, file_id: str) -> Path:
        """The bytes of a live Gemini file, or 404."""
        found = self.gemini.get_file(file_id) if valid_id(file_id) else None
        if found is None:
            raise not_found(f"File files/{file_id}")
        try:
            self.api.store.get_file(found[0])
        except APIError:
            raise not_found(f"File files/{file_id}") from None
        return self.api.store.file_path(found[0])

    # -- render --------------------------------------------------------------------------

    def _render(self, batch_id: str, doc: dict[str, Any], row: BatchRow) -> dict[str, Any]:
        """Gemini's output of a batch that has ended: empty unless it succeeded."""
        if row.status != "completed":
            return {}
        results = self._results(doc, row)
        echo = self.gemini.echo(batch_id)
        if doc["kind"] == "file":
            lines = [orjson.dumps(({"key": key} if key is not None else {}) | result) + b"\n"
                     for key, result in zip(echo, results, strict=True)]
            return {"responsesFile": f"files/{self._responses_file(batch_id, b''.join(lines))}"}
        items: list[dict[str, Any]] = [({"metadata": meta} if meta is not None else {}) | result
                 for meta, result in zip(echo, results, strict=True)]
        return {("inlinedEmbedContentResponses" if doc["embed"] else "inlinedResponses"): {"inlinedResponses": items}}

    def _results(self, doc: dict[str, Any], row: BatchRow) -> list[dict[str, Any]]:
        """Per request, in input order: ``{"response": ...}`` or ``{"error": Status}``."""
        model = doc["model"].removeprefix("models/")
        results: list[dict[str, Any]] = [{"error": status(500, "The request did not run.")}] * doc["total"]
        for name in ("output_file_id", "error_file_id"):
            file_id = row.doc.get(name)
            if not file_id:
                continue
            with open(self.api.store.file_path(file_id), "rb") as source:
                for raw in source:
                    line = orjson.loads(raw)
                    index = int(line["custom_id"][1:])
                    reply = line.get("response") or {}
                    code, body = reply.get("status_code", 500), reply.get("body") or {}
                    if 200 <= code < 300:
                        results[index] = {"response": embed_response(body) if doc["embed"]
                                          else generate_response(body, model)}
                    else:
                        results[index] = {"error": status(code, error_message(body))}
        return results

    def _responses_file(self, batch_id: str, data: bytes) -> str:
        """Keep a responses file (a generated, downloadable Gemini file); returns its id."""
        now = int(time.time())
        file_id = f"batch-{batch_id}"[:40]
        saved = self.api.store.save_upload(io.BytesIO(data), filename=f"{file_id}.jsonl", purpose=GEMINI_PURPOSE,
                                           expires_at=now + FILE_TTL, created_at=now, max_bytes=len(data) + 1)
        assert saved is not None  # the limit is its own size
        self.gemini.insert_file(file_id, saved["id"], {"displayName": f"{file_id}.jsonl", "createTime": now,
                                                      "mimeType": "application/jsonl", "source": "GENERATED"})
        return file_id


def _placeholder(model: str, embed: bool) -> dict[str, Any]:
    """A runnable body for a request that ends with its preset error (the engine checks every body)."""
    return {"model": model, "input": "-"} if embed else {"model": model, "messages": [{"role": "user", "content": "-"}]}


def _file_key(input_config: dict[str, Any]) -> str | None:
    return next((k for k in ("fileName", "file_name") if input_config.get(k) is not None), None)


def _operation(batch_id: str, doc: dict[str, Any], row: BatchRow, output: dict[str, Any] | None) -> dict[str, Any]:
    """Gemini's ``Operation`` for a batch: ``metadata`` (what the SDK reads), and ``done`` with a
    ``response`` or ``error`` once over (what REST clients read)."""
    state = STATES[row.status]
    counts = row.doc["request_counts"]
    total = doc["total"]
    done_ok, failed = counts["completed"], counts["failed"]
    stamps = [doc["createTime"], *(v for k, v in row.doc.items() if k.endswith("_at") and k != "expires_at"
                                   and isinstance(v, int))]
    kind = "EmbedContentBatch" if doc["embed"] else "GenerateContentBatch"
    metadata: dict[str, Any] = {
        "@type": TYPE_PREFIX + kind, "model": doc["model"], "displayName": doc["displayName"],
        "name": f"batches/{batch_id}", "createTime": rfc3339(doc["createTime"]), "updateTime": rfc3339(max(stamps)),
        "batchStats": {"requestCount": str(total), "successfulRequestCount": str(done_ok),
                       "failedRequestCount": str(failed), "pendingRequestCount": str(max(0, total - done_ok - failed))},
        "state": state, "priority": "0",
    }
    if doc.get("inputConfig"):
        metadata["inputConfig"] = doc["inputConfig"]
    operation: dict[str, Any] = {"name": f"batches/{batch_id}", "metadata": metadata}
    if row.status in TERMINAL_STATUSES:
        # The engine stamps whole seconds: an end in the second of creation is not before it.
        metadata["endTime"] = rfc3339(max(row.doc.get(f"{row.status}_at") or 0, doc["createTime"]))
        operation["done"] = True
        if output:
            metadata["output"] = output
            operation["response"] = {"@type": TYPE_PREFIX + kind + "Output", **output}
        if row.status == "failed":
            errors = (row.doc.get("errors") or {}).get("data") or [{}]
            operation["error"] = status(400, errors[0].get("message") or "The batch failed.")
    return operation
