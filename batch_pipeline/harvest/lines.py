"""A batch's result rows (parsed by the provider's adapter) to one result row per source row.

Output order is never trusted: rows are joined to the partition's request index by
`custom_id`. A request with no row takes its outcome from its batch (expired, cancelled,
failed validation), so every source row ends with exactly one status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.cost import BatchPrice
from batch_pipeline.harvest.images import image_fields, parse_images_answer
from batch_pipeline.index_status import PENDING
from batch_pipeline.provider.contract import RESULT_ROWS
from batch_pipeline.provider.openai_moderations import moderation_fields, parse_moderation
from batch_pipeline.requests.lines import HASH_TYPE
from batch_pipeline.response_schema import arrow_fields, parse_answer
from batch_pipeline.spec import IMAGES_ENDPOINT, BatchSpec
from batch_pipeline.state.retry import RETRYABLE_CODES

STATUSES = ("succeeded", "failed", "invalid_output", "rejected", "expired", "cancelled")
RESULT_UNIQUE = ("custom_id", "output")  # result columns with a value per row (and the row key)
_BATCH_STATUS = {"expired": "expired", "cancelled": "cancelled", "failed": "failed"}


@dataclass(frozen=True)
class BatchOutcome:
    """What the provider says about one batch once it is terminal."""

    batch_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None


def batch_lines(
    outcome: BatchOutcome,
    attempt: int,
    expected: pa.Array | pa.ChunkedArray | list[str],
    lines: pa.Table,
) -> pa.Table:
    """Every expected request of one batch as one result row (`RESULT_ROWS`, as the provider's
    adapter parsed its files: `lines`), tagged with batch and attempt.

    A request the batch sent back in neither file gets its status from the batch (expired,
    cancelled, failed validation, or `missing_result`), so nothing silently disappears.
    """
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
            schema=RESULT_ROWS)])
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
    image_tokens = answer_columns.get("output_image_tokens")
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
            "cost_usd": _cost(model, input_tokens, joined["cached_input_tokens"], output_tokens, prices, image_tokens),
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
    """Typed columns of the response model's fields, a moderation or an images answer, or the embedding column,
    and the statuses, codes and messages with answers that do not validate marked `invalid_output`."""
    if spec is None:
        return {}, status, code, message
    if spec.endpoint == "/v1/embeddings":
        vectors = joined["embedding"].combine_chunks()
        return {"embedding": vectors.cast(pa.list_(pa.float32(), spec.parameters["dimensions"]))}, status, code, message
    if spec.endpoint == "/v1/moderations":
        fields, parse = moderation_fields(), parse_moderation
    elif spec.endpoint == IMAGES_ENDPOINT:
        fields, parse = image_fields(), parse_images_answer
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
    output_image_tokens: pa.Array | None = None,
) -> pa.ChunkedArray:
    """Per-row cost in USD from token usage at each row's model's batch rates (the output image
    tokens of an images answer at the image rate); null when unpriced."""
    cost = pa.chunked_array([pa.nulls(len(model), pa.float64())])
    for name, price in prices.items():
        mine = pc.fill_null(pc.equal(model, name), False)
        if pc.any(mine).as_py():
            costs = price.row_costs(input_tokens, cached_tokens, output_tokens, output_image_tokens)
            cost = pc.if_else(mine, costs, cost)
    return cost


def counts_by_status(results: pa.Table) -> dict[str, int]:
    """Rows per status, every status present (zero when none), in a fixed order."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in results.group_by("status").aggregate([("status", "count")]).to_pylist():
        counts[row["status"]] = row["status_count"]
    return counts
