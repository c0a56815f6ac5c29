"""Durable state of the local Batch API: SQLite (WAL) for metadata, plain files for content.

Several processes (uvicorn, the Dagster daemon, webserver and run workers, each with an
embedded client) open the same data dir at once. SQLite in WAL mode gives them one
consistent view with cheap concurrent readers; every write is a short ``BEGIN IMMEDIATE``
transaction. A connection is opened per unit of work (not cached per thread) so that
forked children never inherit an open SQLite handle.

Layout of ``data_dir``::

    state.sqlite3          files and batches tables
    files/<file_id>        file contents, written to tmp/ then renamed into place
    work/<batch_id>/       per-batch append-only result files while the batch runs
    tmp/                   partial uploads
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import sqlite3
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from filelock import FileLock

from batch_pipeline.local_api.errors import not_found

_FILE_ID = re.compile(r"^file-[A-Za-z0-9]{1,64}$")
_BATCH_ID = re.compile(r"^batch_[A-Za-z0-9]{1,64}$")
_ALPHABET = string.ascii_letters + string.digits

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    doc BLOB NOT NULL,
    endpoint TEXT NOT NULL,
    input_sha256 TEXT NOT NULL DEFAULT '',
    model TEXT,
    enqueued_tokens INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL,
    expires_ts REAL NOT NULL,
    input_offset INTEGER NOT NULL DEFAULT 0,
    lines_done INTEGER NOT NULL DEFAULT 0,
    out_size INTEGER NOT NULL DEFAULT 0,
    err_size INTEGER NOT NULL DEFAULT 0,
    files_built INTEGER NOT NULL DEFAULT 0,
    output_ttl INTEGER,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    flavour TEXT NOT NULL DEFAULT 'openai'
);
CREATE INDEX IF NOT EXISTS batches_by_status ON batches(status);
"""
# Columns added after the first release, with their definitions: a data dir written before
# gains them when opened (`Store.__init__`).
_ADDED_COLUMNS = {"flavour": "TEXT NOT NULL DEFAULT 'openai'"}
OPENAI, AZURE, GEMINI = "openai", "azure", "gemini"  # whose routes created a batch, and so whose quirks it has
ANTHROPIC = "anthropic"  # run for the Anthropic routes (anthropic_routes.py)
OTHER_PROTOCOLS = (ANTHROPIC, GEMINI)  # batches run for these routes are theirs to list, not OpenAI's
# Files the Gemini routes keep (uploads, translated inputs, responses files): hidden from OpenAI's list.
GEMINI_PURPOSE = "gemini"

# Internal columns a lifecycle step may update, besides the public document.
BATCH_COLUMNS = frozenset(
    {"status", "model", "enqueued_tokens", "due_at", "input_offset", "lines_done", "out_size",
     "err_size", "files_built", "input_sha256"}
)


def new_file_id() -> str:
    return "file-" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def new_batch_id(idempotency_key: str | None = None) -> str:
    """A random batch id, or the one an idempotency key always maps to."""
    if idempotency_key is None:
        return "batch_" + secrets.token_hex(16)
    return "batch_" + hashlib.blake2b(idempotency_key.encode(), digest_size=16, person=b"idempotency").hexdigest()


def derived_file_id(batch_id: str, kind: str) -> str:
    """Output/error file ids derived from the batch id, so a re-run finalization reuses them."""
    digest = hashlib.blake2b(f"{batch_id}:{kind}".encode(), digest_size=12).hexdigest()
    return "file-" + digest


@dataclass(frozen=True)
class Quota:
    """A new batch's prompt tokens, enqueued against its model's limit when it is created."""

    model: str
    tokens: int
    limit: int


class OverQuota(Exception):
    """A new batch's tokens do not fit its model's enqueued-token limit (`Store.insert_batch`)."""

    def __init__(self, quota: Quota) -> None:
        super().__init__(f"{quota.tokens} tokens over the limit of {quota.limit} for {quota.model}")
        self.quota = quota


@dataclass(frozen=True)
class BatchRow:
    """One batch: the public document plus the bookkeeping needed to resume it."""

    id: str
    status: str
    doc: dict[str, Any]
    endpoint: str
    input_sha256: str
    model: str | None
    enqueued_tokens: int
    due_at: float
    expires_ts: float
    input_offset: int
    lines_done: int
    out_size: int
    err_size: int
    files_built: bool
    output_ttl: int | None
    flavour: str = OPENAI


def _batch_row(row: sqlite3.Row) -> BatchRow:
    return BatchRow(
        id=row["id"], status=row["status"], doc=orjson.loads(row["doc"]), endpoint=row["endpoint"],
        input_sha256=row["input_sha256"], model=row["model"], enqueued_tokens=row["enqueued_tokens"],
        due_at=row["due_at"], expires_ts=row["expires_ts"], input_offset=row["input_offset"],
        lines_done=row["lines_done"], out_size=row["out_size"], err_size=row["err_size"],
        files_built=bool(row["files_built"]), output_ttl=row["output_ttl"], flavour=row["flavour"],
    )


def file_object(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    """The public ``FileObject`` for a files-table row."""
    return {
        "id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": row["created_at"],
        "expires_at": row["expires_at"], "filename": row["filename"], "purpose": row["purpose"],
        "status": "processed", "status_details": None,
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """Files and batches of one data dir, shared safely by any number of processes."""

    lease_seconds = 15.0

    def __init__(self, data_dir: str | os.PathLike[str], file_clock_offset: float = 0.0) -> None:
        self.root = Path(data_dir).resolve()
        self.file_clock_offset = file_clock_offset  # files expire this much early (tests of expiry)
        self.files_dir = self.root / "files"
        self.work_dir = self.root / "work"
        self.tmp_dir = self.root / "tmp"
        for path in (self.files_dir, self.work_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "state.sqlite3"
        self._host = socket.gethostname()
        self._nonce = secrets.token_hex(4)
        # Switching to WAL needs a moment of exclusive access: serialize first-time setup.
        with FileLock(str(self.root / ".init.lock")):
            with self.connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                present = {row["name"] for row in conn.execute("PRAGMA table_info(batches)")}
                for name, definition in _ADDED_COLUMNS.items():
                    if name not in present:
                        conn.execute(f"ALTER TABLE batches ADD COLUMN {name} {definition}")

    # -- connections -------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- files -------------------------------------------------------------------------

    def file_path(self, file_id: str) -> Path:
        """Where a file's bytes live; ids that are not ours never map to a path."""
        if not _FILE_ID.match(file_id):
            raise not_found(f"No such File object: {file_id}")
        return self.files_dir / file_id

    def save_upload(self, source: BinaryIO, *, filename: str, purpose: str, expires_at: int | None,
                    created_at: int, max_bytes: int) -> dict[str, Any] | None:
        """Copy an upload into the store atomically; None when it exceeds ``max_bytes``."""
        file_id = new_file_id()
        tmp = self.tmp_dir / f"{file_id}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := source.read(1 << 20):
                    size += len(chunk)
                    if size > max_bytes:
                        return None
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.files_dir / file_id)
        finally:
            tmp.unlink(missing_ok=True)
        row = {"id": file_id, "purpose": purpose, "filename": filename, "bytes": size,
               "created_at": created_at, "expires_at": expires_at, "sha256": digest.hexdigest()}
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO files (id, purpose, filename, bytes, created_at, expires_at, sha256)"
                " VALUES (:id, :purpose, :filename, :bytes, :created_at, :expires_at, :sha256)", row)
        return row

    def files_now(self) -> float:
        """The moment files' expiry is judged at: now, plus the configured offset."""
        return time.time() + self.file_clock_offset

    def get_file(self, file_id: str) -> dict[str, Any]:
        """A live file's row, or 404 (unknown, deleted or expired: an expired file is gone, as
        OpenAI's are, though its bytes stay in the data dir)."""
        self.file_path(file_id)
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        if row is None or (row["expires_at"] is not None and row["expires_at"] <= self.files_now()):
            raise not_found(f"No such File object: {file_id}")
        return dict(row)

    def list_files(self, *, after: str | None, limit: int, order: str, purpose: str | None
                   ) -> tuple[list[dict[str, Any]], bool]:
        clauses = ["(expires_at IS NULL OR expires_at > ?)", "purpose != ?"]
        params: list[Any] = [self.files_now(), GEMINI_PURPOSE]
        if purpose:
            clauses.append("purpose = ?")
            params.append(purpose)
        comparison = "<" if order == "desc" else ">"
        with self.connect() as conn:
            if after:
                cursor = conn.execute("SELECT seq FROM files WHERE id = ?", (after,)).fetchone()
                if cursor is not None:
                    clauses.append(f"seq {comparison} ?")
                    params.append(cursor["seq"])
            rows = conn.execute(
                f"SELECT * FROM files WHERE {' AND '.join(clauses)}"
                f" ORDER BY seq {'DESC' if order == 'desc' else 'ASC'} LIMIT ?", (*params, limit + 1),
            ).fetchall()
        return [dict(r) for r in rows[:limit]], len(rows) > limit

    def delete_file(self, file_id: str) -> None:
        """Delete a live file; 404 for one unknown, deleted or expired."""
        path = self.file_path(file_id)
        with self.transaction() as conn:
            deleted = conn.execute("DELETE FROM files WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)",
                                   (file_id, self.files_now())).rowcount
        if not deleted:
            raise not_found(f"No such File object: {file_id}")
        path.unlink(missing_ok=True)

    def register_file(self, conn: sqlite3.Connection, row: dict[str, Any]) -> None:
        """Insert a generated file's row (inside the caller's transaction); idempotent."""
        conn.execute(
            "INSERT OR IGNORE INTO files (id, purpose, filename, bytes, created_at, expires_at, sha256)"
            " VALUES (:id, :purpose, :filename, :bytes, :created_at, :expires_at, :sha256)", row)

    # -- batches -----------------------------------------------------------------------

    def insert_batch(self, doc: dict[str, Any], *, due_at: float, expires_ts: float, input_sha256: str,
                     output_ttl: int | None, endpoint: str | None = None, flavour: str = OPENAI,
                     quota: Quota | None = None) -> bool:
        """Store a new batch; `endpoint` is the OpenAI path it runs (default the document's).

        False, storing nothing, when a batch with that id exists (an idempotency key's id). With
        `quota` the batch's tokens are enqueued at once, in the same transaction as the check that
        they fit (two creates cannot both take the last capacity); `OverQuota` when they do not.
        """
        model, tokens = (quota.model, quota.tokens) if quota else (None, 0)
        with self.transaction() as conn:
            if quota is not None and not conn.execute("SELECT 1 FROM batches WHERE id = ?", (doc["id"],)).fetchone() \
                    and self.enqueued_tokens(conn, quota.model, doc["id"]) + tokens > quota.limit:
                raise OverQuota(quota)
            cursor = conn.execute(
                "INSERT OR IGNORE INTO batches (id, status, doc, endpoint, input_sha256, due_at, expires_ts,"
                " output_ttl, flavour, model, enqueued_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (doc["id"], doc["status"], orjson.dumps(doc), endpoint or doc["endpoint"], input_sha256, due_at,
                 expires_ts, output_ttl, flavour, model, tokens),
            )
        return cursor.rowcount == 1

    def get_batch(self, batch_id: str) -> BatchRow:
        if not _BATCH_ID.match(batch_id):
            raise not_found(f"No batch found with id '{batch_id}'.")
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise not_found(f"No batch found with id '{batch_id}'.")
        return _batch_row(row)

    def list_batches(self, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Newest first; ``after`` is an exclusive cursor. Batches run for another protocol's routes
        (``OTHER_PROTOCOLS``) are theirs to list, not OpenAI's."""
        with self.connect() as conn:
            start = None
            if after:
                cursor = conn.execute("SELECT seq FROM batches WHERE id = ?", (after,)).fetchone()
                start = cursor["seq"] if cursor is not None else None
            if start is None:
                rows = conn.execute("SELECT doc FROM batches WHERE flavour NOT IN (?, ?) ORDER BY seq DESC LIMIT ?",
                                    (*OTHER_PROTOCOLS, limit + 1)).fetchall()
            else:
                rows = conn.execute("SELECT doc FROM batches WHERE seq < ? AND flavour NOT IN (?, ?) ORDER BY seq DESC"
                                    " LIMIT ?", (start, *OTHER_PROTOCOLS, limit + 1)).fetchall()
        return [orjson.loads(r["doc"]) for r in rows[:limit]], len(rows) > limit

    def due_batch_ids(self, now: float) -> list[str]:
        """Non-terminal batches that have something to do at ``now`` (oldest first)."""
        placeholders = ",".join("?" * len(TERMINAL_STATUSES))
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT id FROM batches WHERE status NOT IN ({placeholders})"
                " AND (due_at <= ? OR expires_ts <= ? OR status = 'in_progress') ORDER BY seq",
                (*TERMINAL_STATUSES, now, now),
            ).fetchall()
        return [r["id"] for r in rows]

    def enqueued_tokens(self, conn: sqlite3.Connection, model: str, exclude: str) -> int:
        """Prompt tokens of the model's non-terminal batches: validated ones, and those whose tokens
        were enqueued when they were created (Azure's fail-fast quota)."""
        row = conn.execute(
            "SELECT COALESCE(SUM(enqueued_tokens), 0) AS n FROM batches WHERE model = ? AND id != ?"
            " AND status IN ('validating', 'in_progress', 'finalizing', 'cancelling')", (model, exclude),
        ).fetchone()
        return int(row["n"])

    @property
    def owner(self) -> str:
        """Lease holder id: one per thread, so two threads of a process never share a batch."""
        return f"{self._host}:{os.getpid()}:{threading.get_ident()}:{self._nonce}"

    def acquire(self, batch_id: str) -> BatchRow | None:
        """Take the batch's lease, or None if another live worker holds it (never waits for it)."""
        now = time.time()
        owner = self.owner
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None or row["status"] in TERMINAL_STATUSES:
                return None
            holder = row["lease_owner"]
            if holder and holder != owner and self._holder_active(holder, row["lease_until"], now):
                return None
            conn.execute("UPDATE batches SET lease_owner = ?, lease_until = ? WHERE id = ?",
                         (owner, now + self.lease_seconds, batch_id))
        return _batch_row(row)

    def _holder_active(self, holder: str, lease_until: float, now: float) -> bool:
        """On this host a lease lasts while its process lives (a long upstream call may outrun
        the timestamp); a holder on another host is trusted until its lease times out."""
        host, _, rest = holder.partition(":")
        pid = rest.partition(":")[0]
        if host == self._host and pid.isdigit():
            return _pid_alive(int(pid))
        return lease_until > now

    def release(self, batch_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE batches SET lease_owner = NULL, lease_until = 0 WHERE id = ? AND lease_owner = ?",
                         (batch_id, self.owner))

    def update_batch(self, batch_id: str, doc: dict[str, Any], conn: sqlite3.Connection | None = None,
                     **columns: Any) -> BatchRow:
        """Write the document and internal columns, renewing our lease; returns the new row.

        A cancel may land while a worker holds the lease: a non-terminal write then keeps
        the ``cancelling`` status (and its due time) instead of overwriting it.
        """
        unknown = set(columns) - BATCH_COLUMNS
        if unknown:
            raise ValueError(f"unknown batch columns: {sorted(unknown)}")
        if conn is None:
            with self.transaction() as own:
                return self.update_batch(batch_id, doc, own, **columns)
        current = conn.execute("SELECT status, doc FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if current["status"] == "cancelling" and doc["status"] not in TERMINAL_STATUSES | {"cancelling"}:
            doc = dict(doc, status="cancelling", cancelling_at=orjson.loads(current["doc"])["cancelling_at"])
            columns.pop("due_at", None)
        columns["status"] = doc["status"]
        assignments = ", ".join(f"{name} = :{name}" for name in columns)
        params = {**columns, "doc": orjson.dumps(doc), "id": batch_id, "lease_until": time.time() + self.lease_seconds}
        sql = f"UPDATE batches SET {assignments}, doc = :doc, lease_until = :lease_until WHERE id = :id RETURNING *"
        return _batch_row(conn.execute(sql, params).fetchone())

    def request_cancel(self, batch_id: str, now: float, due_at: float) -> BatchRow:
        """Move a running batch to ``cancelling`` unless it has become terminal meanwhile."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise not_found(f"No batch found with id '{batch_id}'.")
            current = _batch_row(row)
            if current.status not in ("validating", "in_progress"):
                return current
            doc = dict(current.doc, status="cancelling", cancelling_at=int(now))
            params = {"doc": orjson.dumps(doc), "due_at": due_at, "id": batch_id}
            return _batch_row(conn.execute(
                "UPDATE batches SET status = 'cancelling', doc = :doc, due_at = :due_at WHERE id = :id RETURNING *",
                params).fetchone())

    def delete_batch(self, batch_id: str) -> None:
        """Forget a terminal batch with its input, output and error files (Anthropic's delete)."""
        row = self.get_batch(batch_id)
        if row.status not in TERMINAL_STATUSES:
            raise ValueError(f"batch {batch_id} is still {row.status}")
        file_ids = [f for f in (row.doc.get("input_file_id"), row.doc.get("output_file_id"),
                                row.doc.get("error_file_id")) if f and _FILE_ID.match(f)]
        with self.transaction() as conn:
            conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
            conn.executemany("DELETE FROM files WHERE id = ?", [(f,) for f in file_ids])
        for file_id in file_ids:
            (self.files_dir / file_id).unlink(missing_ok=True)

    def work_path(self, batch_id: str, name: str) -> Path:
        folder = self.work_dir / batch_id
        folder.mkdir(exist_ok=True)
        return folder / name
