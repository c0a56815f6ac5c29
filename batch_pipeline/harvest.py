"""Provider output and error files to one result row per source row.

Output order is never trusted: lines are joined to the partition's request index by
`custom_id`. A request with no line in either file takes its outcome from its batch (expired,
cancelled, failed validation), so every source row ends with exactly one status.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.request_lines import PENDING
from batch_pipeline.response_schema import arrow_fields, parse_answer
from batch_pipeline.spec import BatchSpec

STATUSES = ("succeeded", "failed", "invalid_output", "rejected", "expired", "cancelled")
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
        ("embedding", pa.list_(pa.float32())),
    ]
)


# Failures that another attempt can fix: rate limits, server errors, expiry, a full queue,
# a line the provider lost. Bad requests and content policy refusals are not retried.
RETRYABLE_CODES = frozenset({
    "rate_limit_exceeded", "server_error", "internal_error", "service_unavailable", "http_429",
    "http_500", "http_502", "http_503", "http_504", "batch_expired", "token_limit_exceeded",
    "missing_result",
})


@dataclass(frozen=True)
class BatchOutcome:
    """What the provider says about one batch once it is terminal."""

    batch_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None


def parse_lines(data: bytes) -> pa.Table:
    """Parse output or error JSONL into one row per line (reference §5.1's robust rule)."""
    # One pass, appending to one list per column; a chat completion's answer is read inline
    # (most lines), other bodies through `_answer`. Per line, orjson is most of the cost.
    ids, statuses, outputs, codes, messages, models, ins, outs, embeddings = [], [], [], [], [], [], [], [], []
    loads = orjson.loads
    for raw in data.splitlines():
        if not raw or raw.isspace():
            continue
        line = loads(raw)
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
            if "choices" in body and "data" not in body and body.get("object") != "list":
                answer = ((body["choices"] or [{}])[0]).get("message") or {}
                output, refusal = answer.get("content"), answer.get("refusal")
            else:
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
        ids.append(line.get("custom_id"))
        statuses.append(status)
        outputs.append(output)
        codes.append(code)
        messages.append(message)
        models.append(body.get("model"))
        ins.append(usage.get("prompt_tokens", usage.get("input_tokens")))
        outs.append(usage.get("completion_tokens", usage.get("output_tokens")))
        embeddings.append(embedding)
    return pa.table([ids, statuses, outputs, codes, messages, models, ins, outs, embeddings], schema=PARSED_SCHEMA)


def _answer(body: dict) -> tuple[str | None, str | None, list[float] | None]:
    """(text, refusal, embedding) from a chat completion, a response or an embedding body."""
    if body.get("object") == "list" or "data" in body:
        data = body.get("data") or [{}]
        return None, None, data[0].get("embedding")
    if "choices" in body:
        message = ((body.get("choices") or [{}])[0]).get("message") or {}
        return message.get("content"), message.get("refusal"), None
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
    expected: list[str],
    raw_files: list[bytes],
) -> pa.Table:
    """Every expected request of one batch as one parsed line, tagged with batch and attempt.

    A request the batch sent back in neither file gets its status from the batch (expired,
    cancelled, failed validation, or `missing_result`), so nothing silently disappears.
    """
    parsed = [parse_lines(data) for data in raw_files]
    lines = pa.concat_tables(parsed) if parsed else parse_lines(b"")
    wanted = pa.array(expected, pa.string())
    lines = lines.filter(pc.is_in(lines["custom_id"], value_set=wanted))
    missing = pc.invert(pc.is_in(wanted, value_set=lines["custom_id"].combine_chunks())).to_pylist()
    absent = [cid for cid, m in zip(expected, missing) if m]
    if absent:
        status, code, message = _missing_line(outcome)
        lines = pa.concat_tables([lines, pa.Table.from_pylist(
            [{"custom_id": cid, "status": status, "error_code": code, "error_message": message} for cid in absent],
            schema=PARSED_SCHEMA)])
    n = lines.num_rows
    return lines.append_column("batch_id", pa.array([outcome.batch_id] * n, pa.string())).append_column(
        "attempt", pa.array([attempt] * n, pa.int32()))


def assemble(
    index: pa.Table,
    key_column: str,
    lines: pa.Table,
    prices: dict[str, tuple[float, float]],
    spec: BatchSpec | None = None,
) -> pa.Table:
    """Join batch lines (from `batch_lines`, all attempts) onto the request index.

    Exactly one result row per source row, in source order. Per request, a success from any
    attempt wins (a custom_id may be in both files on some providers); otherwise the latest
    attempt's outcome stands. `attempts` counts the batches the request was sent in. With a
    response model, answers are validated into typed columns after `output` (`invalid_output`
    when they do not validate); embeddings land as a fixed-size list column `embedding`.
    """
    if lines.num_rows:
        counts = lines.group_by("custom_id").aggregate([("attempt", "count_distinct")])
        lines = lines.append_column("_rank", pc.if_else(pc.equal(lines["status"], "succeeded"), 0, 1))
        lines = lines.sort_by([("custom_id", "ascending"), ("_rank", "ascending"), ("attempt", "descending")])
        first = pc.not_equal(lines["custom_id"], pc.fill_null(_shifted(lines["custom_id"]), ""))
        lines = lines.filter(first).drop_columns(["_rank"])
        attempts = counts.take(pc.index_in(lines["custom_id"], value_set=counts["custom_id"]))["attempt_count_distinct"]
        lines = lines.append_column("attempts", attempts.cast(pa.int32()))
    else:
        lines = lines.append_column("attempts", pa.array([], pa.int32()))

    # A positional lookup rather than a hash join: Arrow joins cannot carry list columns.
    positions = pc.index_in(index["custom_id"], value_set=lines["custom_id"].combine_chunks())
    joined = lines.take(positions)
    pending = pc.equal(index["status"], PENDING)
    lost = pc.and_(pending, pc.is_null(joined["status"]))  # sent in no batch: cannot happen, never hidden
    status = pc.if_else(pending, pc.if_else(lost, "failed", joined["status"]), index["status"]).to_pylist()
    code = pc.if_else(pending, pc.if_else(lost, "not_submitted", joined["error_code"]), index["error_code"]).to_pylist()
    message = pc.if_else(
        pending,
        pc.if_else(lost, "the request was never sent in a batch", joined["error_message"]),
        index["error_message"],
    ).to_pylist()

    model = joined["model"]
    input_tokens, output_tokens = joined["input_tokens"], joined["output_tokens"]
    answer_columns = _answer_columns(joined, spec, status, code, message)
    return pa.table(
        {
            key_column: index[key_column],
            "custom_id": index["custom_id"],
            "status": pa.array(status, pa.string()),
            "output": joined["output"],
            **answer_columns,
            "error_code": pa.array(code, pa.string()),
            "error_message": pa.array(message, pa.string()),
            "attempts": pc.fill_null(joined["attempts"], 0),
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": _cost(model, input_tokens, output_tokens, prices),
            "batch_id": joined["batch_id"],
        }
    )


def retryable(results: pa.Table, max_attempts: int) -> list[str]:
    """custom_ids whose latest failure is worth another attempt and that have attempts left."""
    mask = pc.and_(
        pc.is_in(results["error_code"], value_set=pa.array(sorted(RETRYABLE_CODES))),
        pc.less(results["attempts"], max_attempts),
    )
    return results.filter(pc.fill_null(mask, False))["custom_id"].to_pylist()


def _answer_columns(
    joined: pa.Table, spec: BatchSpec | None, status: list, code: list, message: list
) -> dict[str, pa.Array]:
    """Typed columns of the response model's fields, or the embedding column; updates statuses."""
    if spec is None:
        return {}
    if spec.endpoint == "/v1/embeddings":
        vectors = joined["embedding"].combine_chunks()
        return {"embedding": vectors.cast(pa.list_(pa.float32(), spec.parameters["dimensions"]))}
    if spec.response_model is None:
        return {}
    records: list[dict] = []
    for i, text in enumerate(joined["output"].to_pylist()):
        values = None
        if status[i] == "succeeded":
            values, reason = parse_answer(spec.response_model, text)
            if values is None:
                status[i], code[i], message[i] = "invalid_output", "invalid_output", reason
        records.append(values or {})
    typed = pa.Table.from_pylist(records, schema=pa.schema(arrow_fields(spec.response_model)))
    return {name: typed[name] for name in typed.column_names}


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
        return status, f"batch_{outcome.status}", f"batch {outcome.batch_id} was {outcome.status} before this request ran"
    return "failed", "missing_result", f"batch {outcome.batch_id} completed without a line for this request"


def _cost(
    model: pa.ChunkedArray,
    input_tokens: pa.ChunkedArray,
    output_tokens: pa.ChunkedArray,
    prices: dict[str, tuple[float, float]],
) -> pa.Array:
    """Per-row cost in USD from token usage and per-token batch prices; null when unpriced."""
    names = pa.array(list(prices), pa.string())
    position = pc.index_in(model, value_set=names)
    per_input = pa.array([p[0] for p in prices.values()], pa.float64()).take(position)
    per_output = pa.array([p[1] for p in prices.values()], pa.float64()).take(position)
    return pc.add(
        pc.multiply(pc.cast(input_tokens, pa.float64()), per_input),
        pc.multiply(pc.cast(pc.fill_null(output_tokens, 0), pa.float64()), per_output),
    )


def counts_by_status(results: pa.Table) -> dict[str, int]:
    """Rows per status, every status present (zero when none), in a fixed order."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in results.group_by("status").aggregate([("status", "count")]).to_pylist():
        counts[row["status"]] = row["status_count"]
    return counts
