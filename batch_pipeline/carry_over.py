"""Rows that already have a good answer for the same request are not sent again.

When a partition's requests are rebuilt (a rerun, a backfill that overlaps, rows changed or
added), a row whose request line is byte-for-byte the one that already got a final answer
(`succeeded` or `invalid_output`: both were paid for) keeps that answer. Only new or changed
rows, and rows whose last outcome was not final, go into the new shards. Works one shard at a
time, beside `request_lines.stream_requests`.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import blake2b

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_pipeline.request_lines import PENDING, line_custom_id

CARRIED = "carried"
KEPT_STATUSES = ("succeeded", "invalid_output")
def _digest(line: bytes) -> str:
    return blake2b(line, digest_size=16).hexdigest()


@dataclass(frozen=True)
class PreviousAnswers:
    """custom_id -> request hash of every row whose last harvest gave it a final answer."""

    hashes: dict[str, str]

    @classmethod
    def load(cls, old_index: pa.Table | None, old_results: pa.Table | None) -> "PreviousAnswers":
        """From the previous request index and results (only their id, hash and status columns)."""
        if old_index is None or old_results is None or "request_sha" not in old_index.column_names:
            return cls({})
        final = old_results.filter(pc.is_in(old_results["status"], value_set=pa.array(KEPT_STATUSES)))
        kept = old_index.filter(pc.is_in(old_index["custom_id"], value_set=final["custom_id"]))
        return cls(dict(zip(kept["custom_id"].to_pylist(), kept["request_sha"].to_pylist())))

    def apply(self, index: pa.Table, shard: bytes | None) -> tuple[pa.Table, bytes | None, list[str]]:
        """One streamed shard without the lines that keep their answer.

        Returns the index chunk with `request_sha` added and kept rows marked `carried`, the
        shard's remaining bytes (None when nothing is left to send) and the kept custom_ids.
        """
        lines = shard.splitlines(keepends=True) if shard else []
        hashes = {line_custom_id(line): _digest(line) for line in lines}
        keep = {c for c, h in hashes.items() if self.hashes.get(c) == h}
        ids = index["custom_id"].to_pylist()
        index = index.append_column("request_sha", pa.array([hashes.get(c) for c in ids], pa.string()))
        if keep:
            mask = pa.array([c in keep for c in ids])
            index = index.set_column(
                index.schema.get_field_index("status"), "status", pc.if_else(mask, CARRIED, index["status"])
            ).set_column(
                index.schema.get_field_index("shard"), "shard",
                pc.if_else(mask, pa.scalar(None, pa.int32()), index["shard"]),
            )
            lines = [line for line in lines if line_custom_id(line) not in keep]
        return index, (b"".join(lines) if lines else None), sorted(keep)


def carried_rows(old_results: pq.ParquetFile, kept: list[str]) -> Iterator[pa.Table]:
    """The previous result rows of the kept requests, one row group at a time."""
    wanted = pa.array(kept, pa.string())
    for group in range(old_results.num_row_groups):
        table = old_results.read_row_group(group)
        yield table.filter(pc.is_in(table["custom_id"], value_set=wanted))


def renumber(index: pa.Table, shard: int) -> pa.Table:
    """Point the chunk's pending rows at the shard file they were written to."""
    pending = pc.equal(index["status"], PENDING)
    return index.set_column(
        index.schema.get_field_index("shard"), "shard",
        pc.if_else(pending, pa.scalar(shard, pa.int32()), pa.scalar(None, pa.int32())),
    )


def merge_carried(results: pa.Table, carried: pa.Table | None) -> pa.Table:
    """Put the carried rows' previous results in place of their `carried` placeholders."""
    if carried is None or carried.num_rows == 0:
        return results
    carried = carried.select(results.column_names).cast(results.schema)
    positions = pc.index_in(results["custom_id"], value_set=carried["custom_id"])
    is_carried = pc.is_valid(positions)
    if not pc.any(is_carried).as_py():
        return results
    order = pa.array(range(results.num_rows), pa.int64())
    merged = pa.concat_tables([
        results.filter(pc.invert(is_carried)).append_column("_row", order.filter(pc.invert(is_carried))),
        carried.take(positions.filter(is_carried)).append_column("_row", order.filter(is_carried)),
    ])
    return merged.sort_by("_row").drop_columns(["_row"])
