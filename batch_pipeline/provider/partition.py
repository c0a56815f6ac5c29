"""A partition's built shards, submitted: one batch per shard, never a second one."""

from __future__ import annotations

import pyarrow as pa

from batch_pipeline.provider.contract import RequestEncoding
from batch_pipeline.provider.submission import Sending, Shard, Submitted, submit_shards
from batch_pipeline.state.intent import intents_of
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse


def submit_partition(wh: Warehouse, sending: Sending, encoding: RequestEncoding, use_case: str, partition: str,
                     model: str) -> Submitted:
    """Send every shard the requests stage wrote for `partition` (reusing batches that exist)."""
    folder = wh.partition_dir(use_case, layout.REQUESTS, partition)
    tokens = _tokens_by_shard(wh.read_parquet(folder / layout.INDEX_FILE))
    shards = [
        Shard(i, wh.relative(path), path.read_bytes(), estimated_tokens=tokens.get(i, 0))
        for i, path in enumerate(sorted(folder.glob(layout.SHARD_GLOB)))
    ]
    return submit_shards(sending, intents_of(wh, use_case, partition), use_case=use_case, partition=partition,
                         encoding=encoding, model=model, shards=shards)


def _tokens_by_shard(index: pa.Table) -> dict[int, int]:
    grouped = index.group_by("shard").aggregate([("estimated_input_tokens", "sum")])
    return {
        row["shard"]: row["estimated_input_tokens_sum"]
        for row in grouped.to_pylist()
        if row["shard"] is not None
    }
