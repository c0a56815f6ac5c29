"""Source rows to Batch API request lines, with every unusable row kept as a rejected row.

The result is an index with one row per source row (in source order) and the request lines of
the rows that became requests, split into shards within the provider's per-file limits.
Everything is column-wise with Arrow, a chunk of rows at a time: templates are rendered straight
into JSON lines, shards are cut on cumulative line sizes and a shard's bytes are its lines'
buffer. Python touches single rows only to say why a row is rejected, to escape a cell that
needs JSON escaping, and to count the tokens of a sample of rows.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import hashlib
import itertools
import json
import os
import string
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from batch_pipeline.errors import SourceError, SpecError
from batch_pipeline.index_status import PENDING
from batch_pipeline.provider.contract import RequestEncoding
from batch_pipeline.provider.registry import default_encoding
from batch_pipeline.requests.custom_ids import (
    DUPLICATE_KEY,
    MALFORMED,
    NO_KEY,
    custom_ids,
    rejected_id,
)
from batch_pipeline.sources.base import Source
from batch_pipeline.sources.cells import as_text
from batch_pipeline.sources.csv_source import ADDED_COLUMNS, SOURCE_ERROR
from batch_pipeline.spec import BatchSpec

REJECTED = "rejected"
# Rows whose tokens are counted per chunk; a bigger chunk is estimated from a sample this size.
TOKEN_SAMPLE_ROWS = 500
_CHUNK_ROWS = 50_000  # source rows validated, rendered, counted and encoded at a time
HASH_TYPE = pa.binary(16)
# 64-bit offsets: a chunk's lines repeat the spec's constant text (a JSON schema can be kilobytes)
# and can pass 2 GB together.
LINE_TYPE = pa.large_binary()
INDEX_UNIQUE = ("custom_id", "request_hash")  # index columns with a value per row (and the row key)
INDEX_COLUMNS = ("custom_id", "shard", "status", "error_code", "error_message",
                 "estimated_input_tokens", "request_hash")


@dataclass(frozen=True)
class PartitionRequests:
    """What one partition of a source table turns into.

    `index` has the key column, `custom_id`, `shard` (null for rejected rows), `status`
    (`pending` or `rejected`), `error_code`, `error_message`, `estimated_input_tokens` (0 for
    rejected rows) and `request_hash` (128 bits of the request line; null for rejected rows).
    `shards` holds the JSONL bytes of each shard.
    """

    index: pa.Table
    shards: list[bytes]

    @property
    def rejected(self) -> int:
        return pc.sum(pc.equal(self.index["status"], REJECTED)).as_py() or 0


def check_columns(schema: pa.Schema, source: Source, spec: BatchSpec, partitioned: bool = True) -> None:
    """Fail loudly, naming the column, the spec and the source, when the spec asks for a column
    the source lacks (`partitioned`: the partition columns too, for a whole source's schema)."""
    for key in source.key_columns:
        if key in INDEX_COLUMNS + ADDED_COLUMNS:
            raise SpecError(
                f"spec '{spec.name}': key column '{key}' of {source.describe()} "
                "has the name of a column the pipeline adds to every row; rename it"
            )
    needed = [*source.key_columns, *(source.partition_columns.values() if partitioned else ()),
              *spec.template_columns()]
    present = [name for name in schema.names if name not in ADDED_COLUMNS]
    for column in needed:
        if column not in present:
            close = difflib.get_close_matches(column, present, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SpecError(
                f"spec '{spec.name}': column '{column}' is not in "
                f"{source.describe()} (columns: {', '.join(present)}){hint}"
            )


def build_requests(table: pa.Table, source: Source, spec: BatchSpec, form: RequestEncoding | None = None
                   ) -> PartitionRequests:
    """Turn one partition's rows into request shards and a per-row index (`form`: the
    provider's, default OpenAI's)."""
    check_columns(table.schema, source, spec, partitioned=False)
    indexes: list[pa.Table] = []
    shards: list[bytes] = []
    for index, lines in stream_requests(table, source, spec, form):
        indexes.append(index)
        if lines is not None:
            shards.append(shard_bytes(lines))
    if not indexes:
        return PartitionRequests(index=_empty_index(source.key_columns), shards=[])
    return PartitionRequests(index=pa.concat_tables(indexes).combine_chunks(), shards=shards)


def stream_requests(
    batches: pa.Table | Iterable[pa.RecordBatch], source: Source, spec: BatchSpec, form: RequestEncoding | None = None
) -> Iterator[tuple[pa.Table, pa.ChunkedArray | None]]:
    """`build_requests` one shard at a time, for partitions too big to hold in memory.

    `batches` is a table or any iterable of record batches (a streaming CSV reader, say), read
    as it goes. Yields `(index, lines)` as soon as a shard is complete: `lines` are the shard's
    request lines (binary, newline-terminated; `shard_bytes` joins them) and `index` holds the
    index rows since the previous yield, up to the shard's last request, so its pending rows
    are the shard's lines in order. Rejected rows stay in source order; those after the last
    request come with the last shard, or with `lines` None when no row became a request.
    `form` is how the provider wants each line written and how much a shard holds
    (`Provider.encoding`); by default OpenAI's.
    """
    form = form or default_encoding(spec)
    if isinstance(batches, pa.Table):
        batches = batches.to_batches(max_chunksize=_CHUNK_ROWS)
    encoder: _LineEncoder | None = None
    keys = _KeyLedger()
    pending: list[pa.Table] = []  # index rows not yet handed out
    open_lines: list[pa.Array] = []  # the open shard's lines
    count = size = shard = 0  # the open shard's lines, bytes and number
    for batch in _named(batches, spec):
        if batch.num_rows == 0:
            continue
        if encoder is None:
            check_columns(batch.schema, source, spec, partitioned=False)
            encoder = _LineEncoder(spec, form)
        index, lines, usable = _chunk_requests(batch, source, spec, keys, encoder)
        cuts, count, size = _shard_cuts(pc.binary_length(lines).to_numpy(), count, size, form)
        rows = pc.indices_nonzero(usable)  # the chunk row of each line
        bounds = [0, *cuts, len(lines)]
        shard_of = np.repeat(np.arange(shard, shard + len(bounds) - 1, dtype=np.int32), np.diff(bounds))
        index = index.add_column(2, "shard", pc.replace_with_mask(
            pa.nulls(index.num_rows, pa.int32()), usable, pa.array(shard_of, pa.int32())))
        row_start = line_start = 0
        for cut in cuts:
            row = rows[cut].as_py()
            pending.append(index.slice(row_start, row - row_start))
            open_lines.append(lines.slice(line_start, cut - line_start))
            yield pa.concat_tables(pending), pa.chunked_array(open_lines, LINE_TYPE)
            pending, open_lines, row_start, line_start, shard = [], [], row, cut, shard + 1
        pending.append(index.slice(row_start))
        if line_start < len(lines):
            open_lines.append(lines.slice(line_start))
    if open_lines:
        yield pa.concat_tables(pending), pa.chunked_array(open_lines, LINE_TYPE)
    elif pending:
        yield pa.concat_tables(pending), None


def _named(batches: Iterable[pa.RecordBatch], spec: BatchSpec) -> Iterator[pa.RecordBatch]:
    """The batches; a table that cannot be read fails naming the use case as well as the table."""
    try:
        yield from batches
    except SourceError as exc:
        raise SourceError(f"spec '{spec.name}': {exc}") from exc


def shard_buffers(lines: pa.ChunkedArray) -> list[pa.Buffer]:
    """A shard's JSONL as buffers to write one after the other: each chunk's lines sit back to
    back in its data buffer, so nothing is copied."""
    buffers = []
    for chunk in lines.chunks:
        if len(chunk):
            offsets = _offsets(chunk)
            buffers.append(chunk.buffers()[2][offsets[0]:offsets[-1]])
    return buffers


def shard_bytes(lines: pa.ChunkedArray) -> bytes:
    """A shard's JSONL as one bytes object."""
    return b"".join(shard_buffers(lines))


def _offsets(values: pa.Array) -> memoryview:
    """Where each value starts (and the last one ends) in the array's data buffer."""
    view = memoryview(values.buffers()[1])
    wide = values.type in (pa.large_binary(), pa.large_string())
    start, stop = values.offset, values.offset + len(values) + 1
    return (view.cast("q") if wide else view.cast("i"))[start:stop]


def line_hashes(lines: pa.Array) -> pa.Array:
    """A 128-bit hash of each request line, to tell an unchanged request from a changed one.

    xxh3 rather than a cryptographic hash: it only has to tell a rebuilt line from the one sent
    before, and it costs a third of blake2b per line, which matters at a million rows.
    """
    if not len(lines):
        return pa.array([], HASH_TYPE)
    offsets = _offsets(lines).tolist()
    data = memoryview(lines.buffers()[2])
    return pa.array(list(map(xxhash.xxh3_128_digest, map(data.__getitem__, map(slice, offsets, offsets[1:])))),
                    HASH_TYPE)


def line_custom_id(line: bytes) -> str:
    """The custom_id of a request line built here, without parsing the line.

    Every provider's line starts with its custom id (`RequestEncoding.line`: `{"custom_id":"…"`
    on OpenAI, another member name elsewhere), and custom_ids are portable (no escapes), so the id
    is the text between the first `":"` and the next quote; parsing a whole line per id would
    cost ~100x more.
    """
    start = line.index(b'":"') + 3
    return line[start : line.index(b'"', start)].decode()


def empty_index(source: Source, spec: BatchSpec) -> pa.Table:
    """The index of a partition with no rows; the spec is still checked against the source's columns."""
    check_columns(source.schema(), source, spec)
    return _empty_index(source.key_columns)


def _empty_index(key_columns: Sequence[str]) -> pa.Table:
    empty = pa.array([], pa.string())
    return pa.table({**{k: empty for k in key_columns}, "custom_id": empty, "shard": pa.array([], pa.int32()),
                     "status": empty, "error_code": empty, "error_message": empty,
                     "estimated_input_tokens": pa.array([], pa.int64()), "request_hash": pa.array([], HASH_TYPE)})


def _shard_cuts(lengths: np.ndarray, count: int, size: int, form: RequestEncoding) -> tuple[list[int], int, int]:
    """Where the open shard closes among these next lines (positions of the first line of each
    new shard) and the open shard's line count and bytes after them.

    Greedy, as a writer appending line by line would: a shard closes before the line that would
    take it over either limit. A single line over the byte limit is a shard of its own, so the
    provider refuses it visibly instead of it waiting forever.
    """
    cumulative = np.cumsum(lengths, dtype=np.int64)
    cuts: list[int] = []
    start = base = 0  # base: bytes of the lines before `start`
    while start < len(lengths):
        hi = min(len(lengths), start + form.max_requests - count)
        fit = int(np.searchsorted(cumulative[start:hi], base + form.max_bytes - size, "right"))
        if fit == 0 and count == 0:
            fit = 1
        if fit:
            count, size = count + fit, size + int(cumulative[start + fit - 1]) - base
            base, start = int(cumulative[start + fit - 1]), start + fit
        if start < len(lengths):
            cuts.append(start)
            count = size = 0
    return cuts, count, size


def _reject_too_long(codes: list[str | None], messages: list[str | None], cells: dict[str, pa.Array],
                     total_chars: pa.Array, limit: int) -> None:
    """Reject rows whose prompt is over the spec's limit, naming the longest input column."""
    for i in pc.indices_nonzero(pc.greater(total_chars, limit)).to_pylist():
        if codes[i] is None:
            lengths = {column: len(values[i].as_py() or "") for column, values in cells.items()}
            longest = max(lengths, key=lengths.__getitem__)
            codes[i] = "input_too_long"
            messages[i] = (
                f"prompt is {total_chars[i].as_py():,} characters, over the spec's limit of "
                f"{limit:,}; longest input is column '{longest}' ({lengths[longest]:,} characters)"
            )


class _Rejections:
    """Why each row of a chunk cannot become a request; the first reason found stands."""

    def __init__(self, n: int):
        self.codes: list[str | None] = [None] * n
        self.messages: list[str | None] = [None] * n

    def reject(self, mask: pa.Array, code: str, message: str) -> None:
        for i in pc.indices_nonzero(mask).to_pylist():
            if self.codes[i] is None:
                self.codes[i], self.messages[i] = code, message

    def texts(self, batch: pa.RecordBatch, names: Sequence[str]) -> dict[str, pa.Array]:
        """The columns as text (`sources.cells`); rows with a cell no rule renders are rejected."""
        out = {}
        for name in names:
            out[name], problem = as_text(batch.column(name))
            if problem is not None:
                self.reject(pc.is_valid(batch.column(name)), "unrenderable_value", f"column '{name}' {problem}")
        return out


def _chunk_requests(batch: pa.RecordBatch, source: Source, spec: BatchSpec, ledger: _KeyLedger,
                    encoder: _LineEncoder) -> tuple[pa.Table, pa.LargeBinaryArray, pa.BooleanArray]:
    """A chunk's index (without `shard`), the request lines of its pending rows in order, and
    which rows those are."""
    n = batch.num_rows
    rows = _Rejections(n)
    malformed = None
    if SOURCE_ERROR in batch.schema.names:  # a malformed CSV line, kept as a row by `source`
        errors = batch.column(SOURCE_ERROR)
        if errors.null_count < n:
            malformed = pc.is_valid(errors)
            for i in pc.indices_nonzero(malformed).to_pylist():
                rows.codes[i], rows.messages[i] = "malformed_row", errors[i].as_py()
    key_parts = rows.texts(batch, source.key_columns)
    blank_keys = _blank_any(key_parts, rows)
    ids, duplicate = ledger.custom_ids(_key_text(key_parts), blank_keys, malformed, functools.partial(_cells, batch))
    if duplicate is not None:
        named = ", ".join(f"'{k}'" for k in source.key_columns)
        rows.reject(duplicate, "duplicate_key",
                    f"column{'s' if len(key_parts) > 1 else ''} {named} repeat{'' if len(key_parts) > 1 else 's'} "
                    "a key already used by an earlier row")

    cells = rows.texts(batch, spec.template_columns())
    for column, values in cells.items():
        rows.reject(_blank(values), "missing_value", f"column '{column}' is empty")
    chars = {role: encoder.chars(role, cells, n) for role in encoder.templates}
    _reject_too_long(rows.codes, rows.messages, cells, functools.reduce(pc.add, chars.values()),
                     spec.max_prompt_chars)

    error_codes = pa.array(rows.codes, pa.string())
    usable = pc.is_null(error_codes)
    if pc.all(usable).as_py():
        lines = encoder.lines(ids, cells)
    else:
        lines = encoder.lines(ids.filter(usable), {c: v.filter(usable) for c, v in cells.items()})
    tokens = encoder.tokens(cells, chars, usable)
    hashes = pc.replace_with_mask(pa.nulls(n, HASH_TYPE), usable, line_hashes(lines))
    index = pa.table({
        **key_parts,
        "custom_id": ids,
        "status": pc.if_else(usable, PENDING, REJECTED),
        "error_code": error_codes,
        "error_message": pa.array(rows.messages, pa.string()),
        "estimated_input_tokens": tokens,
        "request_hash": hashes,
    })
    return index, lines, usable


def _cells(batch: pa.RecordBatch, row: int) -> str:
    """A row's cells as read (a malformed line's as well as they split; not its line number or
    message, which names the line), as JSON: what a rejected row's id is made from. Python per
    row, but only for rejected rows."""
    return orjson.dumps([batch.column(name)[row].as_py() for name in batch.schema.names if name not in ADDED_COLUMNS],
                        default=str).decode()


def _blank_any(key_parts: dict[str, pa.Array], rows: _Rejections) -> pa.Array:
    """Rows with any key column blank, each rejected naming the column."""
    blanks = []
    for column, values in key_parts.items():
        blanks.append(_blank(values))
        rows.reject(blanks[-1], "missing_value", f"column '{column}' (the row key) is empty")
    return functools.reduce(pc.or_, blanks)


def _key_text(key_parts: dict[str, pa.Array]) -> pa.Array:
    """The text a row's custom_id is made from: the key itself, or for a composite key the JSON
    array of its parts (`["acme","2026-11"]`), which no other list of parts spells, and which is
    never portable, so composite ids are always hashed."""
    parts = list(key_parts.values())
    if len(parts) == 1:
        return parts[0]
    pieces: list[pa.Array | str] = ['["']
    for i, values in enumerate(parts):
        pieces += [_json_escaped(pc.fill_null(values, "")), '","' if i < len(parts) - 1 else '"]']
    return pc.binary_join_element_wise(*pieces, "")


def _blank(values: pa.Array) -> pa.Array:
    """Null, empty or only whitespace (classified without copying the strings)."""
    return pc.fill_null(pc.or_(pc.equal(pc.binary_length(values), 0), pc.utf8_is_space(values)), True)


class _KeyLedger:
    """The row keys of a partition's earlier chunks, so a repeated key is rejected however far
    apart the two rows are. Rows rejected for their key or their line get ids of their own
    shape (`custom_ids.rejected_id`), which no sent row's id can equal.

    Flat in memory: a key is kept as its 64-bit hash in sorted runs (with its place among the
    keys) and as compact Arrow text, ~30 bytes a key where a set of Python strings took ~90
    (0.9 GB at 10M rows). A key is compared as text only when its hash was met before, so two
    keys that share a hash are still told apart exactly. The runs are merged as they double (a
    log-structured merge, written here with numpy: no dependency keeps a set of integers in flat
    arrays), so a chunk's lookup is a binary search in a few runs.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []  # (hashes sorted, each key's place)
        self.keys: list[pa.Array] = []  # the keys taken, a chunk at a time
        self.starts: list[int] = []  # the place of each chunk's first key
        self.size = 0
        self.db = _hash_db().cursor()  # one per ledger: a DuckDB cursor is for one thread
        self.rejected: dict[bytes, int] = {}  # rejected rows met, by reason and cells

    def custom_ids(self, keys: pa.Array, blank: pa.Array, malformed: pa.Array | None,
                   cells: Callable[[int], str]) -> tuple[pa.Array, pa.Array | None]:
        """custom_ids for a chunk's rows (`cells(i)`: row i's cells, for a rejected row's id), and
        which rows repeat an earlier key (None when none do). A row without a key (`blank`) or from
        a line that could not be read (`malformed`) takes no key from the rows after it."""
        filled = pc.fill_null(keys, "")
        skip = blank if malformed is None else pc.or_(blank, malformed)
        taken = np.logical_not(skip.to_numpy(zero_copy_only=False))
        hashes = self.hashes(filled)
        order = np.argsort(hashes)  # sorted needles: each binary search starts where the last ended
        ordered = hashes[order]
        suspect = np.empty(len(hashes), bool)
        suspect[order] = self._met(ordered) | _repeated(ordered)
        suspect &= taken  # a row without a key may share one's hash: harmless, it is compared as text
        ids = custom_ids(filled)
        if taken.all() and not suspect.any():
            self._add(ordered, order, pa.concat_arrays([filled]))  # a compact copy, not the batch's buffers
            return ids, None
        id_list = ids.to_pylist()
        bad = [False] * len(ids) if malformed is None else malformed.to_pylist()
        duplicate = np.zeros(len(ids), bool)
        met: dict[int, set[str]] = {}  # this chunk's keys taken so far, among rows whose hash repeats
        for i in np.flatnonzero(suspect | ~taken).tolist():
            if not taken[i]:
                id_list[i] = self.rejected_id(MALFORMED if bad[i] else NO_KEY, cells(i))
                continue
            key, digest = filled[i].as_py(), int(hashes[i])
            if key in met.get(digest, ()) or key in self._earlier(digest):
                duplicate[i] = True
                id_list[i] = self.rejected_id(DUPLICATE_KEY, cells(i))
            else:
                met.setdefault(digest, set()).add(key)
        kept = taken & ~duplicate
        in_order = order[kept[order]]  # the kept rows in hash order
        rank = np.cumsum(kept) - 1  # a kept row's place among the kept rows
        self._add(hashes[in_order], rank[in_order], filled.filter(pa.array(kept)))
        return pa.array(id_list, pa.string()), (pa.array(duplicate) if duplicate.any() else None)

    def rejected_id(self, reason: str, cells: str) -> str:
        """A rejected row's id: its reason, its cells, and how many earlier rejected rows had the
        same (kept as 16-byte digests: rejected rows only)."""
        seen = hashlib.blake2b(f"{reason}\x00{cells}".encode(), digest_size=16).digest()
        self.rejected[seen] = occurrence = self.rejected.get(seen, 0) + 1
        return rejected_id(reason, cells, occurrence)

    def hashes(self, keys: pa.Array) -> np.ndarray:
        """64-bit hashes of the keys, column-wise in DuckDB's C++ (hashing in Python would cost
        a call per key)."""
        return self.db.from_arrow(pa.table({"key": keys})).project("hash(key) AS h").fetchnumpy()["h"]

    def _met(self, hashes: np.ndarray) -> np.ndarray:
        """Which of the sorted hashes an earlier chunk's key has."""
        met = np.zeros(len(hashes), bool)
        for run, _ in self.runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            met |= run[at] == hashes
        return met

    def _earlier(self, digest: int) -> set[str]:
        """The earlier chunks' keys with this hash (one, unless two keys share a hash)."""
        found, value = set(), np.uint64(digest)
        for run, places in self.runs:
            low, high = np.searchsorted(run, value, "left"), np.searchsorted(run, value, "right")
            for place in places[low:high].tolist():
                chunk = bisect.bisect_right(self.starts, place) - 1
                found.add(self.keys[chunk][place - self.starts[chunk]].as_py())
        return found

    def _add(self, ordered: np.ndarray, rank: np.ndarray, keys: pa.Array) -> None:
        """Take a chunk's new `keys`, given their hashes sorted and each one's place in `keys`;
        merge the newest runs while the older is no bigger, so the runs' sizes fall like a
        binary counter's digits (a few runs, each key merged log n times)."""
        if not len(keys):
            return
        if self.size + len(keys) > _MAX_PLACE:
            raise ValueError(f"a partition holds at most {_MAX_PLACE:,} keys; split it")
        self.runs.append((ordered, (rank + self.size).astype(_PLACE)))
        self.keys.append(keys)
        self.starts.append(self.size)
        self.size += len(keys)
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= len(self.runs[-1][0]):
            new = self.runs.pop()
            self.runs.append(_merged(self.runs.pop(), new))


_PLACE = np.uint32  # a key's place among the ledger's keys: 4 bytes a key, not 8
_MAX_PLACE = int(np.iinfo(_PLACE).max)


def _merged(old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs as one, in linear time: each of the new run's hashes goes where a binary
    search in the old run puts it. Sorting the two together would hold three times the memory."""
    total = len(old[0]) + len(new[0])
    at = np.searchsorted(old[0], new[0]) + np.arange(len(new[0]))
    rest = np.ones(total, bool)
    rest[at] = False
    merged = []
    for old_values, new_values in zip(old, new, strict=True):
        out = np.empty(total, old_values.dtype)
        out[at], out[rest] = new_values, old_values
        merged.append(out)
    return merged[0], merged[1]


def _repeated(ordered: np.ndarray) -> np.ndarray:
    """Which of the sorted hashes occur more than once."""
    same = ordered[1:] == ordered[:-1]
    repeated = np.zeros(len(ordered), bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    return repeated


def _hash_db() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for hashing keys, opened once per process (opening one costs ~20 ms;
    a forked child opens its own)."""
    return _hash_db_of(os.getpid())


@functools.cache
def _hash_db_of(pid: int) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(config={"threads": 1})


def _render(template: str, cells: dict[str, pa.Array], n: int) -> pa.Array:
    """Fill a template for every row at once; a cell is inserted verbatim."""
    parts: list[pa.Array | str] = []
    for literal, field_name, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(literal)
        if field_name is not None:
            parts.append(pc.fill_null(cells[field_name], ""))
    if not any(isinstance(p, pa.Array) for p in parts):
        return pa.array(["".join(parts)] * n, pa.string())
    return pc.binary_join_element_wise(*parts, "")


# A str as a JSON string, byte for byte what orjson writes for it (checked for every code point).
_json_string = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'
_PLAIN_BYTES = bytes(b for b in range(256) if b >= 0x20 and b not in b'"\\')


def _json_escaped(values: pa.Array) -> pa.Array:
    """Each string as it reads between the quotes of a JSON string.

    Only the cells that hold a quote, a backslash or a control character are escaped, one by one
    with the standard library's C encoder; every other cell is already its own JSON text. One
    scan of the column's bytes (deleting every byte that needs no escape) rules out the usual
    case several times faster than a regular expression per cell.
    """
    offsets, data = _offsets(values), values.buffers()[2]
    if data is None or not data[offsets[0]:offsets[-1]].to_pybytes().translate(None, _PLAIN_BYTES):
        return values
    needs = pc.fill_null(pc.match_substring_regex(values, _NEEDS_ESCAPE), False)
    if not pc.any(needs).as_py():
        return values
    escaped = [_json_string(v)[1:-1] for v in values.filter(needs).to_pylist()]
    return pc.replace_with_mask(values, needs, pa.array(escaped, pa.string()))


class _LineEncoder:
    """Request lines for a chunk of rows, built column-wise from the spec's one line shape.

    One sample line, with a marker in each variable slot (the custom_id and every role whose
    template has a field), is encoded with orjson once and cut into its constant runs. A row's
    line is those runs with the row's custom_id and its rendered, JSON-escaped texts in between:
    byte for byte what orjson gives for the whole line dict, joined by Arrow for every row at once.
    """

    def __init__(self, spec: BatchSpec, form: RequestEncoding):
        self.spec, self.form = spec, form
        self.templates = {role: list(string.Formatter().parse(t)) for role, t in spec.templates().items()}
        self.constant = {role: "".join(literal for literal, _, _, _ in parts)
                         for role, parts in self.templates.items() if all(f is None for _, f, _, _ in parts)}
        marker = f"\x00slot-{uuid.uuid4().hex}-"
        slots = ["custom_id", *(r for r in self.templates if r not in self.constant)]
        sample = orjson.dumps(
            form.line(marker + "custom_id", {r: self.constant.get(r, marker + r) for r in self.templates}),
            option=orjson.OPT_APPEND_NEWLINE,
        ).decode()
        encoded = {name: _json_string(marker + name)[1:-1] for name in slots}
        if any(sample.count(e) != 1 for e in encoded.values()):
            raise SpecError(f"spec '{spec.name}': every template must appear once in the request body")
        self.order = sorted(slots, key=lambda name: sample.index(encoded[name]))
        self.runs: list[str] = []
        rest = sample
        for name in self.order:
            before, rest = rest.split(encoded[name], 1)
            self.runs.append(before)
        self.runs.append(rest)

    def lines(self, ids: pa.Array, cells: dict[str, pa.Array]) -> pa.LargeBinaryArray:
        """The JSONL line of every row (`ids` and `cells` hold only rows that become requests)."""
        if not len(ids):
            return pa.array([], LINE_TYPE)
        escaped = {column: _json_escaped(values) for column, values in cells.items()}
        parts: list[pa.Array | str] = [self.runs[0]]
        for name, run in zip(self.order, self.runs[1:], strict=True):
            if name == "custom_id":
                parts.append(ids)  # portable or hashed: nothing to escape
            else:
                for literal, field_name, _, _ in self.templates[name]:
                    parts.append(_json_string(literal)[1:-1])
                    if field_name is not None:
                        parts.append(escaped[field_name])
            parts.append(run)
        # Arrow's join costs about as much per part as per byte here: adjacent constants go as one.
        parts = [p for constant, group in itertools.groupby(parts, key=lambda p: isinstance(p, str))
                 for p in (["".join(group)] if constant else group)]
        wide = pa.large_string()
        parts = [pa.scalar(p, wide) if isinstance(p, str) else p.cast(wide) for p in parts]
        return pc.binary_join_element_wise(*parts, pa.scalar("", wide)).cast(LINE_TYPE)

    def chars(self, role: str, cells: dict[str, pa.Array], n: int) -> pa.Array:
        """The length in characters of a role's rendered text in each of `n` rows."""
        total = pa.scalar(sum(len(literal) for literal, _, _, _ in self.templates[role]), pa.int64())
        for _, field_name, _, _ in self.templates[role]:
            if field_name is not None:
                total = pc.add(total, pc.fill_null(pc.utf8_length(cells[field_name]), 0).cast(pa.int64()))
        return total if isinstance(total, pa.Array) else pa.array([total.as_py()] * n, pa.int64())

    def tokens(self, cells: dict[str, pa.Array], chars: dict[str, pa.Array], usable: pa.Array) -> pa.Array:
        """Input tokens of every row's request, for the cost estimate and queue admission.

        A role's text is counted with the model's tokenizer for up to TOKEN_SAMPLE_ROWS rows of
        the chunk; beyond that, an evenly spaced sample of that many rows is counted and every
        row gets its length times the sample's tokens per character. Counting is about 8 us a row,
        three times the rest of building a request, and a sample of 500 puts a shard's total
        within about a percent (benchmarks/RESULTS.md measures it).
        """
        rows = pc.indices_nonzero(usable)
        n = len(usable)
        total = pa.array([0] * n, pa.int64())
        if not len(rows):
            return total
        step = -(-len(rows) // TOKEN_SAMPLE_ROWS)
        sample = rows if step == 1 else rows.take(pa.array(range(0, len(rows), step)))
        for role in self.templates:
            if role in self.constant:
                counted = pa.scalar(self.form.count_tokens([self.constant[role]])[0], pa.int64())
            else:
                template = self.spec.templates()[role]
                texts = _render(template, {c: v.take(sample) for c, v in cells.items()}, len(sample)).to_pylist()
                exact = pa.array(self.form.count_tokens(texts), pa.int64())
                if step == 1:
                    counted = pc.replace_with_mask(pa.nulls(n, pa.int64()), usable, exact)
                else:
                    per_char = pc.sum(exact).as_py() / max(pc.sum(chars[role].take(sample)).as_py(), 1)
                    counted = pc.round(pc.multiply(chars[role].cast(pa.float64()), per_char)).cast(pa.int64())
            total = pc.add(total, pc.add(counted, self.form.tokens_per_message))
        total = pc.add(total, self.form.tokens_per_reply)
        return pc.if_else(usable, total, 0)
