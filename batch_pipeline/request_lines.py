"""Source rows to Batch API request lines, with every unusable row kept as a rejected row.

The result is an index with one row per source row (in source order) and the request lines of
the rows that became requests, split into shards within the provider's per-file limits.
Templates are rendered column-wise with Arrow; only the final JSON encoding is per row (orjson).
"""

from __future__ import annotations

import difflib
import json
import string
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.cost import input_tokens
from batch_pipeline.custom_ids import custom_id_for, custom_ids
from batch_pipeline.source import SOURCE_ERROR, columns
from batch_pipeline.spec import BatchSpec, SourceTable, SpecError

PENDING = "pending"
REJECTED = "rejected"


@dataclass(frozen=True)
class PartitionRequests:
    """What one partition of a source table turns into.

    `index` has the key column, `custom_id`, `shard` (null for rejected rows), `status`
    (`pending` or `rejected`), `error_code`, `error_message` and `estimated_input_tokens`
    (counted offline; 0 for rejected rows). `shards` holds the JSONL bytes of each shard.
    """

    index: pa.Table
    shards: list[bytes]

    @property
    def rejected(self) -> int:
        return pc.sum(pc.equal(self.index["status"], REJECTED)).as_py() or 0



def check_columns(table: pa.Table, source: SourceTable, spec: BatchSpec) -> None:
    """Fail loudly, naming the column and the spec, when the spec asks for a column the table lacks."""
    needed = [source.key, source.partition_column, *spec.template_columns()]
    for column in needed:
        if column not in table.column_names:
            close = difflib.get_close_matches(column, table.column_names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SpecError(
                f"spec '{spec.name}': column '{column}' is not in source table "
                f"'{source.path.name}' (columns: {', '.join(table.column_names)}){hint}"
            )


_CHUNK_ROWS = 50_000  # source rows validated, rendered, counted and encoded at a time


def build_requests(table: pa.Table, source: SourceTable, spec: BatchSpec) -> PartitionRequests:
    """Turn one partition's rows into request shards and a per-row index."""
    check_columns(table, source, spec)
    indexes: list[pa.Table] = []
    shards: list[bytes] = []
    for index, shard in stream_requests(table, source, spec):
        indexes.append(index)
        if shard is not None:
            shards.append(shard)
    if not indexes:
        return PartitionRequests(index=_index_table(source.key, _EMPTY_STRINGS, _EMPTY_STRINGS, [], [], [], []),
                                 shards=[])
    return PartitionRequests(index=pa.concat_tables(indexes).combine_chunks(), shards=shards)


def stream_requests(
    batches: pa.Table | Iterable[pa.RecordBatch], source: SourceTable, spec: BatchSpec
) -> Iterator[tuple[pa.Table, bytes | None]]:
    """`build_requests` one shard at a time, for partitions too big to hold in memory.

    `batches` is a table or any iterable of record batches (a streaming CSV reader, say), read
    as it goes. Yields `(index, shard)` as soon as a shard is complete: `index` holds the index
    rows since the previous yield, up to the shard's last request (rejected rows stay in source
    order; those after the last request come with the last shard, or with `shard` None when no
    row became a request). Concatenated, the yields are exactly what `build_requests` returns.
    """
    if isinstance(batches, pa.Table):
        batches = batches.to_batches(max_chunksize=_CHUNK_ROWS)
    encode = None
    seen: dict[str, int] = {}
    offset = 0
    pending: list[pa.Table] = []  # index rows not yet handed out
    lines: list[bytes] = []  # the open shard's lines
    size = shard = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if encode is None:
            check_columns(batch, source, spec)
            encode = _line_encoder(spec)
        keys, ids, codes, messages, tokens, chunk_lines = _chunk_requests(batch, source, spec, seen, offset, encode)
        offset += batch.num_rows
        shard_of: list[int | None] = [None] * len(chunk_lines)
        cuts: list[tuple[int, bytes]] = []  # (row before which a shard closed, its bytes)
        for i, line in enumerate(chunk_lines):
            if line is None:
                continue
            if lines and (len(lines) >= spec.max_requests_per_shard or size + len(line) > spec.max_shard_bytes):
                cuts.append((i, b"".join(lines)))
                lines, size, shard = [], 0, shard + 1
            lines.append(line)
            size += len(line)
            shard_of[i] = shard
        del chunk_lines
        index = _index_table(source.key, keys, ids, shard_of, codes, messages, tokens)
        start = 0
        for row, data in cuts:
            pending.append(index.slice(start, row - start))
            start = row
            yield pa.concat_tables(pending), data
            pending = []
        pending.append(index.slice(start))
    if lines:
        yield pa.concat_tables(pending), b"".join(lines)
    elif pending:
        yield pa.concat_tables(pending), None


_EMPTY_STRINGS = pa.array([], pa.string())
_ID_START = len(b'{"custom_id":"')


def line_custom_id(line: bytes) -> str:
    """The custom_id of a request line built here, without parsing the line.

    Every line starts with its custom_id, and custom_ids are portable (no escapes), so the id
    is the text up to the next quote; parsing a whole line per id would cost ~100x more.
    """
    return line[_ID_START : line.index(b'"', _ID_START)].decode()


def empty_index(source: SourceTable, spec: BatchSpec) -> pa.Table:
    """The index of a partition with no rows; the spec is still checked against the table's columns."""
    check_columns(pa.table({c: _EMPTY_STRINGS for c in columns(source)}), source, spec)
    return _index_table(source.key, _EMPTY_STRINGS, _EMPTY_STRINGS, [], [], [], []).append_column(
        "request_sha", _EMPTY_STRINGS)


def _index_table(key_column: str, keys: pa.Array, ids: pa.Array, shard_of: list, codes: list,
                 messages: list, tokens: list) -> pa.Table:
    return pa.table(
        {
            key_column: keys,
            "custom_id": ids,
            "shard": pa.array(shard_of, pa.int32()),
            "status": pa.array([REJECTED if c else PENDING for c in codes], pa.string()),
            "error_code": pa.array(codes, pa.string()),
            "error_message": pa.array(messages, pa.string()),
            "estimated_input_tokens": pa.array(tokens, pa.int64()),
        }
    )


def _chunk_requests(batch: pa.RecordBatch, source: SourceTable, spec: BatchSpec, seen: dict[str, int],
                    offset: int, encode):
    """Keys, custom_ids, rejections, token counts and request lines of one chunk of rows."""
    n = batch.num_rows
    keys = batch.column(source.key).cast(pa.string())
    codes: list[str | None] = [None] * n
    messages: list[str | None] = [None] * n

    def reject(mask: pa.Array, code: str, message: str) -> None:
        for i in pc.indices_nonzero(mask).to_pylist():
            if codes[i] is None:
                codes[i], messages[i] = code, message

    if SOURCE_ERROR in batch.schema.names:  # a malformed CSV line, kept as a row by `source`
        for i in pc.indices_nonzero(pc.is_valid(batch.column(SOURCE_ERROR))).to_pylist():
            codes[i], messages[i] = "malformed_row", batch.column(SOURCE_ERROR)[i].as_py()
    reject(_blank(keys), "missing_value", f"column '{source.key}' (the row key) is empty")
    ids = _custom_ids_with_duplicates(keys, source.key, reject, seen, offset)

    cells = {c: batch.column(c).cast(pa.string()) for c in spec.template_columns()}
    for column, values in cells.items():
        reject(_blank(values), "missing_value", f"column '{column}' is empty")

    rendered = {
        role: _render(template, cells, n)
        for role, template in spec.templates().items()
    }
    total_chars = _zeros(n)
    for text in rendered.values():
        total_chars = pc.add(total_chars, pc.fill_null(pc.utf8_length(text), 0))
    too_long = pc.greater(total_chars, spec.max_prompt_chars)
    for i in pc.indices_nonzero(too_long).to_pylist():
        if codes[i] is None:
            lengths = {column: len(values[i].as_py() or "") for column, values in cells.items()}
            longest = max(lengths, key=lengths.__getitem__)
            codes[i] = "input_too_long"
            messages[i] = (
                f"prompt is {total_chars[i].as_py():,} characters, over the spec's limit of "
                f"{spec.max_prompt_chars:,}; longest input is column '{longest}' "
                f"({lengths[longest]:,} characters)"
            )

    texts = {role: values.to_pylist() for role, values in rendered.items()}
    del rendered, cells
    lines = encode(ids.to_pylist(), texts, codes)
    rejected = [i for i, c in enumerate(codes) if c is not None]
    for values in texts.values():
        for i in rejected:
            values[i] = None
    tokens = input_tokens(spec.model, list(texts.values()), chat=spec.endpoint != "/v1/embeddings")
    return keys, ids, codes, messages, tokens, lines


def _blank(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)


def _zeros(n: int) -> pa.Array:
    return pa.array([0] * n, pa.int64())


def _custom_ids_with_duplicates(keys: pa.Array, key_column: str, reject, seen: dict[str, int],
                                offset: int) -> pa.Array:
    """custom_ids for every row; rows without a key or with a repeated key get distinct ids.

    `seen` counts the keys of earlier chunks of the partition; `offset` is the chunk's first row.
    """
    filled = pc.fill_null(keys, "")
    ids = custom_ids(filled).to_pylist()
    duplicate = [False] * len(ids)
    for i, key in enumerate(filled.to_pylist()):
        if not key.strip():
            ids[i] = f"nokey-{offset + i}"
            continue
        count = seen.get(key, 0) + 1
        seen[key] = count
        if count > 1:
            duplicate[i] = True
            ids[i] = custom_id_for(f"{key}#duplicate-{count}")
    if any(duplicate):
        reject(
            pa.array(duplicate),
            "duplicate_key",
            f"column '{key_column}' repeats a key already used by an earlier row",
        )
    return pa.array(ids, pa.string())


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


def _line_encoder(spec: BatchSpec):
    """A function from a chunk's custom_ids and rendered texts (by role) to its JSONL lines.

    Every line has the same shape, so one sample line with a marker in each variable slot is
    encoded once and cut into its constant runs; a row's line is those runs with its own
    values, each encoded as a JSON string, in between: byte for byte what encoding the whole line
    dict per row gives, at a fraction of the cost. Roles whose template has no field are
    constant and baked into the runs. Rejected rows get None.
    """
    roles = list(spec.templates())
    constant = {role: _render(t, {}, 1)[0].as_py() for role, t in spec.templates().items()
                if all(f is None for _, f, _, _ in string.Formatter().parse(t))}
    tag = f"slot-{uuid.uuid4().hex}-"
    marker = "\x00" + tag
    slots = ["custom_id", *(r for r in roles if r not in constant)]
    sample = orjson.dumps(
        {"custom_id": marker + "custom_id", "method": "POST", "url": spec.endpoint,
         "body": _body_builder(spec)({r: constant.get(r, marker + r) for r in roles})},
        option=orjson.OPT_APPEND_NEWLINE,
    )
    encoded = {name: orjson.dumps(marker + name) for name in slots}
    if any(sample.count(e) != 1 for e in encoded.values()) or sample.count(tag.encode()) != len(slots):
        return lambda ids, texts, codes: _encode_lines(spec, ids, texts, codes)
    order = sorted(slots, key=lambda name: sample.index(encoded[name]))
    template, rest = b"", sample
    for name in order:
        before, rest = rest.split(encoded[name], 1)
        template += before.replace(b"%", b"%%") + b"%s"
    template += rest.replace(b"%", b"%%")

    line_format = template.decode()

    def encode(ids: list[str], texts: dict[str, list[str]], codes: list[str | None]) -> list[bytes | None]:
        values = [list(map(_json_string, ids if name == "custom_id" else texts[name])) for name in order]
        lines: list[bytes | None] = [(line_format % row).encode() for row in zip(*values)]
        for i, code in enumerate(codes):
            if code is not None:
                lines[i] = None
        return lines

    return encode


# A str as a JSON string, byte for byte what orjson writes for it (checked for every code point),
# without orjson's page-sized buffer per call: tens of thousands of small orjson outputs kept at
# once cost about 4 KB each in resident memory.
_json_string = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring


def _encode_lines(
    spec: BatchSpec,
    ids: list[str],
    texts: dict[str, list[str]],
    codes: list[str | None],
) -> list[bytes | None]:
    """One JSONL line per usable row, one line dict at a time (the reference for `_line_encoder`)."""
    body_for = _body_builder(spec)
    lines: list[bytes | None] = []
    for i, custom_id in enumerate(ids):
        if codes[i] is not None:
            lines.append(None)
            continue
        line = {"custom_id": custom_id, "method": "POST", "url": spec.endpoint,
                "body": body_for({role: t[i] for role, t in texts.items()})}
        lines.append(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
    return lines


def _body_builder(spec: BatchSpec):
    """A function from one row's rendered texts (by role) to its request body."""
    params = dict(spec.parameters)
    if spec.endpoint == "/v1/embeddings":
        return lambda t: {"model": spec.model, "input": t["user"], **params}
    schema = None
    if spec.response_model is not None:
        from batch_pipeline.response_schema import strict_json_schema

        schema = {"name": spec.response_model.__name__, "strict": True,
                  "schema": strict_json_schema(spec.response_model)}
    if spec.endpoint == "/v1/responses":
        if schema:
            params["text"] = {"format": {"type": "json_schema", **schema}}
        return lambda t: {"model": spec.model, **({"instructions": t["system"]} if "system" in t else {}),
                          "input": t["user"], **params}
    if schema:
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    return lambda t: {"model": spec.model,
                      "messages": [{"role": role, "content": text} for role, text in t.items()], **params}
