"""Provider output and error files to one result row per source row.

Output order is never trusted: lines are joined to the partition's request index by
`custom_id`. A request with no line in either file takes its outcome from its batch (expired,
cancelled, failed validation), so every source row ends with exactly one status.

Azure OpenAI's quirks (reference §8) read as OpenAI's files do: the empty error file of a clean
batch is no lines, a file id of `""` is no file (`slices.harvest_batch`), a byte order mark
before the first line is skipped, and its batch error codes (`url_mismatch`, `model_mismatch`,
`too_many_tasks`, ...) become the rows' `error_code`.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.cost import BatchPrice
from batch_pipeline.requests.lines import HASH_TYPE, PENDING
from batch_pipeline.response_schema import (
    arrow_fields,
    moderation_fields,
    parse_answer,
    parse_moderation,
)
from batch_pipeline.spec import BatchSpec
from batch_pipeline.state.retry import RETRYABLE_CODES

STATUSES = ("succeeded", "failed", "invalid_output", "rejected", "expired", "cancelled")
RESULT_UNIQUE = ("custom_id", "output")  # result columns with a value per row (and the row key)
_LINE_STATUS = {"batch_expired": "expired", "batch_cancelled": "cancelled"}
_BATCH_STATUS = {"expired": "expired", "cancelled": "cancelled", "failed": "failed"}

PARSED_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("status", pa.string()),
        ("output", pa.string()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("model", pa.string()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("cached_input_tokens", pa.int64()),
        ("embedding", pa.list_(pa.float32())),
    ]
)


@dataclass(frozen=True)
class BatchOutcome:
    """What the provider says about one batch once it is terminal."""

    batch_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None


# The parts of an output or error line the harvest reads, typed as OpenAI sends them; fields
# not named here are skipped without being built.
_ERROR = "STRUCT(code VARCHAR, message VARCHAR, type VARCHAR)"
_LINE_COLUMNS = {
    "custom_id": "VARCHAR",
    "error": _ERROR,
    "response": "STRUCT(status_code BIGINT, body STRUCT(object VARCHAR, model VARCHAR, "
                "choices STRUCT(message STRUCT(content VARCHAR, refusal VARCHAR))[], "
                "output STRUCT(type VARCHAR, content STRUCT(type VARCHAR, text VARCHAR, refusal VARCHAR)[])[], "
                "data STRUCT(embedding DOUBLE[])[], results JSON, "
                "usage STRUCT(prompt_tokens BIGINT, completion_tokens BIGINT, "
                "input_tokens BIGINT, output_tokens BIGINT, prompt_tokens_details STRUCT(cached_tokens BIGINT), "
                "input_tokens_details STRUCT(cached_tokens BIGINT)), "
                f"error {_ERROR}))",
}
# `_parse_each_line`'s rules, column-wise: a 2xx response without an error succeeded (unless the
# model refused); an error object says why a line failed; otherwise the body's error does, or
# the HTTP status. Chat answers come from choices[0], Responses answers from their output_text
# parts, embeddings from data[0], moderations from results[0] (kept as its JSON text).
_LINE_SQL = """
WITH line AS (
    SELECT custom_id, error, response.body AS body, coalesce(response.status_code, 0) AS http,
           response IS NOT NULL AND coalesce(response.status_code, 0) BETWEEN 200 AND 299
               AND error.code IS NULL AND error.message IS NULL AS ok,
           error.code IS NOT NULL OR error.message IS NOT NULL AS has_error,
           response.body.object = 'list' OR response.body.data IS NOT NULL AS is_embedding,
           CASE WHEN response.body.output IS NOT NULL THEN
               flatten([coalesce(item.content, []) for item in response.body.output if item.type = 'message'])
           END AS parts
    FROM lines
), answer AS (
    SELECT *,
        CASE WHEN is_embedding THEN NULL
             WHEN body.choices IS NOT NULL THEN body.choices[1].message.content
             WHEN body.results IS NOT NULL THEN json_extract(body.results, '$[0]')::VARCHAR
             WHEN len([p for p in parts if p.type = 'output_text']) > 0
                 THEN array_to_string([coalesce(p.text, '') for p in parts if p.type = 'output_text'], '')
        END AS text,
        CASE WHEN is_embedding THEN NULL
             WHEN body.choices IS NOT NULL THEN body.choices[1].message.refusal
             ELSE [p.refusal for p in parts if p.type = 'refusal'][-1]
        END AS refusal
    FROM line
)
SELECT
    custom_id,
    CASE WHEN ok THEN (CASE WHEN refusal IS NOT NULL THEN 'invalid_output' ELSE 'succeeded' END)
         WHEN has_error THEN (CASE error.code WHEN 'batch_expired' THEN 'expired'
                                              WHEN 'batch_cancelled' THEN 'cancelled' ELSE 'failed' END)
         ELSE 'failed' END AS status,
    CASE WHEN ok THEN text END AS output,
    CASE WHEN ok THEN (CASE WHEN refusal IS NOT NULL THEN 'refusal' END)
         WHEN has_error THEN error.code
         ELSE coalesce(nullif(body.error.code, ''), nullif(body.error.type, ''), 'http_' || http) END AS error_code,
    CASE WHEN ok THEN refusal
         WHEN has_error THEN error.message
         ELSE coalesce(nullif(body.error.message, ''), 'request failed with HTTP ' || http) END AS error_message,
    body.model AS model,
    coalesce(body.usage.prompt_tokens, body.usage.input_tokens) AS input_tokens,
    coalesce(body.usage.completion_tokens, body.usage.output_tokens) AS output_tokens,
    coalesce(body.usage.prompt_tokens_details.cached_tokens, body.usage.input_tokens_details.cached_tokens)
        AS cached_input_tokens,
    CASE WHEN ok AND is_embedding THEN body.data[1].embedding::FLOAT[] END AS embedding
FROM answer
"""
# The same over local files, read by DuckDB itself: one query for a batch's output and error files.
_COLUMNS_LITERAL = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in _LINE_COLUMNS.items()) + "}"
_FILES_SQL = _LINE_SQL.replace(
    "FROM lines", f"FROM read_json($paths, format='newline_delimited', columns={_COLUMNS_LITERAL})")


@cache
def _duckdb() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process (opening one costs ~20 ms); each parse takes a cursor."""
    return duckdb.connect()


def parse_lines(sources: bytes | list[Path]) -> pa.Table:
    """Parse output or error JSONL (bytes, or local files) into one row per line (reference
    §5.1's robust rule).

    DuckDB reads the files against the shape of OpenAI's lines and works out every row's
    outcome column-wise, several times faster than a Python loop over orjson-parsed lines; local
    files go in one query, straight from disk. A file with a line of any other shape (a field
    of an unexpected type) is read line by line instead, so one odd line never stops a harvest.
    """
    if isinstance(sources, bytes):
        if not sources or sources.isspace():
            return PARSED_SCHEMA.empty_table()
        try:
            with _duckdb().cursor() as con:
                lines = con.read_json(io.BytesIO(sources), format="newline_delimited", columns=_LINE_COLUMNS)
                parsed = lines.query("lines", _LINE_SQL)
                assert parsed is not None  # a SELECT always has a relation
                return parsed.to_arrow_table().cast(PARSED_SCHEMA)
        except duckdb.Error:
            return _parse_each_line(sources)
    if not sources:
        return PARSED_SCHEMA.empty_table()
    try:
        with _duckdb().cursor() as con:
            return con.sql(_FILES_SQL, params={"paths": [str(p) for p in sources]}).to_arrow_table().cast(PARSED_SCHEMA)
    except duckdb.Error:
        return pa.concat_tables([_parse_each_line(path.read_bytes()) for path in sources])


def _parse_each_line(data: bytes) -> pa.Table:
    """`parse_lines` one line at a time with orjson, for files DuckDB cannot type.

    A line that is not a JSON object of the expected shape fails as `malformed_line`, naming its
    line number; its request keeps its custom_id when the line has one.
    """
    rows = []
    for number, raw in enumerate(data.removeprefix(codecs.BOM_UTF8).splitlines(), 1):
        if not raw or raw.isspace():
            continue
        line = None
        try:
            line = orjson.loads(raw)
            rows.append(_parse_line(line))
        except (orjson.JSONDecodeError, AttributeError, TypeError, IndexError, KeyError) as exc:
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            why = f"line {number} of the provider's file has an unexpected shape ({type(exc).__name__}: {exc})"
            rows.append((custom_id if isinstance(custom_id, str) else None, "failed", None, "malformed_line",
                         why, None, None, None, None, None))
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in PARSED_SCHEMA]
    return pa.table([list(c) for c in columns], schema=PARSED_SCHEMA)


def _parse_line(line: dict) -> tuple:
    """One line's PARSED_SCHEMA values, by the robust rule."""
    response = line.get("response") or None
    error = line.get("error") or None
    if error is not None and error.get("code") is None and error.get("message") is None:
        error = None  # an error object with nothing in it is no error
    if response is not None:
        body = response.get("body") or {}
        status_code = response.get("status_code") or 0
    else:
        body, status_code = {}, 0
    output = code = message = embedding = None
    if response is not None and 200 <= status_code < 300 and error is None:
        status = "succeeded"
        output, refusal, embedding = _answer(body)
        if refusal is not None:
            status, code, message = "invalid_output", "refusal", refusal
    elif error is not None:
        code, message = error.get("code"), error.get("message")
        status = _LINE_STATUS.get(code or "", "failed")
    else:
        body_error = body.get("error") or {}
        code = body_error.get("code") or body_error.get("type") or f"http_{status_code}"
        message = body_error.get("message") or f"request failed with HTTP {status_code}"
        status = "failed"
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    row = (line.get("custom_id"), status, output, code, message, body.get("model"),
           _first(usage.get("prompt_tokens"), usage.get("input_tokens")),
           _first(usage.get("completion_tokens"), usage.get("output_tokens")), details.get("cached_tokens"), embedding)
    for value, field in zip(row, PARSED_SCHEMA, strict=True):
        if value is None and field.name != "custom_id":
            continue
        if not isinstance(value, _PYTHON_TYPES[field.type.id]):
            raise TypeError(f"{field.name} is a {type(value).__name__}")
    return row


_PYTHON_TYPES = {pa.string().id: str, pa.int64().id: int, pa.list_(pa.float32()).id: list}


def _first(*values):
    return next((v for v in values if v is not None), None)


def _answer(body: dict) -> tuple[str | None, str | None, list[float] | None]:
    """(text, refusal, embedding) from a chat completion, a response or an embedding body."""
    if body.get("object") == "list" or "data" in body:
        data = body.get("data") or [{}]
        return None, None, data[0].get("embedding")
    if "choices" in body:
        message = ((body.get("choices") or [{}])[0]).get("message") or {}
        return message.get("content"), message.get("refusal"), None
    if "results" in body:  # a moderation: its first result, as JSON text
        results = body.get("results") or [None]
        return (orjson.dumps(results[0]).decode() if results[0] is not None else None), None, None
    texts, refusal = [], None
    for item in body.get("output") or []:
        for part in item.get("content") or [] if item.get("type") == "message" else []:
            if part.get("type") == "output_text":
                texts.append(part.get("text") or "")
            elif part.get("type") == "refusal":
                refusal = part.get("refusal")
    return ("".join(texts) if texts else None), refusal, None


def batch_lines(
    outcome: BatchOutcome,
    attempt: int,
    expected: pa.Array | pa.ChunkedArray | list[str],
    raw_files: list[bytes | Path],
) -> pa.Table:
    """Every expected request of one batch as one parsed line, tagged with batch and attempt.

    A request the batch sent back in neither file gets its status from the batch (expired,
    cancelled, failed validation, or `missing_result`), so nothing silently disappears.
    """
    files = [f for f in raw_files if isinstance(f, Path)]
    parsed = [parse_lines(files)] + [parse_lines(data) for data in raw_files if isinstance(data, bytes)]
    lines = pa.concat_tables(parsed)
    if isinstance(expected, pa.ChunkedArray):
        expected = expected.combine_chunks()
    wanted = expected if isinstance(expected, pa.Array) else pa.array(expected, pa.string())
    known = pc.is_in(lines["custom_id"], value_set=wanted)
    if not pc.all(known).as_py():
        lines = lines.filter(known)
    missing = pc.invert(pc.is_in(wanted, value_set=lines["custom_id"].combine_chunks()))
    if pc.any(missing).as_py():
        status, code, message = _missing_line(outcome)
        lines = pa.concat_tables([lines, pa.Table.from_pylist(
            [{"custom_id": cid, "status": status, "error_code": code, "error_message": message}
             for cid in wanted.filter(missing).to_pylist()],
            schema=PARSED_SCHEMA)])
    n = lines.num_rows
    return lines.append_column("batch_id", pa.array([outcome.batch_id] * n, pa.string())).append_column(
        "attempt", pa.array([attempt] * n, pa.int32()))


def assemble(
    index: pa.Table,
    key_columns: Sequence[str],
    lines: pa.Table,
    prices: dict[str, BatchPrice],
    spec: BatchSpec | None = None,
) -> pa.Table:
    """Join batch lines (from `batch_lines`, all attempts) onto the request index.

    Exactly one result row per source row, in source order. Per request, a success from any
    attempt wins (a custom_id may be in both files on some providers); otherwise the latest
    attempt's outcome stands. `attempts` counts the batches the request was sent in. With a
    response model, answers are validated into typed columns after `output` (`invalid_output`
    when they do not validate); embeddings land as a fixed-size list column `embedding`.
    """
    if lines.num_rows and pc.count_distinct(lines["custom_id"]).as_py() < lines.num_rows:
        counts = lines.group_by("custom_id").aggregate([("attempt", "count_distinct")])
        lines = lines.append_column("_rank", pc.if_else(pc.equal(lines["status"], "succeeded"), 0, 1))
        lines = lines.sort_by([("custom_id", "ascending"), ("_rank", "ascending"), ("attempt", "descending")])
        first = pc.not_equal(lines["custom_id"], pc.fill_null(_shifted(lines["custom_id"]), ""))
        lines = lines.filter(first).drop_columns(["_rank"])
        attempts = counts.take(pc.index_in(lines["custom_id"], value_set=counts["custom_id"]))["attempt_count_distinct"]
        lines = lines.append_column("attempts", attempts.cast(pa.int32()))
    else:  # one line per request, the usual case: nothing to choose between
        lines = lines.append_column("attempts", pa.array([1] * lines.num_rows, pa.int32()))

    # A positional lookup rather than a hash join: Arrow joins cannot carry list columns.
    lines = lines.combine_chunks()
    positions = pc.index_in(index["custom_id"], value_set=lines["custom_id"])
    joined = lines.take(positions)
    pending = pc.equal(index["status"], PENDING)
    lost = pc.and_(pending, pc.is_null(joined["status"]))  # sent in no batch: cannot happen, never hidden
    status = pc.if_else(pending, pc.if_else(lost, "failed", joined["status"]), index["status"])
    code = pc.if_else(pending, pc.if_else(lost, "not_submitted", joined["error_code"]), index["error_code"])
    message = pc.if_else(
        pending,
        pc.if_else(lost, "the request was never sent in a batch", joined["error_message"]),
        index["error_message"],
    )

    model = joined["model"]
    input_tokens, output_tokens = joined["input_tokens"], joined["output_tokens"]
    answer_columns, status, code, message = _answer_columns(joined, spec, status, code, message)
    return pa.table(
        {
            **{k: index[k] for k in key_columns},
            "custom_id": index["custom_id"],
            "status": status,
            "output": joined["output"],
            **answer_columns,
            "error_code": code,
            "error_message": message,
            "attempts": pc.fill_null(joined["attempts"], 0),
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": _cost(model, input_tokens, joined["cached_input_tokens"], output_tokens, prices),
            "batch_id": joined["batch_id"],
            # which request this answer is for: a rebuild keeps an answer only for that request
            "request_hash": (index["request_hash"] if "request_hash" in index.column_names
                             else pa.nulls(index.num_rows, HASH_TYPE)),
        }
    )


def retryable(results: pa.Table, max_attempts: int) -> list[str]:
    """custom_ids whose latest failure is worth another attempt and that have attempts left: the
    rule of `state.retry.retryable`, over a whole table at once."""
    mask = pc.and_(
        pc.is_in(results["error_code"], value_set=pa.array(sorted(RETRYABLE_CODES))),
        pc.less(results["attempts"], max_attempts),
    )
    return results.filter(pc.fill_null(mask, False))["custom_id"].to_pylist()


def _answer_columns(
    joined: pa.Table, spec: BatchSpec | None, status: pa.Array, code: pa.Array, message: pa.Array
) -> tuple[dict[str, pa.Array], pa.Array, pa.Array, pa.Array]:
    """Typed columns of the response model's fields or of a moderation, or the embedding column,
    and the statuses, codes and messages with answers that do not validate marked `invalid_output`."""
    if spec is None:
        return {}, status, code, message
    if spec.endpoint == "/v1/embeddings":
        vectors = joined["embedding"].combine_chunks()
        return {"embedding": vectors.cast(pa.list_(pa.float32(), spec.parameters["dimensions"]))}, status, code, message
    if spec.endpoint == "/v1/moderations":
        fields, parse = moderation_fields(), parse_moderation
    elif spec.response_model is not None:
        model = spec.response_model
        fields, parse = arrow_fields(model), lambda text: parse_answer(model, text)
    else:
        return {}, status, code, message
    status, code, message = status.to_pylist(), code.to_pylist(), message.to_pylist()
    records: list[dict] = []
    for i, text in enumerate(joined["output"].to_pylist()):
        values = None
        if status[i] == "succeeded":
            values, reason = parse(text)
            if values is None:
                status[i], code[i], message[i] = "invalid_output", "invalid_output", reason
        records.append(values or {})
    typed = pa.Table.from_pylist(records, schema=pa.schema(fields))
    return ({name: typed[name] for name in typed.column_names}, pa.array(status, pa.string()),
            pa.array(code, pa.string()), pa.array(message, pa.string()))


def _shifted(values: pa.ChunkedArray) -> pa.Array:
    """values shifted down by one (null first), to find the first row of each run."""
    flat = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pa.concat_arrays([pa.nulls(1, flat.type), flat.slice(0, max(len(flat) - 1, 0))])[: len(flat)]


def _missing_line(outcome: BatchOutcome) -> tuple[str, str | None, str | None]:
    """Status of a request whose line is in neither file, from its batch's outcome."""
    status = _BATCH_STATUS.get(outcome.status)
    if outcome.status == "failed":
        return "failed", outcome.error_code or "batch_failed", outcome.error_message or (
            f"batch {outcome.batch_id} failed"
        )
    if status:
        message = f"batch {outcome.batch_id} was {outcome.status} before this request ran"
        return status, f"batch_{outcome.status}", message
    return "failed", "missing_result", f"batch {outcome.batch_id} completed without a line for this request"


def _cost(
    model: pa.ChunkedArray,
    input_tokens: pa.ChunkedArray,
    cached_tokens: pa.ChunkedArray,
    output_tokens: pa.ChunkedArray,
    prices: dict[str, BatchPrice],
) -> pa.ChunkedArray:
    """Per-row cost in USD from token usage at each row's model's batch rates; null when unpriced."""
    cost = pa.chunked_array([pa.nulls(len(model), pa.float64())])
    for name, price in prices.items():
        mine = pc.fill_null(pc.equal(model, name), False)
        if pc.any(mine).as_py():
            cost = pc.if_else(mine, price.row_costs(input_tokens, cached_tokens, output_tokens), cost)
    return cost


def counts_by_status(results: pa.Table) -> dict[str, int]:
    """Rows per status, every status present (zero when none), in a fixed order."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in results.group_by("status").aggregate([("status", "count")]).to_pylist():
        counts[row["status"]] = row["status_count"]
    return counts
