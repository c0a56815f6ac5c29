"""Durable state of the Gemini routes, beside the OpenAI tables in the same SQLite file.

Additive only (``CREATE TABLE IF NOT EXISTS gemini_*``), so a data dir written before opens
unchanged. A Gemini batch runs as an internal batch of the shared engine (``batches`` table,
flavour ``gemini``) whose id is ``batch_`` + the Gemini id; its bytes (uploads, translated input,
responses file) live in the shared ``files`` table under the purpose ``gemini``. These tables keep
what Gemini shows and the engine does not know: names, display names, per-request metadata or
keys, and the rendered output once the batch is over.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

import orjson

from batch_pipeline.local_api.store import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gemini_batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    doc BLOB NOT NULL,
    echo BLOB NOT NULL,
    output BLOB
);
CREATE TABLE IF NOT EXISTS gemini_files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    store_id TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS gemini_uploads (
    id TEXT PRIMARY KEY,
    doc BLOB NOT NULL,
    received INTEGER NOT NULL DEFAULT 0
);
"""
# Gemini resource ids: lowercase letters, digits and dashes, at most 40 characters.
_ID = re.compile(r"^[a-z0-9-]{1,40}$")
_ALPHABET = string.ascii_lowercase + string.digits


def new_gemini_id(length: int = 16) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


class GeminiStore:
    """The ``gemini_*`` tables of a data dir; every method is one short transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.transaction() as conn:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)

    # -- batches -------------------------------------------------------------------------

    def insert_batch(self, batch_id: str, doc: dict[str, Any], echo: list[Any]) -> None:
        with self.store.transaction() as conn:
            conn.execute("INSERT INTO gemini_batches (id, doc, echo) VALUES (?, ?, ?)",
                         (batch_id, orjson.dumps(doc), orjson.dumps(echo)))

    def get_batch(self, batch_id: str) -> tuple[dict[str, Any], Any] | None:
        """The batch's document and its rendered output (None until rendered), or None if unknown."""
        with self.store.connect() as conn:
            row = conn.execute("SELECT doc, output FROM gemini_batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            return None
        return orjson.loads(row["doc"]), None if row["output"] is None else orjson.loads(row["output"])

    def echo(self, batch_id: str) -> list[Any]:
        """Per request, in input order: the metadata to echo (inline) or the key (file input)."""
        with self.store.connect() as conn:
            row = conn.execute("SELECT echo FROM gemini_batches WHERE id = ?", (batch_id,)).fetchone()
        return [] if row is None else list(orjson.loads(row["echo"]))

    def set_output(self, batch_id: str, output: dict[str, Any]) -> None:
        """Keep the first rendering: two processes may render the same finished batch at once."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE gemini_batches SET output = ? WHERE id = ? AND output IS NULL",
                         (orjson.dumps(output), batch_id))

    def list_batches(self, offset: int, limit: int) -> tuple[list[str], bool]:
        """Batch ids newest first from ``offset``, and whether more follow."""
        with self.store.connect() as conn:
            rows = conn.execute("SELECT id FROM gemini_batches ORDER BY seq DESC LIMIT ? OFFSET ?",
                                (limit + 1, offset)).fetchall()
        return [row["id"] for row in rows[:limit]], len(rows) > limit

    def delete_batch(self, batch_id: str) -> bool:
        with self.store.transaction() as conn:
            return conn.execute("DELETE FROM gemini_batches WHERE id = ?", (batch_id,)).rowcount == 1

    # -- files ---------------------------------------------------------------------------

    def insert_file(self, file_id: str, store_id: str, doc: dict[str, Any]) -> None:
        with self.store.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO gemini_files (id, store_id, doc) VALUES (?, ?, ?)",
                         (file_id, store_id, orjson.dumps(doc)))

    def get_file(self, file_id: str) -> tuple[str, dict[str, Any]] | None:
        """The file's id in the shared files table and its Gemini document, or None if unknown."""
        with self.store.connect() as conn:
            row = conn.execute("SELECT store_id, doc FROM gemini_files WHERE id = ?", (file_id,)).fetchone()
        return None if row is None else (row["store_id"], orjson.loads(row["doc"]))

    def list_files(self, offset: int, limit: int) -> tuple[list[str], bool]:
        """File ids newest first from ``offset``, and whether more follow."""
        with self.store.connect() as conn:
            rows = conn.execute("SELECT id FROM gemini_files ORDER BY seq DESC LIMIT ? OFFSET ?",
                                (limit + 1, offset)).fetchall()
        return [row["id"] for row in rows[:limit]], len(rows) > limit

    def delete_file(self, file_id: str) -> str | None:
        """Forget the file; returns its id in the shared files table (None if unknown)."""
        with self.store.transaction() as conn:
            row = conn.execute("DELETE FROM gemini_files WHERE id = ? RETURNING store_id", (file_id,)).fetchone()
        return None if row is None else str(row["store_id"])

    # -- resumable uploads ---------------------------------------------------------------

    def start_upload(self, upload_id: str, doc: dict[str, Any]) -> None:
        with self.store.transaction() as conn:
            conn.execute("INSERT INTO gemini_uploads (id, doc) VALUES (?, ?)", (upload_id, orjson.dumps(doc)))

    def get_upload(self, upload_id: str) -> tuple[dict[str, Any], int] | None:
        """The upload's announced file and the bytes received so far, or None if unknown."""
        with self.store.connect() as conn:
            row = conn.execute("SELECT doc, received FROM gemini_uploads WHERE id = ?", (upload_id,)).fetchone()
        return None if row is None else (orjson.loads(row["doc"]), int(row["received"]))

    def set_received(self, upload_id: str, received: int) -> None:
        with self.store.transaction() as conn:
            conn.execute("UPDATE gemini_uploads SET received = ? WHERE id = ?", (received, upload_id))

    def end_upload(self, upload_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM gemini_uploads WHERE id = ?", (upload_id,))
