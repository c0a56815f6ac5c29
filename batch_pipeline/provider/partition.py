"""A partition's built shards, submitted: one batch per shard, never a second one."""

from __future__ import annotations

import pyarrow as pa

from batch_pipeline.provider.contract import line_form
from batch_pipeline.provider.submission import Sending, Shard, Submitted, submit_shards
from batch_pipeline.state.intent import intents_of
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


def _tokens_by_shard(index: pa.Table) -> dict[int, int]:
    grouped = index.group_by("shard").aggregate([("estimated_input_tokens", "sum")])
    return {
        row["shard"]: row["estimated_input_tokens_sum"]
        for row in grouped.to_pylist()
        if row["shard"] is not None
    }
