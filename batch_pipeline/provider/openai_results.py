"""OpenAI's result lines (output and error files of a batch) as neutral result rows.

The OpenAI and Azure OpenAI adapters parse with this; nothing else reads OpenAI's line shape.
Azure's quirks read as OpenAI's files do: a byte order mark before the first line is skipped,
and its batch error codes become the rows' `error_code`.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from batch_pipeline.provider.contract import RESULT_ROWS

_LINE_STATUS = {"batch_expired": "expired", "batch_cancelled": "cancelled"}

# The parts of an output or error line the harvest reads, typed as OpenAI sends them; fields
# not named here are skipped without being built.
_ERROR = "STRUCT(code VARCHAR, message VARCHAR, type VARCHAR)"
_LINE_COLUMNS = {
    "custom_id": "VARCHAR",
    "error": _ERROR,
    "response": "STRUCT(status_code BIGINT, body STRUCT(object VARCHAR, model VARCHAR, created BIGINT, "
                "choices STRUCT(message STRUCT(content VARCHAR, refusal VARCHAR), text VARCHAR)[], "
                "output STRUCT(type VARCHAR, content STRUCT(type VARCHAR, text VARCHAR, refusal VARCHAR)[])[], "
                "data STRUCT(embedding DOUBLE[], revised_prompt VARCHAR)[], results JSON, "
                "size VARCHAR, quality VARCHAR, output_format VARCHAR, "
                "usage STRUCT(prompt_tokens BIGINT, completion_tokens BIGINT, "
                "input_tokens BIGINT, output_tokens BIGINT, prompt_tokens_details STRUCT(cached_tokens BIGINT), "
                "input_tokens_details STRUCT(cached_tokens BIGINT), "
                "output_tokens_details STRUCT(image_tokens BIGINT)), "
                f"error {_ERROR}))",
}
# `_parse_each_line`'s rules, column-wise: a 2xx response without an error succeeded (unless the
# model refused); an error object says why a line failed; otherwise the body's error does, or
# the HTTP status. Chat answers come from choices[0] (a completion's from its text), Responses
# answers from their output_text parts, embeddings from data[0], moderations from results[0]
# (kept as its JSON text), images as a JSON summary without their bytes (`IMAGE_SUMMARY`; the
# bytes are read by `images_in` and land as files).
_LINE_SQL = """
WITH line AS (
    SELECT custom_id, error, response.body AS body, coalesce(response.status_code, 0) AS http,
           response IS NOT NULL AND coalesce(response.status_code, 0) BETWEEN 200 AND 299
               AND error.code IS NULL AND error.message IS NULL AS ok,
           error.code IS NOT NULL OR error.message IS NOT NULL AS has_error,
           response.body.data IS NOT NULL AND response.body.created IS NOT NULL
               AND response.body.object IS DISTINCT FROM 'list' AS is_image,
           response.body.object = 'list' OR response.body.data IS NOT NULL AS has_data,
           CASE WHEN response.body.output IS NOT NULL THEN
               flatten([coalesce(item.content, []) for item in response.body.output if item.type = 'message'])
           END AS parts
    FROM lines
), answer AS (
    SELECT *, has_data AND NOT is_image AS is_embedding,
        CASE WHEN is_image THEN json_object(
                 'images', len(body.data), 'revised_prompt', body.data[1].revised_prompt, 'size', body.size,
                 'quality', body.quality, 'output_format', body.output_format,
                 'output_image_tokens', coalesce(body.usage.output_tokens_details.image_tokens,
                                                 body.usage.output_tokens))::VARCHAR
             WHEN has_data THEN NULL
             WHEN body.choices IS NOT NULL THEN coalesce(body.choices[1].message.content, body.choices[1].text)
             WHEN body.results IS NOT NULL THEN json_extract(body.results, '$[0]')::VARCHAR
             WHEN len([p for p in parts if p.type = 'output_text']) > 0
                 THEN array_to_string([coalesce(p.text, '') for p in parts if p.type = 'output_text'], '')
        END AS text,
        CASE WHEN has_data THEN NULL
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
# A line may hold several base64 images (tens of MB), past DuckDB's default 16 MB per object.
MAX_LINE_BYTES = 1 << 30
_FILES_SQL = _LINE_SQL.replace(
    "FROM lines", f"FROM read_json($paths, format='newline_delimited', columns={_COLUMNS_LITERAL}, "
                  f"maximum_object_size={MAX_LINE_BYTES})")


@cache
def _duckdb() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process (opening one costs ~20 ms); each parse takes a cursor."""
    return duckdb.connect()


def parse_lines(sources: bytes | list[Path]) -> pa.Table:
    """Parse output or error JSONL (bytes, or local files) into one row per line (a 2xx response
    without an error object succeeded; otherwise the error object, the body's error or the HTTP
    status says why it failed).

    DuckDB reads the files against the shape of OpenAI's lines and works out every row's
    outcome column-wise, several times faster than a Python loop over orjson-parsed lines; local
    files go in one query, straight from disk. A file with a line of any other shape (a field
    of an unexpected type) is read line by line instead, so one odd line never stops a harvest.
    """
    if isinstance(sources, bytes):
        if not sources or sources.isspace():
            return RESULT_ROWS.empty_table()
        try:
            with _duckdb().cursor() as con:
                lines = con.read_json(io.BytesIO(sources), format="newline_delimited", columns=_LINE_COLUMNS,
                                      maximum_object_size=MAX_LINE_BYTES)
                parsed = lines.query("lines", _LINE_SQL)
                assert parsed is not None  # a SELECT always has a relation
                return parsed.to_arrow_table().cast(RESULT_ROWS)
        except duckdb.Error:
            return _parse_each_line(sources)
    if not sources:
        return RESULT_ROWS.empty_table()
    try:
        with _duckdb().cursor() as con:
            return con.sql(_FILES_SQL, params={"paths": [str(p) for p in sources]}).to_arrow_table().cast(RESULT_ROWS)
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
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in RESULT_ROWS]
    return pa.table([list(c) for c in columns], schema=RESULT_ROWS)


def _parse_line(line: dict) -> tuple:
    """One line's RESULT_ROWS values, by the robust rule."""
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
    for value, field in zip(row, RESULT_ROWS, strict=True):
        if value is None and field.name != "custom_id":
            continue
        if not isinstance(value, _PYTHON_TYPES[field.type.id]):
            raise TypeError(f"{field.name} is a {type(value).__name__}")
    return row


_PYTHON_TYPES = {pa.string().id: str, pa.int64().id: int, pa.list_(pa.float32()).id: list}


def _first(*values):
    return next((v for v in values if v is not None), None)


def image_summary(body: dict) -> str:
    """An images response as the row's `output`: what it says of its images, without their bytes
    (the same members, in the same order, as `_LINE_SQL` writes)."""
    data = body.get("data") or []
    usage = body.get("usage") or {}
    image_tokens = (usage.get("output_tokens_details") or {}).get("image_tokens")
    return orjson.dumps({
        "images": len(data), "revised_prompt": (data[0] if data else {}).get("revised_prompt"),
        "size": body.get("size"), "quality": body.get("quality"), "output_format": body.get("output_format"),
        "output_image_tokens": image_tokens if image_tokens is not None else usage.get("output_tokens"),
    }).decode()


def _is_image(body: dict) -> bool:
    return "data" in body and "created" in body and body.get("object") != "list"


def _answer(body: dict) -> tuple[str | None, str | None, list[float] | None]:
    """(text, refusal, embedding) from a chat or text completion, a response, an embedding,
    a moderation or an images body."""
    if _is_image(body):
        return image_summary(body), None, None
    if body.get("object") == "list" or "data" in body:
        data = body.get("data") or [{}]
        return None, None, data[0].get("embedding")
    if "choices" in body:
        choice = (body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        return message.get("content", choice.get("text")), message.get("refusal"), None
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


def parse_results(files: Sequence[bytes | Path]) -> pa.Table:
    """A batch's output and error files as `RESULT_ROWS`: local files in one DuckDB query."""
    paths = [f for f in files if isinstance(f, Path)]
    return pa.concat_tables([parse_lines(paths)] + [parse_lines(f) for f in files if isinstance(f, bytes)])
