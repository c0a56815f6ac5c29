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


@dataclass(frozen=True)
class BatchOutcome:
    """What the provider says about one shard's batch once it is terminal."""

    shard: int
    batch_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None


def parse_lines(data: bytes) -> pa.Table:
    """Parse output or error JSONL into one row per line (reference §5.1's robust rule)."""
    cols: dict[str, list] = {name: [] for name in PARSED_SCHEMA.names}
    for raw in data.splitlines():
        if not raw.strip():
            continue
        line = orjson.loads(raw)
        response = line.get("response") or None
        error = line.get("error") or None
        body = (response or {}).get("body") or {}
        status_code = (response or {}).get("status_code") or 0
        usage = body.get("usage") or {}
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
        cols["custom_id"].append(line.get("custom_id"))
        cols["status"].append(status)
        cols["output"].append(output)
        cols["error_code"].append(code)
        cols["error_message"].append(message)
        cols["model"].append(body.get("model"))
        cols["input_tokens"].append(usage.get("prompt_tokens", usage.get("input_tokens")))
        cols["output_tokens"].append(usage.get("completion_tokens", usage.get("output_tokens")))
        cols["embedding"].append(embedding)
    return pa.table(cols, schema=PARSED_SCHEMA)


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


def assemble(
    index: pa.Table,
    key_column: str,
    parsed: pa.Table,
    outcomes: list[BatchOutcome],
    prices: dict[str, tuple[float, float]],
    spec: BatchSpec | None = None,
) -> pa.Table:
    """Join parsed lines onto the request index: exactly one result row per source row.

    With a spec that has a response model, each answer is validated and its fields land as
    typed columns after `output`; an answer that does not validate becomes `invalid_output`.
    Embeddings land as a fixed-size list column `embedding`.
    """
    # A custom_id may appear in both files on some providers; a success wins over a failure.
    parsed = parsed.append_column(
        "_rank", pc.if_else(pc.equal(parsed["status"], "succeeded"), 0, 1)
    ).sort_by([("custom_id", "ascending"), ("_rank", "ascending")])
    first = pc.not_equal(parsed["custom_id"], pc.fill_null(_shifted(parsed["custom_id"]), ""))
    parsed = parsed.filter(first).drop_columns(["_rank"])

    by_shard = {o.shard: o for o in outcomes}
    shard_ids = index["shard"].to_pylist()
    batch_ids = [by_shard[s].batch_id if s is not None and s in by_shard else None for s in shard_ids]

    # A positional lookup rather than a hash join: Arrow joins cannot carry list columns.
    positions = pc.index_in(index["custom_id"], value_set=parsed["custom_id"].combine_chunks())
    joined = parsed.take(positions)
    for name in (key_column, "custom_id", "shard"):
        joined = joined.drop_columns([name]) if name in joined.column_names else joined
    joined = joined.append_column(key_column, index[key_column]).append_column(
        "custom_id", index["custom_id"]).append_column("shard", index["shard"]).append_column(
        "batch_id", pa.array(batch_ids, pa.string()))
    for name in ("status", "error_code", "error_message"):
        joined = joined.append_column(f"_index_{name}", index[name])

    status = joined["status"].to_pylist()
    code = joined["error_code"].to_pylist()
    message = joined["error_message"].to_pylist()
    for i, (index_status, shard) in enumerate(
        zip(joined["_index_status"].to_pylist(), joined["shard"].to_pylist())
    ):
        if index_status != PENDING:
            status[i] = index_status
            code[i] = joined["_index_error_code"][i].as_py()
            message[i] = joined["_index_error_message"][i].as_py()
        elif status[i] is None:
            outcome = by_shard.get(shard)
            status[i], code[i], message[i] = _missing_line(outcome)

    model = joined["model"]
    input_tokens, output_tokens = joined["input_tokens"], joined["output_tokens"]
    answer_columns = _answer_columns(joined, spec, status, code, message)
    return pa.table(
        {
            key_column: joined[key_column],
            "custom_id": joined["custom_id"],
            "status": pa.array(status, pa.string()),
            "output": joined["output"],
            **answer_columns,
            "error_code": pa.array(code, pa.string()),
            "error_message": pa.array(message, pa.string()),
            "attempts": pc.if_else(pc.equal(joined["_index_status"], PENDING), 1, 0).cast(pa.int32()),
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": _cost(model, input_tokens, output_tokens, prices),
            "batch_id": joined["batch_id"],
        }
    )


def _answer_columns(
    joined: pa.Table, spec: BatchSpec | None, status: list, code: list, message: list
) -> dict[str, pa.Array]:
    """Typed columns of the response model's fields, or the embedding column; updates statuses."""
    if spec is None:
        return {}
    if spec.endpoint == "/v1/embeddings":
        vectors = joined["embedding"].combine_chunks()
        dims = spec.parameters.get("dimensions") or max((len(v) for v in vectors.to_pylist() if v), default=0)
        if dims == 0:
            return {"embedding": pa.nulls(len(vectors), pa.list_(pa.float32(), 1))}
        return {"embedding": vectors.cast(pa.list_(pa.float32(), dims))}
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


def _missing_line(outcome: BatchOutcome | None) -> tuple[str, str | None, str | None]:
    """Status of a request whose line is in neither file, from its batch's outcome."""
    if outcome is None:
        return "failed", "not_submitted", "the request's shard has no batch"
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
    models = model.to_pylist()
    ins, outs = input_tokens.to_pylist(), output_tokens.to_pylist()
    cost: list[float | None] = []
    for m, i, o in zip(models, ins, outs):
        price = prices.get(m) if m else None
        cost.append(None if price is None or i is None else i * price[0] + (o or 0) * price[1])
    return pa.array(cost, pa.float64())


def counts_by_status(results: pa.Table) -> dict[str, int]:
    """Rows per status, every status present (zero when none), in a fixed order."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in results.group_by("status").aggregate([("status", "count")]).to_pylist():
        counts[row["status"]] = row["status_count"]
    return counts
