"""The batch state machine, advanced by whoever looks next.

There is no scheduler to start: every read of a batch (and, when served, a background
thread) calls :meth:`Lifecycle.advance`, which takes the batch's lease in SQLite without
waiting, does at most ``advance_budget_seconds`` of work, checkpoints and lets go. Any
process on the data dir can continue where another stopped, including after SIGKILL:

* request lines run in input order from a checkpointed input offset, and their result
  lines are appended to per-batch work files whose checkpointed sizes say which bytes
  count (anything after them, from a crash, is truncated before resuming);
* finalization is idempotent: work files become output/error files with ids derived from
  the batch id, then one transaction registers them and marks the batch terminal.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from batch_pipeline.local_api.errors import APIError
from batch_pipeline.local_api.faults import line_fault
from batch_pipeline.local_api.responders import EncodedReply, Reply, respond_fast
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.local_api.store import TERMINAL_STATUSES, BatchRow, Store, derived_file_id
from batch_pipeline.local_api.validation import batch_error, validate_input

# Runs a chunk of request bodies against an endpoint; one reply per body, in order. A reply is
# (status, body dict) or, already serialized, an ``EncodedReply`` (status, body JSON, tokens).
Executor = Callable[[str, list[dict[str, Any]]], list[Reply | EncodedReply]]

# ``orjson.dumps`` of {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": None}
# with the body spliced in as JSON bytes: the same bytes without re-encoding the reply body.
_RESULT_LINE = (b'{"id":"batch_req_%s%08x","custom_id":%s,"response":{"status_code":%d,"request_id":"req_%s%08x",'
                b'"body":%s},"error":null}\n')

DEFAULT_OUTPUT_TTL = 30 * 86400
_NEVER_RAN = {
    "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled."),
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
}


def deterministic_executor(endpoint: str, bodies: list[dict[str, Any]]) -> list[Reply | EncodedReply]:
    return [respond_fast(endpoint, body) for body in bodies]


def _fsync_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _open_at(path: Path, size: int) -> BinaryIO:
    """Open a work file for appending after dropping bytes past the last checkpoint."""
    handle = open(path, "ab")
    handle.truncate(size)
    return handle


class Lifecycle:
    """Moves batches through validating, in_progress, finalizing and a terminal status."""

    def __init__(self, store: Store, settings: LocalAPISettings, executor: Executor = deterministic_executor,
                 chunk_lines: int = 256):
        self.store = store
        self.settings = settings
        self.executor = executor
        self.chunk_lines = chunk_lines

    # -- entry points --------------------------------------------------------------------

    def advance(self, batch_ids: Iterable[str] | None = None) -> None:
        """Do what is due for the given batches (default: every batch with work), within the budget."""
        deadline = time.monotonic() + self.settings.advance_budget_seconds
        ids = self.store.due_batch_ids(time.time()) if batch_ids is None else batch_ids
        for batch_id in ids:
            if time.monotonic() >= deadline:
                return
            self._advance_one(batch_id, deadline)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        row = self.store.get_batch(batch_id)
        if row.status in ("validating", "in_progress"):
            now = time.time()
            row = self.store.request_cancel(batch_id, now, now + self.settings.pace_seconds)
        if row.status in ("completed", "failed", "expired"):
            raise APIError(409, f"Cannot cancel a batch with status '{row.status}'.",
                           headers={"x-should-retry": "false"})
        return row.doc

    # -- stepping ------------------------------------------------------------------------

    def _has_work(self, row: BatchRow, now: float) -> bool:
        if row.status in TERMINAL_STATUSES:
            return False
        if row.status in ("validating", "in_progress") and now >= row.expires_ts:
            return True
        if row.status == "in_progress":
            return row.lines_done >= row.doc["request_counts"]["total"] or self._allowed_lines(row, now) > row.lines_done
        return now >= row.due_at

    def _advance_one(self, batch_id: str, deadline: float) -> None:
        try:
            peek = self.store.get_batch(batch_id)
        except APIError:
            return
        if not self._has_work(peek, time.time()):
            return
        row = self.store.acquire(batch_id)
        if row is None:
            return
        try:
            current: BatchRow | None = row
            while current is not None and time.monotonic() < deadline and self._has_work(current, time.time()):
                current = self._step(current, deadline)
        finally:
            self.store.release(batch_id)

    def _step(self, row: BatchRow, deadline: float) -> BatchRow | None:
        now = time.time()
        if row.status in ("validating", "in_progress") and now >= row.expires_ts:
            return self._close(row, "expired")
        if row.status == "validating":
            return self._validate(row, now)
        if row.status == "in_progress":
            return self._run(row, deadline)
        if row.status == "finalizing":
            return self._close(row, "completed")
        if row.status == "cancelling":
            return self._close(row, "cancelled")
        return None

    def _fail(self, row: BatchRow, errors: list[dict[str, Any]], conn: Any = None) -> BatchRow:
        doc = dict(row.doc, status="failed", failed_at=int(time.time()), errors={"object": "list", "data": errors})
        return self.store.update_batch(row.id, doc, conn)

    def _validate(self, row: BatchRow, now: float) -> BatchRow:
        input_id = row.doc["input_file_id"]
        try:
            self.store.get_file(input_id)
            path = self.store.file_path(input_id)
            if not path.exists():
                raise FileNotFoundError(path)
        except (APIError, FileNotFoundError):
            return self._fail(row, [batch_error(
                "invalid_request", f"Cannot find file {input_id}, or organization does not have access to it.",
                param="file_id")])
        found = validate_input(path, row.endpoint, self.settings)
        if found.errors:
            return self._fail(row, found.errors)
        model = found.model or ""
        limit = self.settings.token_limit_for(model)
        with self.store.transaction() as conn:
            if limit is not None:
                enqueued = self.store.enqueued_tokens(conn, model, row.id)
                if enqueued + found.prompt_tokens > limit:
                    return self._fail(row, [batch_error(
                        "token_limit_exceeded",
                        f"Enqueued token limit reached for {model} in organization org-local. Limit: {limit:,}"
                        f" enqueued tokens. Please try again once some in_progress batches have been completed.")],
                        conn)
            doc = dict(row.doc, status="in_progress", in_progress_at=int(now), model=found.model,
                       request_counts={"total": found.total, "completed": 0, "failed": 0})
            # Stages are scheduled from the previous stage's due time, not from when someone looked,
            # so a client polling every 30 s (a Dagster sensor) sees a batch catch up in one poll.
            return self.store.update_batch(row.id, doc, conn, model=model, enqueued_tokens=found.prompt_tokens,
                                           due_at=min(now, row.due_at) + self.settings.pace_seconds)

    def _allowed_lines(self, row: BatchRow, now: float) -> int:
        """Lines that may have run by ``now``: pace spreads a batch over about one stage."""
        total = row.doc["request_counts"]["total"]
        pace = self.settings.pace_seconds
        if pace <= 0 or now >= row.due_at:
            return total
        started = row.due_at - pace
        return min(total, math.ceil(total * max(0.0, now - started) / pace))

    def _run(self, row: BatchRow, deadline: float) -> BatchRow | None:
        """Run request lines up to what pace allows and the budget permits, then checkpoint."""
        doc = row.doc
        total = doc["request_counts"]["total"]
        allowed = self._allowed_lines(row, time.time())
        counts = dict(doc["request_counts"])
        usage = {**doc["usage"], "input_tokens_details": dict(doc["usage"]["input_tokens_details"]),
                 "output_tokens_details": dict(doc["usage"]["output_tokens_details"])}
        settings = self.settings
        faults_on = settings.line_fault_total() > 0
        prefix = row.id[-24:].encode()
        done, offset = row.lines_done, row.input_offset
        out_size, err_size = row.out_size, row.err_size
        input_tokens = output_tokens = 0  # from encoded replies, added to ``usage`` at the checkpoint
        dumps = orjson.dumps
        out = _open_at(self.store.work_path(row.id, "output.jsonl"), out_size)
        err = _open_at(self.store.work_path(row.id, "error.jsonl"), err_size)
        # The lines make no reference cycles, so reference counting frees them; without this,
        # collections triggered by their churn re-scan every object in the process.
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            with open(self.store.file_path(doc["input_file_id"]), "rb") as source:
                source.seek(offset)
                while done < allowed and time.monotonic() < deadline:
                    want = min(self.chunk_lines, allowed - done)
                    lines: list[dict[str, Any]] = []
                    for raw in source:
                        offset += len(raw)
                        if raw.strip():
                            lines.append(orjson.loads(raw))
                            if len(lines) >= want:
                                break
                    if not lines:
                        break
                    replies: list[Reply | EncodedReply | None] = [None] * len(lines)
                    to_run = list(range(len(lines)))
                    if faults_on:
                        for i, line in enumerate(lines):
                            replies[i] = line_fault(settings, row.input_sha256, line["custom_id"])
                        to_run = [i for i, reply in enumerate(replies) if reply is None]
                    for i, reply in zip(to_run, self.executor(row.endpoint, [lines[i]["body"] for i in to_run])):
                        replies[i] = reply
                    outs: list[bytes] = []
                    errs: list[bytes] = []
                    for line, reply in zip(lines, replies):
                        if len(reply) == 4:  # type: ignore[arg-type]
                            status, payload, prompt, completion = reply  # type: ignore[misc]
                            input_tokens += prompt
                            output_tokens += completion
                        else:
                            status, body = reply  # type: ignore[misc]
                            payload = dumps(body)
                            if 200 <= status < 300:
                                _add_usage(usage, body.get("usage"))
                        encoded = _RESULT_LINE % (prefix, done, dumps(line["custom_id"]), status, prefix, done,
                                                  payload)
                        done += 1
                        if 200 <= status < 300:
                            outs.append(encoded)
                        else:
                            errs.append(encoded)
                    if outs:
                        chunk = b"".join(outs)
                        out.write(chunk)
                        out_size += len(chunk)
                        counts["completed"] += len(outs)
                    if errs:
                        chunk = b"".join(errs)
                        err.write(chunk)
                        err_size += len(chunk)
                        counts["failed"] += len(errs)
        finally:
            if gc_enabled:
                gc.enable()
            _fsync_close(out)
            _fsync_close(err)
        usage["input_tokens"] += input_tokens
        usage["output_tokens"] += output_tokens
        usage["total_tokens"] += input_tokens + output_tokens
        doc = dict(doc, request_counts=counts, usage=usage)
        columns: dict[str, Any] = {}
        if done >= total:
            now = time.time()
            doc.update(status="finalizing", finalizing_at=int(now))
            columns["due_at"] = min(now, row.due_at) + settings.pace_seconds + settings.finalizing_seconds
        return self.store.update_batch(row.id, doc, input_offset=offset, lines_done=done,
                                       out_size=out_size, err_size=err_size, **columns)

    def _close(self, row: BatchRow, final: str) -> BatchRow:
        """Turn work files into output/error files and make the batch terminal (idempotent)."""
        out_path = self.store.work_path(row.id, "output.jsonl")
        err_path = self.store.work_path(row.id, "error.jsonl")
        if not row.files_built:
            _fsync_close(_open_at(out_path, row.out_size))
            err = _open_at(err_path, row.err_size)
            try:
                if final in _NEVER_RAN:
                    self._write_never_ran(row, err, *_NEVER_RAN[final])
            finally:
                _fsync_close(err)
            row = self.store.update_batch(row.id, row.doc, files_built=1)
        now = int(time.time())
        ttl = row.output_ttl or DEFAULT_OUTPUT_TTL
        produced: dict[str, dict[str, Any]] = {}
        for kind, work in (("output", out_path), ("error", err_path)):
            file_id = derived_file_id(row.id, kind)
            target = self.store.files_dir / file_id
            if work.exists():
                if work.stat().st_size:
                    os.replace(work, target)
                else:
                    work.unlink()
            if target.exists():
                produced[kind] = {"id": file_id, "purpose": "batch_output", "bytes": target.stat().st_size,
                                  "filename": f"{row.id}_{kind}.jsonl", "created_at": now,
                                  "expires_at": now + ttl, "sha256": ""}
        doc = dict(row.doc, status=final, output_file_id=produced.get("output", {}).get("id"),
                   error_file_id=produced.get("error", {}).get("id"))
        doc[f"{final}_at"] = now
        if final == "completed" and doc.get("finalizing_at") is None:
            doc["finalizing_at"] = now
        with self.store.transaction() as conn:
            for file_row in produced.values():
                self.store.register_file(conn, file_row)
            row = self.store.update_batch(row.id, doc, conn)
        shutil.rmtree(self.store.work_dir / row.id, ignore_errors=True)
        return row

    def _write_never_ran(self, row: BatchRow, err: BinaryIO, code: str, message: str) -> None:
        """One error line per request that did not run (cancelled or expired)."""
        try:
            source = open(self.store.file_path(row.doc["input_file_id"]), "rb")
        except (OSError, APIError):
            return
        prefix = row.id[-24:]
        number = row.lines_done
        with source:
            source.seek(row.input_offset)
            for raw in source:
                try:
                    custom_id = orjson.loads(raw).get("custom_id")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if not isinstance(custom_id, str):
                    continue
                err.write(orjson.dumps({"id": f"batch_req_{prefix}{number:08x}", "custom_id": custom_id,
                                        "response": None, "error": {"code": code, "message": message}}) + b"\n")
                number += 1


def _add_usage(usage: dict[str, Any], reply_usage: Any) -> None:
    """Add one reply's token usage (chat, completions, responses or embeddings shape)."""
    if not isinstance(reply_usage, dict):
        return
    prompt = reply_usage.get("prompt_tokens", reply_usage.get("input_tokens", 0)) or 0
    completion = reply_usage.get("completion_tokens", reply_usage.get("output_tokens", 0)) or 0
    usage["input_tokens"] += prompt
    usage["output_tokens"] += completion
    usage["total_tokens"] += prompt + completion
    details = reply_usage.get("prompt_tokens_details") or reply_usage.get("input_tokens_details") or {}
    usage["input_tokens_details"]["cached_tokens"] += details.get("cached_tokens", 0) or 0
    out_details = reply_usage.get("completion_tokens_details") or reply_usage.get("output_tokens_details") or {}
    usage["output_tokens_details"]["reasoning_tokens"] += out_details.get("reasoning_tokens", 0) or 0


def empty_usage() -> dict[str, Any]:
    return {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}
