"""Gemini's Files API: resumable uploads as the SDK makes them, and ``File`` objects.

An upload is started with the file's announced size, then receives chunks at its upload URL
(the URL, with its ``upload_id``, is the capability: chunks carry no key), each appended at its
offset to a partial file under ``tmp/``; the ``finalize`` chunk moves it into the shared files
table (purpose ``gemini``, 48 hours) and names it ``files/ID``.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

from batch_pipeline.local_api.errors import APIError
from batch_pipeline.local_api.gemini_batches import FILE_TTL, GeminiError, not_found, rfc3339
from batch_pipeline.local_api.gemini_store import GeminiStore, new_gemini_id, valid_id
from batch_pipeline.local_api.gemini_translate import field
from batch_pipeline.local_api.store import GEMINI_PURPOSE

if TYPE_CHECKING:
    from batch_pipeline.local_api.app import LocalBatchAPI

# A live file: its Gemini id, its Gemini document and its files-table row.
StoredFile = tuple[str, dict[str, Any], dict[str, Any]]


def file_object(file_id: str, doc: dict[str, Any], row: dict[str, Any], base: str) -> dict[str, Any]:
    """Gemini's ``File`` for a stored file; ``base`` is the URL prefix of this API (``.../v1beta``)."""
    created = rfc3339(doc["createTime"])
    shown = {
        "name": f"files/{file_id}", "displayName": doc.get("displayName") or "", "mimeType": doc["mimeType"],
        "sizeBytes": str(row["bytes"]), "createTime": created, "updateTime": created,
        "expirationTime": rfc3339(row["expires_at"] or doc["createTime"] + FILE_TTL),
        "sha256Hash": base64.b64encode(bytes.fromhex(row["sha256"])).decode(),
        "uri": f"{base}/files/{file_id}", "state": "ACTIVE", "source": doc["source"],
    }
    if doc["source"] == "GENERATED":
        shown["downloadUri"] = f"{base}/files/{file_id}:download?alt=media"
    return shown


class GeminiFiles:
    """Uploads and files of the Gemini routes."""

    def __init__(self, api: LocalBatchAPI, gemini: GeminiStore) -> None:
        self.api = api
        self.gemini = gemini

    def start_upload(self, body: Any, size_header: str, type_header: str) -> str:
        """Open an upload session for the announced file; returns its upload id."""
        file = body.get("file") if isinstance(body, dict) else None
        file = file if isinstance(file, dict) else {}
        name = file.get("name")
        file_id = name.removeprefix("files/") if isinstance(name, str) else new_gemini_id(12)
        if not valid_id(file_id):
            raise GeminiError(400, f"Invalid file name '{name}': use lowercase letters, digits and dashes.")
        if self.gemini.get_file(file_id) is not None:
            raise GeminiError(409, f"File files/{file_id} already exists.")
        size = size_header if size_header.isdigit() else str(field(file, "sizeBytes") or "")
        if not size.isdigit():
            raise GeminiError(400, "X-Goog-Upload-Header-Content-Length is required to start an upload.")
        if int(size) > self.api.settings.gemini_max_file_bytes:
            raise GeminiError(400, f"File size {size} exceeds the limit of {self.api.settings.gemini_max_file_bytes}"
                              " bytes.")
        upload_id = new_gemini_id(24)
        self.gemini.start_upload(upload_id, {
            "fileId": file_id, "size": int(size), "displayName": field(file, "displayName"),
            "mimeType": type_header or field(file, "mimeType") or "application/octet-stream"})
        self._part(upload_id).write_bytes(b"")
        return upload_id

    def _part(self, upload_id: str) -> Any:
        return self.api.store.tmp_dir / f"gemini-upload-{upload_id}.part"

    def receive(self, upload_id: str, offset: str, chunk: bytes, finalize: bool) -> StoredFile | None:
        """Write a chunk at its offset; on ``finalize`` store the file and return it."""
        session = self.gemini.get_upload(upload_id) if valid_id(upload_id) else None
        if session is None:
            raise GeminiError(404, "No such upload session.")
        doc, received = session
        at = int(offset) if offset.isdigit() else received
        if at > received or at + len(chunk) > doc["size"]:
            raise GeminiError(400, f"Invalid upload offset {at}: {received} of {doc['size']} bytes received.")
        part = self._part(upload_id)
        with open(part, "r+b") as out:
            out.truncate(at)
            out.seek(at)
            out.write(chunk)
        self.gemini.set_received(upload_id, at + len(chunk))
        if not finalize:
            return None
        if at + len(chunk) != doc["size"]:
            raise GeminiError(400, f"Upload finalized at {at + len(chunk)} bytes, {doc['size']} announced.")
        return self._store(upload_id, doc)

    def _store(self, upload_id: str, doc: dict[str, Any]) -> StoredFile:
        now = int(time.time())
        part = self._part(upload_id)
        with open(part, "rb") as source:
            row = self.api.store.save_upload(source, filename=doc["displayName"] or doc["fileId"],
                                             purpose=GEMINI_PURPOSE, expires_at=now + FILE_TTL, created_at=now,
                                             max_bytes=self.api.settings.gemini_max_file_bytes)
        assert row is not None  # the announced size was checked against the limit
        file_doc = {"displayName": doc["displayName"], "mimeType": doc["mimeType"], "createTime": now,
                    "source": "UPLOADED"}
        self.gemini.insert_file(doc["fileId"], row["id"], file_doc)
        self.gemini.end_upload(upload_id)
        part.unlink(missing_ok=True)
        return self.get(doc["fileId"])

    def get(self, file_id: str) -> StoredFile:
        """A live file: its id, Gemini document and files-table row; 404 if unknown or expired."""
        found = self.gemini.get_file(file_id) if valid_id(file_id) else None
        if found is None:
            raise not_found(f"File files/{file_id}")
        try:
            row = self.api.store.get_file(found[0])
        except APIError:
            raise not_found(f"File files/{file_id}") from None
        return file_id, found[1], row

    def list(self, offset: int, limit: int) -> tuple[list[StoredFile], bool]:
        """A page of live files (an expired one is left out of its page)."""
        ids, more = self.gemini.list_files(offset, limit)
        found = []
        for file_id in ids:
            try:
                found.append(self.get(file_id))
            except GeminiError:
                continue
        return found, more

    def delete(self, file_id: str) -> None:
        store_id = self.gemini.delete_file(file_id) if valid_id(file_id) else None
        if store_id is None:
            raise not_found(f"File files/{file_id}")
        try:
            self.api.store.delete_file(store_id)
        except APIError:  # already gone (expired): the Gemini name is what was asked to go
            return
