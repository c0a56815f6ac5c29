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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from batch_pipeline.local_api.errors import APIError
from batch_pipeline.local_api.faults import line_fault
from batch_pipeline.local_api.prompt_cache import MIN_CACHED_CHARS, PromptCache, with_cached_tokens
from batch_pipeline.local_api.responders import (
    EncodedReply,
    Reply,
    prompt_text,
    prompt_tokens,
    respond_fast,
)
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.local_api.store import (
    AZURE,
    GEMINI,
    TERMINAL_STATUSES,
    BatchRow,
    Store,
    derived_file_id,
)
from batch_pipeline.local_api.validation import batch_error, request_error, validate_input

# The models a batch may name (None: any), asked when a batch is validated.
ServedModels = Callable[[], frozenset[str] | None]
# Runs a chunk of request bodies against an endpoint; one reply per body, in order. A reply is
# (status, body dict) or, already serialized, an ``EncodedReply`` (status, body JSON, tokens).
Executor = Callable[[str, list[dict[str, Any]]], list[Reply | EncodedReply]]

# ``orjson.dumps`` of {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": None}
# with the body spliced in as JSON bytes: the same bytes without re-encoding the reply body.
_RESULT_LINE = (b'{"id":"batch_req_%s%08x","custom_id":%s,"response":{"status_code":%d,"request_id":"req_%s%08x",'
                b'"body":%s},"error":null}\n')

DEFAULT_OUTPUT_TTL = 30 * 86400
_NO_LIMIT = 1 << 62
_UNBOUNDED = {"max_batch_input_bytes": _NO_LIMIT, "max_requests_per_batch": _NO_LIMIT,
              "max_embedding_inputs": _NO_LIMIT}
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


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while lines run.

    The lines make no reference cycles, so reference counting frees them; without this,
    collections triggered by their churn re-scan every object in the process.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _Progress:
    """Where a batch's run stands: the checkpointed columns of its row and its running tallies."""

    offset: int
    done: int
    out_size: int
    err_size: int
    counts: dict[str, int]
    usage: dict[str, Any]

    @classmethod
    def of(cls, row: BatchRow) -> _Progress:
        usage = row.doc["usage"]
        return cls(offset=row.input_offset, done=row.lines_done, out_size=row.out_size, err_size=row.err_size,
                   counts=dict(row.doc["request_counts"]),
                   usage={**usage, "input_tokens_details": dict(usage["input_tokens_details"]),
                          "output_tokens_details": dict(usage["output_tokens_details"])})


def _read_lines(source: BinaryIO, want: int) -> tuple[list[dict[str, Any]], list[int], int]:
    """Up to ``want`` request lines from ``source``, each line's size in bytes, and the bytes read
    (blank lines included)."""
    lines: list[dict[str, Any]] = []
    sizes: list[int] = []
    read = 0
    for raw in source:
        read += len(raw)
        if raw.strip():
            lines.append(orjson.loads(raw))
            sizes.append(len(raw))
            if len(lines) >= want:
                break
    return lines, sizes, read


def _result_lines(prefix: bytes, first: int, lines: list[dict[str, Any]], replies: list[Reply | EncodedReply],
                  usage: dict[str, Any]) -> tuple[list[bytes], list[bytes]]:
    """Encode each line's result line (numbered from ``first``) and add successes' tokens to ``usage``.

    Returns the lines for the output file (2xx) and for the error file. Encoded replies are
    spliced in as they are; the per-line loop keeps to locals because it runs 50,000 times a batch.
    """
    outs: list[bytes] = []
    errs: list[bytes] = []
    input_tokens = output_tokens = 0
    dumps = orjson.dumps
    number = first
    for line, reply in zip(lines, replies, strict=True):
        if len(reply) == 4:
            status, payload, prompt, completion = reply
            input_tokens += prompt
            output_tokens += completion
        else:
            status, body = reply
            payload = dumps(body)
            if 200 <= status < 300:
                _add_usage(usage, body.get("usage"))
        encoded = _RESULT_LINE % (prefix, number, dumps(line["custom_id"]), status, prefix, number, payload)
        number += 1
        if 200 <= status < 300:
            outs.append(encoded)
        else:
            errs.append(encoded)
    usage["input_tokens"] += input_tokens
    usage["output_tokens"] += output_tokens
    usage["total_tokens"] += input_tokens + output_tokens
    return outs, errs


def _append(handle: BinaryIO, lines: list[bytes]) -> int:
    """Write ``lines`` in one call; returns the bytes written."""
    if not lines:
        return 0
    chunk = b"".join(lines)
    handle.write(chunk)
    return len(chunk)


class Lifecycle:
    """Moves batches through validating, in_progress, finalizing and a terminal status."""

    def __init__(self, store: Store, settings: LocalAPISettings, executor: Executor = deterministic_executor,
                 chunk_lines: int = 256, served_models: ServedModels | None = None, prompt_cache: bool = True):
        self.store = store
        self.settings = settings
        self.executor = executor
        self.chunk_lines = chunk_lines
        self.served_models = served_models or settings.served_model_set
        self.prompt_cache = prompt_cache  # off when an upstream server reports its own cached tokens
        self._caches: dict[str, PromptCache] = {}  # by batch id, as of its last line run here

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
            all_ran = row.lines_done >= row.doc["request_counts"]["total"]
            return all_ran or self._allowed_lines(row, now) > row.lines_done
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
        # A Gemini batch's model and size were checked against Gemini's models and limits when it was
        # created; OpenAI's limits do not apply to its translated lines.
        served = None if row.flavour == GEMINI else self.served_models()
        settings = self.settings.model_copy(update=_UNBOUNDED) if row.flavour == GEMINI else self.settings
        found = validate_input(path, row.endpoint, settings, served, azure=row.flavour == AZURE)
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

    def _run(self, row: BatchRow, deadline: float) -> BatchRow:
        """Run request lines up to what pace allows and the budget permits, then checkpoint."""
        progress = _Progress.of(row)
        allowed = self._allowed_lines(row, time.time())
        prefix = row.id[-24:].encode()
        out = _open_at(self.store.work_path(row.id, "output.jsonl"), progress.out_size)
        err = _open_at(self.store.work_path(row.id, "error.jsonl"), progress.err_size)
        try:
            with _gc_paused(), open(self.store.file_path(row.doc["input_file_id"]), "rb") as source:
                source.seek(progress.offset)
                while progress.done < allowed and time.monotonic() < deadline:
                    lines, sizes, read = _read_lines(source, min(self.chunk_lines, allowed - progress.done))
                    progress.offset += read
                    if not lines:
                        break
                    replies = self._replies(row, lines)
                    if self.prompt_cache:
                        replies = self._cached(row, progress, lines, sizes, replies)
                    outs, errs = _result_lines(prefix, progress.done, lines, replies, progress.usage)
                    progress.done += len(lines)
                    progress.out_size += _append(out, outs)
                    progress.err_size += _append(err, errs)
                    progress.counts["completed"] += len(outs)
                    progress.counts["failed"] += len(errs)
        finally:
            _fsync_close(out)
            _fsync_close(err)
        return self._checkpoint(row, progress)

    def _replies(self, row: BatchRow, lines: list[dict[str, Any]]) -> list[Reply | EncodedReply]:
        """One reply per line: the reply decided when the batch was created (``preset_reply``), an
        injected fault where one is drawn, the 400 the endpoint would answer an invalid body with,
        else the executor's answer."""
        endpoint, bodies = row.endpoint, self._bodies(row, lines)
        if self.settings.line_fault_total() > 0:
            early = [preset_reply(line) or line_fault(self.settings, row.input_sha256, line["custom_id"])
                     or request_error(endpoint, body) for line, body in zip(lines, bodies, strict=True)]
        else:
            early = [preset_reply(line) or request_error(endpoint, body)
                     for line, body in zip(lines, bodies, strict=True)]
        if not any(early):
            return self.executor(endpoint, bodies)
        to_run = [body for body, reply in zip(bodies, early, strict=True) if reply is None]
        answers = iter(self.executor(endpoint, to_run) if to_run else [])
        return [next(answers) if reply is None else reply for reply in early]

    def _cached(self, row: BatchRow, progress: _Progress, lines: list[dict[str, Any]], sizes: list[int],
                replies: list[Reply | EncodedReply]) -> list[Reply | EncodedReply]:
        """The replies with the prompt tokens earlier lines of the batch cached (`prompt_cache.py`).

        A serialized reply's cached tokens are added to the batch's usage here; a dict reply's are
        added with the rest of its usage (`_add_usage`).
        """
        cache, endpoint = self._cache_at(row, progress.done), row.endpoint
        details = progress.usage["input_tokens_details"]
        out: list[Reply | EncodedReply] = []
        for line, size, reply in zip(lines, sizes, replies, strict=True):
            cached = cache.send(*_cacheable(endpoint, line["body"], size))
            out.append(with_cached_tokens(reply, cached))
            if cached and len(reply) == 4 and 200 <= reply[0] < 300:
                details["cached_tokens"] += cached
        return out

    def _cache_at(self, row: BatchRow, done: int) -> PromptCache:
        """The batch's prompt cache after its first `done` lines: kept from the last chunk this
        process ran, else rebuilt from the input file (another process ran them, or a restart)."""
        cache = self._caches.get(row.id)
        if cache is None or cache.lines != done:
            cache = PromptCache()
            with open(self.store.file_path(row.doc["input_file_id"]), "rb") as source:
                for raw in source:
                    if cache.lines >= done:
                        break
                    if raw.strip():
                        cache.send(*_cacheable(row.endpoint, orjson.loads(raw)["body"], len(raw)))
            self._caches[row.id] = cache
        return cache

    def _bodies(self, row: BatchRow, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The request bodies to run; on Azure each names a deployment, run as its model (so the
        answers name the model, as Azure's do)."""
        bodies = [line["body"] for line in lines]
        if row.flavour != AZURE:
            return bodies
        model = self.settings.azure_model
        return [dict(body, model=model(body["model"])) if isinstance(body.get("model"), str) else body
                for body in bodies]

    def _checkpoint(self, row: BatchRow, progress: _Progress) -> BatchRow:
        """Save the run's position and tallies; once every line has run, schedule finalizing."""
        doc = dict(row.doc, request_counts=progress.counts, usage=progress.usage)
        columns: dict[str, Any] = {}
        if progress.done >= row.doc["request_counts"]["total"]:
            now = time.time()
            doc.update(status="finalizing", finalizing_at=int(now))
            columns["due_at"] = min(now, row.due_at) + self.settings.pace_seconds + self.settings.finalizing_seconds
        return self.store.update_batch(row.id, doc, input_offset=progress.offset, lines_done=progress.done,
                                       out_size=progress.out_size, err_size=progress.err_size, **columns)

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
            keep_empty = kind == "error" and row.flavour == AZURE  # Azure's clean batches have one
            if work.exists():
                if work.stat().st_size or keep_empty:
                    os.replace(work, target)
                else:
                    work.unlink()
            elif keep_empty:
                target.touch()
            if target.exists():
                produced[kind] = {"id": file_id, "purpose": "batch_output", "bytes": target.stat().st_size,
                                  "filename": f"{row.id}_{kind}.jsonl", "created_at": now,
                                  "expires_at": now + ttl, "sha256": ""}
        absent = "" if row.flavour == AZURE else None  # Azure writes "" for a file it has not
        doc = dict(row.doc, status=final, output_file_id=produced.get("output", {}).get("id", absent),
                   error_file_id=produced.get("error", {}).get("id", absent), usage=self._reported_usage(row))
        doc[f"{final}_at"] = now
        if final == "completed" and doc.get("finalizing_at") is None:
            doc["finalizing_at"] = now
        with self.store.transaction() as conn:
            for file_row in produced.values():
                self.store.register_file(conn, file_row)
            row = self.store.update_batch(row.id, doc, conn)
        shutil.rmtree(self.store.work_dir / row.id, ignore_errors=True)
        self._caches.pop(row.id, None)
        return row

    def _reported_usage(self, row: BatchRow) -> dict[str, Any]:
        """The batch's usage as it ends: its lines' sum, plus the injected billing skew
        (`usage_skew_input_tokens`, a provider's figures that disagree with its answers)."""
        usage, skew = row.doc["usage"], self.settings.usage_skew_input_tokens
        if not skew:
            return usage
        return dict(usage, input_tokens=usage["input_tokens"] + skew, total_tokens=usage["total_tokens"] + skew)

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


def preset_reply(line: dict[str, Any]) -> Reply | None:
    """The ``preset_reply`` ``[status, body]`` of an internal request line, if it has one.

    Protocols translated onto this engine (the Anthropic routes) check a request's own parameters
    when the batch is created, but must report a bad one as that request's error once the batch
    ends, not refuse the batch: such a line carries its error reply instead of a runnable body.
    """
    preset = line.get("preset_reply")
    return None if preset is None else (preset[0], preset[1])


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


def _cacheable(endpoint: str, body: Any, size: int) -> tuple[str | None, int]:
    """A line's prompt text and tokens for the prompt cache, only for a prompt long enough to be
    cached: a line of `size` bytes holds a prompt of fewer characters, so short lines cost nothing."""
    if size < MIN_CACHED_CHARS:
        return None, 0
    text = prompt_text(endpoint, body) if isinstance(body, dict) else None
    if not text or len(text) < MIN_CACHED_CHARS:
        return None, 0
    return text, prompt_tokens(endpoint, body)


def empty_usage() -> dict[str, Any]:
    return {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}
