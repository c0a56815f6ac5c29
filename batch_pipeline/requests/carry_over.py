"""Rows that already have a good answer for the same request are not sent again.

When a partition's requests are rebuilt (a rerun, a backfill that overlaps, rows changed or
added), a row whose request line is byte-for-byte the one that already got a final answer
(`succeeded` or `invalid_output`: both were paid for) keeps that answer. Only new or changed
rows, and rows whose last outcome was not final, go into the new shards. Works one shard at a
time, beside `request_lines.stream_requests`.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_pipeline.index_status import CARRIED, PENDING
from batch_pipeline.requests.lines import HASH_TYPE

KEPT_STATUSES = ("succeeded", "invalid_output")


@dataclass(frozen=True)
class PreviousAnswers:
    """`custom_id` and `request_hash` of every row whose last harvest gave it a final answer."""

    answered: pa.Table

    @classmethod
    def load(cls, old_index: pa.Table | None, old_results: pa.Table | None) -> "PreviousAnswers":
        """From the previous results (id, status, hash) or, for results written before they held
        `request_hash`, the previous request index's hashes.

        The results' own hash is the one that counts: the index may be newer than the answers (a
        rebuild that sent a changed row, not yet harvested), and pairing the changed row's new
        hash with its old answer would keep a stale answer. No hash anywhere keeps nothing.
        """
        empty = pa.table({"custom_id": pa.array([], pa.string()), "request_hash": pa.array([], HASH_TYPE)})
        if old_results is None:
            return cls(empty)
        final = old_results.filter(pc.is_in(old_results["status"], value_set=pa.array(KEPT_STATUSES)))
        if "request_hash" in final.column_names:
            return cls(final.select(["custom_id", "request_hash"]).filter(pc.is_valid(final["request_hash"])))
        if old_index is None or "request_hash" not in old_index.column_names:
            return cls(empty)
        kept = old_index.filter(pc.is_in(old_index["custom_id"], value_set=final["custom_id"]))
        return cls(kept.select(["custom_id", "request_hash"]))

    def apply(self, index: pa.Table,
              lines: pa.ChunkedArray | None) -> tuple[pa.Table, pa.ChunkedArray | None, list[str]]:
        """One streamed shard without the lines that keep their answer.

        `index` and `lines` are as `stream_requests` yields them (its pending rows are the lines).
        Returns the index with kept rows marked `carried`, the remaining lines (None when nothing
        is left to send) and the kept custom_ids.
        """
        if lines is None or not self.answered.num_rows:
            return index, lines, []
        position = pc.index_in(index["custom_id"], value_set=self.answered["custom_id"])
        before = self.answered["request_hash"].take(position)
        pending = pc.equal(index["status"], PENDING)
        keep = pc.fill_null(pc.and_(pending, pc.equal(before, index["request_hash"])), False)
        if not pc.any(keep).as_py():
            return index, lines, []
        kept = index["custom_id"].filter(keep).to_pylist()
        lines = lines.filter(pc.invert(keep.filter(pending)))
        index = index.set_column(
            index.schema.get_field_index("status"), "status", pc.if_else(keep, CARRIED, index["status"])
        ).set_column(
            index.schema.get_field_index("shard"), "shard",
            pc.if_else(keep, pa.scalar(None, pa.int32()), index["shard"]),
        )
        return index, (lines if len(lines) else None), sorted(kept)


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
    """Put the carried rows' previous results in place of their `carried` placeholders.

    A row was carried because its request hash equals the index's, so the hash comes from the
    index (`results`): answers written before results held a hash get it too.
    """
    if carried is None or carried.num_rows == 0:
        return results
    answer = [c for c in results.column_names if c != "request_hash"]
    carried = carried.select(answer).cast(pa.schema([results.schema.field(c) for c in answer]))
    positions = pc.index_in(results["custom_id"], value_set=carried["custom_id"])
    is_carried = pc.is_valid(positions)
    if not pc.any(is_carried).as_py():
        return results
    order = pa.array(range(results.num_rows), pa.int64())
    previous = carried.take(positions.filter(is_carried))
    if "request_hash" in results.column_names:
        previous = previous.append_column("request_hash", results["request_hash"].filter(is_carried))
    merged = pa.concat_tables([
        results.filter(pc.invert(is_carried)).append_column("_row", order.filter(pc.invert(is_carried))),
        previous.select(results.column_names).append_column("_row", order.filter(is_carried)),
    ])
    return merged.sort_by("_row").drop_columns(["_row"])
