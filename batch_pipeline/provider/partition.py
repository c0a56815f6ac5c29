"""A partition's built shards, submitted: one batch per shard, never a second one."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from batch_pipeline.provider.gateway import BatchGateway
from batch_pipeline.provider.submission import Shard, Submitted, submit_shards
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse


def submit_partition(
    wh: Warehouse,
    gateway: BatchGateway,
    uc: UseCase,
    partition: str,
    token_limit: int | None,
    log: Callable[[str], None],
) -> Submitted:
    """Send every shard the requests asset wrote for `partition` (reusing batches that exist)."""
    folder = wh.partition_dir(uc.name, layout.REQUESTS, partition)
    tokens = _tokens_by_shard(wh.read_parquet(folder / layout.INDEX_FILE))
    shards = [
        Shard(i, wh.relative(path), path.read_bytes(), estimated_tokens=tokens.get(i, 0))
        for i, path in enumerate(sorted(folder.glob(layout.SHARD_GLOB)))
    ]
    return submit_shards(
        gateway, use_case=uc.name, partition=partition, endpoint=uc.spec.endpoint,
        model=uc.spec.model, shards=shards, token_limit=token_limit, log=log,
    )


def _tokens_by_shard(index: pa.Table) -> dict[int, int]:
    grouped = index.group_by("shard").aggregate([("estimated_input_tokens", "sum")])
    return {
        row["shard"]: row["estimated_input_tokens_sum"]
        for row in grouped.to_pylist()
        if row["shard"] is not None
    }
