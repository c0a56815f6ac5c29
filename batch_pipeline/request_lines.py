"""Source rows to Batch API request lines, with every unusable row kept as a rejected row.

The result is an index with one row per source row (in source order) and the request lines of
the rows that became requests, split into shards within the provider's per-file limits.
Templates are rendered column-wise with Arrow; only the final JSON encoding is per row (orjson).
"""

from __future__ import annotations

import difflib
import string
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.cost import input_tokens
from batch_pipeline.custom_ids import custom_id_for, custom_ids
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

    @property
    def requests(self) -> int:
        return self.index.num_rows - self.rejected


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


def build_requests(table: pa.Table, source: SourceTable, spec: BatchSpec) -> PartitionRequests:
    """Turn one partition's rows into request shards and a per-row index."""
    check_columns(table, source, spec)
    n = table.num_rows
    keys = table[source.key].combine_chunks().cast(pa.string())
    codes: list[str | None] = [None] * n
    messages: list[str | None] = [None] * n

    def reject(mask: pa.Array, code: str, message: str) -> None:
        for i in pc.indices_nonzero(mask).to_pylist():
            if codes[i] is None:
                codes[i], messages[i] = code, message

    reject(_blank(keys), "missing_value", f"column '{source.key}' (the row key) is empty")
    ids = _custom_ids_with_duplicates(keys, source.key, reject)

    cells = {c: table[c].combine_chunks().cast(pa.string()) for c in spec.template_columns()}
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
            longest = max(cells, key=lambda c: len(cells[c][i].as_py() or ""))
            codes[i] = "input_too_long"
            messages[i] = (
                f"prompt is {total_chars[i].as_py():,} characters, over the spec's limit of "
                f"{spec.max_prompt_chars:,}; longest input is column '{longest}' "
                f"({len(cells[longest][i].as_py()):,} characters)"
            )

    lines = _encode_lines(spec, ids, rendered, codes)
    shard_of, shards = _shard(lines, spec)
    usable = [[None if codes[i] else t for i, t in enumerate(values.to_pylist())] for values in rendered.values()]
    tokens = input_tokens(spec.model, usable, chat=spec.endpoint != "/v1/embeddings") if n else []
    index = pa.table(
        {
            source.key: keys,
            "custom_id": ids,
            "shard": pa.array(shard_of, pa.int32()),
            "status": pa.array([REJECTED if c else PENDING for c in codes], pa.string()),
            "error_code": pa.array(codes, pa.string()),
            "error_message": pa.array(messages, pa.string()),
            "estimated_input_tokens": pa.array(tokens, pa.int64()),
        }
    )
    return PartitionRequests(index=index, shards=shards)


def _blank(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)


def _zeros(n: int) -> pa.Array:
    return pa.array([0] * n, pa.int64())


def _custom_ids_with_duplicates(keys: pa.Array, key_column: str, reject) -> pa.Array:
    """custom_ids for every row; rows without a key or with a repeated key get distinct ids."""
    filled = pc.fill_null(keys, "")
    ids = custom_ids(filled).to_pylist()
    seen: dict[str, int] = {}
    duplicate = [False] * len(ids)
    for i, key in enumerate(filled.to_pylist()):
        if not key.strip():
            ids[i] = f"nokey-{i}"
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


def _encode_lines(
    spec: BatchSpec,
    ids: pa.Array,
    rendered: dict[str, pa.Array],
    codes: list[str | None],
) -> list[bytes | None]:
    """One JSONL line per usable row, with the body the spec's endpoint expects."""
    texts = {role: values.to_pylist() for role, values in rendered.items()}
    body_for = _body_builder(spec)
    lines: list[bytes | None] = []
    for i, custom_id in enumerate(ids.to_pylist()):
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


def _shard(lines: list[bytes | None], spec: BatchSpec) -> tuple[list[int | None], list[bytes]]:
    """Split lines into shards of at most max_requests_per_shard lines and max_shard_bytes bytes."""
    shard_of: list[int | None] = [None] * len(lines)
    shards: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for i, line in enumerate(lines):
        if line is None:
            continue
        if current and (len(current) >= spec.max_requests_per_shard or size + len(line) > spec.max_shard_bytes):
            shards.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
        shard_of[i] = len(shards)
    if current:
        shards.append(b"".join(current))
    return shard_of, shards
