"""A partition's built shards, submitted: one batch per shard, never a second one."""

from __future__ import annotations

import pyarrow as pa

from batch_pipeline.provider.contract import line_form
from batch_pipeline.provider.submission import Sending, Shard, Submitted, submit_shards
from batch_pipeline.requests.partition import as_sent, carried_batch_ids
from batch_pipeline.state.intent import intents_of
from batch_pipeline.state.partition_state import PartitionState
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse


def submit_partition(wh: Warehouse, sending: Sending, uc: UseCase, partition: str) -> Submitted:
    """Send every shard the requests asset wrote for `partition` (reusing batches that exist)."""
    folder = wh.partition_dir(uc.name, layout.REQUESTS, partition)
    tokens = _tokens_by_shard(wh.read_parquet(folder / layout.INDEX_FILE))
    shards = [
        Shard(i, wh.relative(path), path.read_bytes(), estimated_tokens=tokens.get(i, 0))
        for i, path in enumerate(sorted(folder.glob(layout.SHARD_GLOB)))
    ]
    return submit_shards(
        sending, intents_of(wh, uc.name, partition), use_case=uc.name, partition=partition,
        form=line_form(uc.spec, sending.provider), model=uc.spec.model, shards=shards,
    )


def submitted_state(wh: Warehouse, uc: UseCase, partition: str, previous: PartitionState | None,
                    sent: Submitted) -> PartitionState:
    """The partition's state after a submission: the batches sent or reused, the shards held
    back, and the earlier batches whose answers the build kept (found in `previous`), so the
    state names every batch behind the partition's answers, even when nothing was sent."""
    kept = previous.keeping(carried_batch_ids(wh, uc, partition)) if previous is not None else ()
    return PartitionState(uc.name, partition, tuple(sent.submissions), tuple(sent.queued),
                          kept=tuple(as_sent(wh, uc, partition, s) for s in kept))


def _tokens_by_shard(index: pa.Table) -> dict[int, int]:
    grouped = index.group_by("shard").aggregate([("estimated_input_tokens", "sum")])
    return {
        row["shard"]: row["estimated_input_tokens_sum"]
        for row in grouped.to_pylist()
        if row["shard"] is not None
    }
