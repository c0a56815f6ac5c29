"""Follow-up rounds: requests that failed for retryable reasons, queued and sent again.

A round's request lines are copied from the partition's shards into `retry-a<attempt>-*.jsonl`
files and queued with a backoff (`Queued.not_before`); the batch monitor asks for a results run
once the round is due, and that run sends it as linked follow-up batches.
"""

from __future__ import annotations

import dataclasses
import time

import pyarrow as pa

from batch_pipeline.harvest.slices import custom_ids_in
from batch_pipeline.provider.submission import Sending, Shard, submit_shards
from batch_pipeline.requests.lines import line_custom_id
from batch_pipeline.state.backoff import backoff_seconds
from batch_pipeline.state.intent import intents_of
from batch_pipeline.state.machine import (
    Admit,
    Harvested,
    ProviderReport,
    QueueRetry,
    Resubmit,
    next_action,
)
from batch_pipeline.state.partition_state import PartitionState, Queued
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse


def follow_ups(
    sending: Sending, wh: Warehouse, uc: UseCase, state: PartitionState, index: pa.Table,
    retryable: list[str], parents: set[str],
) -> PartitionState:
    """Queue retryable failures as the next round, then send every queued round that is due.

    `retryable` are the requests whose latest failure is worth another attempt, `parents` the
    batches they failed in (recorded in the follow-up batch's metadata).
    """
    waiting = frozenset(c for q in state.queued for c in custom_ids_in(wh.resolve(q.path)))
    action = next_action(state, Harvested(tuple(retryable), waiting))
    if isinstance(action, QueueRetry):
        state = queue_round(sending, wh, uc, state, index, action, sorted(parents))
    # Capacity is checked by `submit_shards` itself (it sweeps what is enqueued), so every due
    # shard is offered to it.
    action = next_action(state, ProviderReport({}, time.time()))
    if not isinstance(action, Admit | Resubmit):
        return state
    due = action.shards if isinstance(action, Admit) else action.rounds
    shards = [
        Shard(q.shard, q.path, wh.resolve(q.path).read_bytes(), q.attempt, q.estimated_tokens,
              tuple(q.parent_batch_ids))
        for q in due
    ]
    sent = submit_shards(
        sending, intents_of(wh, uc.name, state.partition), use_case=uc.name, partition=state.partition,
        encoding=sending.api.provider.encoding(uc.spec), model=uc.spec.model, shards=shards,
    )
    return dataclasses.replace(
        state,
        submissions=state.submissions + tuple(sent.submissions),
        queued=tuple(q for q in state.queued if q not in due) + tuple(sent.queued),
    )


def queue_round(
    sending: Sending,
    wh: Warehouse,
    uc: UseCase,
    state: PartitionState,
    index: pa.Table,
    action: QueueRetry,
    parents: list[str],
) -> PartitionState:
    """Write the round's request lines (copied from the shards as sent) and queue them, as many
    to a file as the provider takes."""
    spec, attempt = uc.spec, action.attempt
    per_file = sending.api.provider.encoding(spec).max_requests
    folder = wh.partition_dir(uc.name, layout.REQUESTS, state.partition)
    wanted = set(action.custom_ids)
    lines = [
        line
        for path in sorted(folder.glob(layout.SHARD_GLOB))
        for line in path.read_bytes().splitlines(keepends=True)
        if line_custom_id(line) in wanted
    ]
    tokens = dict(zip(index["custom_id"].to_pylist(), index["estimated_input_tokens"].to_pylist(), strict=True))
    not_before = time.time() + backoff_seconds(spec.retry_backoff_seconds, attempt - 1)  # attempt 2: round 1
    queued = []
    for number, start in enumerate(range(0, len(lines), per_file)):
        chunk = lines[start : start + per_file]
        path = wh.write_bytes(folder / layout.retry_file(attempt, number), b"".join(chunk))
        estimated = sum(tokens.get(line_custom_id(line), 0) for line in chunk)
        queued.append(Queued(number, attempt, wh.relative(path), len(chunk), estimated, not_before,
                             "retry", parents))
    sending.log(
        f"{uc.name} {state.partition}: {len(wanted)} requests failed for retryable reasons; attempt "
        f"{attempt} queued from {time.strftime('%H:%M:%S', time.localtime(not_before))}"
    )
    return dataclasses.replace(state, queued=state.queued + tuple(queued))
