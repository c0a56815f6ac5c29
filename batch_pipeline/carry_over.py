"""Rows that already have a good answer for the same request are not sent again.

When a partition's requests are rebuilt (a rerun, a backfill that overlaps, rows changed or
added), a row whose request line is byte-for-byte the one that already got a final answer
(`succeeded` or `invalid_output`: both were paid for) keeps that answer. Only new or changed
rows, and rows whose last outcome was not final, go into the new shards.
"""

from dataclasses import dataclass
from hashlib import blake2b

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.request_lines import PENDING, PartitionRequests
from batch_pipeline.spec import BatchSpec

CARRIED = "carried"
KEPT_STATUSES = ("succeeded", "invalid_output")


@dataclass(frozen=True)
class CarryOver:
    index: pa.Table
    shards: list[bytes]
    carried: pa.Table | None  # previous result rows kept as they are


def request_hashes(shards: list[bytes]) -> dict[str, str]:
    """custom_id -> hash of its exact request line."""
    return {
        orjson.loads(line)["custom_id"]: blake2b(line, digest_size=16).hexdigest()
        for shard in shards
        for line in shard.splitlines()
        if line.strip()
    }


def carry_over(
    built: PartitionRequests, spec: BatchSpec, old_index: pa.Table | None, old_results: pa.Table | None
) -> CarryOver:
    """Drop from the new shards every request whose identical line already has a final answer."""
    hashes = request_hashes(built.shards)
    index = built.index.append_column(
        "request_sha", pa.array([hashes.get(c) for c in built.index["custom_id"].to_pylist()], pa.string())
    )
    if old_index is None or old_results is None or "request_sha" not in old_index.column_names:
        return CarryOver(index, built.shards, None)
    final = old_results.filter(pc.is_in(old_results["status"], value_set=pa.array(KEPT_STATUSES)))
    old_sha = dict(zip(old_index["custom_id"].to_pylist(), old_index["request_sha"].to_pylist()))
    keep = {
        cid for cid in final["custom_id"].to_pylist()
        if cid in hashes and old_sha.get(cid) == hashes[cid]
    }
    if not keep:
        return CarryOver(index, built.shards, None)
    lines = [
        line
        for shard in built.shards
        for line in shard.splitlines(keepends=True)
        if orjson.loads(line)["custom_id"] not in keep
    ]
    shards, shard_of = _reshard(lines, spec)
    ids = index["custom_id"].to_pylist()
    statuses = index["status"].to_pylist()
    index = index.set_column(
        index.schema.get_field_index("shard"), "shard",
        pa.array([shard_of.get(c) if s == PENDING else None for c, s in zip(ids, statuses)], pa.int32()),
    ).set_column(
        index.schema.get_field_index("status"), "status",
        pa.array([CARRIED if c in keep else s for c, s in zip(ids, statuses)], pa.string()),
    )
    carried = final.filter(pc.is_in(final["custom_id"], value_set=pa.array(sorted(keep))))
    return CarryOver(index, shards, carried)


def _reshard(lines: list[bytes], spec: BatchSpec) -> tuple[list[bytes], dict[str, int]]:
    shards: list[list[bytes]] = []
    size = 0
    shard_of: dict[str, int] = {}
    for line in lines:
        if not shards or len(shards[-1]) >= spec.max_requests_per_shard or size + len(line) > spec.max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(line)
        size += len(line)
        shard_of[orjson.loads(line)["custom_id"]] = len(shards) - 1
    return [b"".join(s) for s in shards], shard_of


def merge_carried(results: pa.Table, carried: pa.Table | None) -> pa.Table:
    """Put the carried rows' previous results in place of their `carried` placeholders."""
    if carried is None or carried.num_rows == 0:
        return results
    carried = carried.select(results.column_names).cast(results.schema)
    positions = pc.index_in(results["custom_id"], value_set=carried["custom_id"])
    is_carried = pc.is_valid(positions)
    order = pa.array(range(results.num_rows), pa.int64())
    merged = pa.concat_tables([
        results.filter(pc.invert(is_carried)).append_column("_row", order.filter(pc.invert(is_carried))),
        carried.take(positions.filter(is_carried)).append_column("_row", order.filter(is_carried)),
    ])
    return merged.sort_by("_row").drop_columns(["_row"])
