"""The warehouse: every byte that must outlive the provider, under one root (folder or URL).

Layout (`warehouse/layout.py`, docs/layers.md): `<root>/<use_case>/{requests,raw,results}/partition=<key>/...`.
Writes are atomic: a local file is written beside its target and renamed into place; on object
stores an object appears whole when its PUT (or multipart upload) completes, and a failed upload
is aborted, never committed half-written.

On object stores every process reads the store itself, not a cached listing: fsspec filesystems
(s3fs, gcsfs, adlfs) cache directory listings per process by default, and a listing cached before
another process wrote a file (another run's intents, claims, shards, results) would make that
file look absent here. The warehouse's filesystem is therefore opened with
`use_listings_cache=False`. Credentials and endpoint come from the store's usual settings (for
S3, botocore's: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...; or fsspec's FSSPEC_S3_* config).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from batch_pipeline.warehouse import layout


def is_url(root: str | os.PathLike[str]) -> bool:
    """Whether a warehouse root names object storage (`s3://bucket/wh`, `gs://…`) rather than a folder."""
    return "://" in str(root)


def resolve_root(root: str | os.PathLike[str]) -> str:
    """A warehouse root as every process must see it: a URL exactly as given (never a local
    folder named `s3:`), a folder made absolute."""
    return str(root) if is_url(root) else str(Path(root).resolve())


class Warehouse:
    """Paths and atomic writes under a warehouse root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = UPath(root)
        self._local = self.root.protocol in ("", "file", "local")
        if not self._local:  # see the module docstring: never a stale listing from this process
            self.root = UPath(str(self.root), **{**self.root.storage_options, "use_listings_cache": False})

    def local_path(self, path: UPath) -> Path | None:
        """The file's path on this machine, when the warehouse is a local folder."""
        return Path(path.path) if self._local else None

    def partition_dir(self, use_case: str, area: str, partition: str) -> UPath:
        return self.root / layout.partition_folder(use_case, area, partition)

    def relative(self, path: UPath) -> str:
        """`path` relative to the root, as recorded in Dagster metadata."""
        return path.relative_to(self.root).as_posix()

    def resolve(self, recorded: str) -> UPath:
        """A recorded path: relative to the root, or (recorded before paths were relative) absolute."""
        if recorded.startswith(f"{self.root.protocol}://") and not self._local:
            return UPath(recorded, **self.root.storage_options)  # the same store, the same settings
        if "://" in recorded or recorded.startswith("/"):
            return UPath(recorded)
        return self.root / recorded

    def write_bytes(self, path: UPath, data: bytes | Sequence[bytes | pa.Buffer]) -> UPath:
        """Write `data` (bytes, or buffers one after the other) to `path` so readers see either
        the old file or the whole new one."""
        parts: Sequence[bytes | pa.Buffer] = [data] if isinstance(data, bytes) else data
        if not self._local:  # no folders to make; one PUT (multipart past 100 MB, aborted on error)
            body = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)
            path.fs.pipe_file(path.path, body)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        target = Path(path.path)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return path

    @contextmanager
    def parquet_writer(self, path: UPath, unique: Sequence[str] = ()) -> Iterator[Callable[[pa.Table], None]]:
        """Write a Parquet file one table (row group) at a time; it appears whole or not at all.

        Tables must share a schema; memory holds one of them. The file is built beside its target
        (or in a local temp file for an object store) and moved into place when the block ends.
        Columns named in `unique` (a value per row) are not dictionary-encoded: trying costs up to
        a third of the write.
        """
        if self._local:
            path.parent.mkdir(parents=True, exist_ok=True)
            local = Path(path.path).with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        else:
            handle, name = tempfile.mkstemp(suffix=".parquet")
            os.close(handle)
            local = Path(name)
        writer: pq.ParquetWriter | None = None

        def write(table: pa.Table) -> None:
            nonlocal writer
            if writer is None:
                writer = pq.ParquetWriter(local, table.schema, compression="zstd",
                                          use_dictionary=_dictionary(table.schema, unique))
            writer.write_table(table)

        try:
            yield write
            if writer is None:
                raise ValueError(f"nothing was written to {path}")
            writer.close()
            writer = None
            if self._local:
                os.replace(local, path.path)
            else:
                path.fs.put_file(str(local), path.path)
        finally:
            if writer is not None:
                writer.close()
            local.unlink(missing_ok=True)

    def read_parquet(self, path: UPath) -> pa.Table:
        with arrow_file(path) as f:
            return pq.read_table(f)

    def remove_stale(self, folder: UPath, pattern: str, keep: set[str]) -> None:
        """Delete files matching `pattern` in `folder` that a rewrite no longer produced."""
        if not folder.exists():
            return
        for path in folder.glob(pattern):
            if path.name not in keep:
                path.unlink()


@contextmanager
def arrow_file(path: UPath) -> Iterator[pa.NativeFile]:
    """`path` opened as a file Arrow reads without calling back into Python.

    Arrow reads Parquet on its own thread pools. Handed a Python file object, its threads take the
    GIL to read it and to drop their last reference to it; one that does so while the interpreter
    shuts down is ended by Python mid-unwind, and the process aborts after its work is done
    ("terminate called without an active exception"). So a local file is opened by Arrow itself,
    and an object in a store is read whole into Arrow's own memory first."""
    if path.protocol in ("", "file", "local"):
        with pa.OSFile(path.path, "rb") as native:
            yield native
        return
    copy = pa.BufferOutputStream()
    with path.open("rb") as f:
        copy.write(f.read())
    with pa.BufferReader(copy.getvalue()) as reader:
        yield reader


def _dictionary(schema: pa.Schema, unique: Sequence[str]) -> list[str]:
    """The columns worth dictionary-encoding: all but those with a value per row."""
    return [name for name in schema.names if name not in unique]
