"""Provider file hygiene: a harvested partition's batch files are deleted at the provider.

A busy organisation would otherwise pile up three files per batch (input, output, error) until
the provider's file limits refuse new uploads. Only files the pipeline no longer needs from the
provider go: input files of terminal batches (the request shards are in the warehouse before any
upload), and output and error files whose raw copy is in the warehouse.

The deletion is recoverable: a results run notes its batches' files in the warehouse
(`<requests folder>/deletions.json`) before it writes the Parquet, and deletes what is noted
once the Parquet is committed. A run killed in between leaves the note, and the partition's
next results run deletes the files, even when the partition was resubmitted meanwhile and
those batches are never harvested again (their answers were carried from that Parquet). A file
already gone (404) counts as done; any other failure is a warning and the file stays noted for
the next run. Deleting a noted file early is harmless: its bytes are in the warehouse.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from upath import UPath

from batch_pipeline.errors import ProviderUnavailable
from batch_pipeline.provider.contract import BatchAPI, ProviderBatch
from batch_pipeline.state.cleanup import needs_raw_copy
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse

_VERSION = 1
Noted = dict[str, dict[str, str]]  # file id -> {"batch_id", "kind": input | output | error}


def note_provider_files(wh: Warehouse, use_case: str, partition: str, batches: Iterable[ProviderBatch]) -> None:
    """Note the files of `batches` (terminal, about to be harvested) for deletion; call it under the
    partition's lease, before the results are written."""
    noted = _read(_path(wh, use_case, partition))
    for batch in batches:
        for kind, file_id in batch.files.items():
            noted[file_id] = {"batch_id": batch.id, "kind": kind}
    _write(wh, _path(wh, use_case, partition), noted)


def delete_provider_files(
    wh: Warehouse, api: BatchAPI, use_case: str, partition: str, warn: Callable[[str], None]
) -> int:
    """Delete the partition's noted files whose bytes the warehouse holds; how many were deleted.

    Failures never fail the run: each is a warning naming the file (never the provider's message,
    which could echo request details), and the file stays noted.
    """
    path = _path(wh, use_case, partition)
    noted = _read(path)
    raw_dir = wh.partition_dir(use_case, layout.RAW, partition)
    deleted, left = 0, {}
    for file_id, entry in noted.items():
        kind = entry["kind"]
        if needs_raw_copy(kind) and not (raw_dir / layout.raw_file(entry["batch_id"], kind)).exists():
            warn(f"{use_case} {partition}: provider file {file_id} of batch {entry['batch_id']} is not kept "
                 "in the warehouse; left at the provider")
            left[file_id] = entry
            continue
        try:
            deleted += api.delete_file(file_id)  # False when it was gone already: done
        except ProviderUnavailable as exc:
            warn(f"{use_case} {partition}: provider file {file_id} was not deleted ({exc}); "
                 "the partition's next results run tries again")
            left[file_id] = entry
    if left != noted:
        _write(wh, path, left)
    return deleted


def _path(wh: Warehouse, use_case: str, partition: str) -> UPath:
    return wh.partition_dir(use_case, layout.REQUESTS, partition) / layout.DELETIONS_FILE


def _read(path: UPath) -> Noted:
    return dict(json.loads(path.read_bytes()).get("files", {})) if path.exists() else {}


def _write(wh: Warehouse, path: UPath, noted: Noted) -> None:
    """Save the note; an empty one is removed, so a tidy partition has none."""
    if noted:
        wh.write_bytes(path, json.dumps({"version": _VERSION, "files": noted}).encode())
    elif path.exists():
        path.unlink()
