"""A results run for one partition: every harvested batch joined to the index, as one Parquet file.

Follow-up rounds are queued and sent before the Parquet is committed: a crash in between leaves
the previous results, so a rerun finds the same round (same idempotency keys) and reuses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from upath import UPath

from batch_pipeline.cost import UsageRecord
from batch_pipeline.harvest.batch_usage import BatchFigures
from batch_pipeline.harvest.lines import RESULT_UNIQUE, STATUSES, counts_by_status, retryable
from batch_pipeline.harvest.retries import follow_ups
from batch_pipeline.harvest.slices import harvest_slices
from batch_pipeline.index_status import PENDING
from batch_pipeline.provider.contract import ProviderBatch
from batch_pipeline.provider.submission import Sending
from batch_pipeline.state.partition_state import PartitionState
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse, arrow_file


@dataclass
class Harvest:
    """What one partition's results run wrote, and the partition's state after it."""

    path: UPath
    index: pa.Table
    state: PartitionState
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    retryable: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)
    cost_usd: float = 0.0
    refusals: int = 0
    preview: pa.Table | None = None
    usage: UsageRecord = UsageRecord()
    rows_added: int = 0
    files_deleted: int = 0  # provider files deleted once the results were written
    answered_by: set[str] = field(default_factory=set)  # the batches whose answers the results hold
    figures: dict[str, BatchFigures] = field(default_factory=dict)  # each batch's own usage, where reported

    def add(self, table: pa.Table, max_attempts: int) -> None:
        """Count one slice of written results (slices come in index order, a row per index row)."""
        for status, n in counts_by_status(table).items():
            self.counts[status] += n
        again = retryable(table, max_attempts)
        self.retryable += again
        failed_in = table.filter(pc.is_in(table["custom_id"], value_set=pa.array(again, pa.string())))
        self.parents |= set(failed_in["batch_id"].drop_null().to_pylist())
        self.answered_by |= set(pc.unique(table["batch_id"].drop_null()).to_pylist())
        self.cost_usd += pc.sum(table["cost_usd"]).as_py() or 0.0
        self.refusals += pc.sum(pc.equal(table["error_code"], "refusal")).as_py() or 0
        if self.preview is None and table.num_rows:
            self.preview = table
        self.usage += answered_usage(table, self.index.slice(self.rows_added, table.num_rows))
        self.rows_added += table.num_rows

    @property
    def retrying(self) -> int:
        """Requests in a follow-up round not harvested yet."""
        sent = sum(s.requests for s in self.state.unharvested)
        return sent + sum(q.requests for q in self.state.queued)

    def written_ids(self) -> pa.Table:
        """The custom_ids on disk, read back: what the every-row-once check verifies."""
        with arrow_file(self.path) as f:
            return pq.read_table(f, columns=["custom_id"])


def answered_usage(results: pa.Table, index_rows: pa.Table) -> UsageRecord:
    """The tokens of the requests sent this time that were answered (their usage is known):
    what later estimates learn from. Rows carried from an earlier harvest were counted then.
    `index_rows` are the index rows of `results`, row for row."""
    answered = pc.fill_null(pc.and_(pc.equal(index_rows["status"], PENDING),
                                    pc.is_valid(results["input_tokens"])), False)

    def total(column: pa.ChunkedArray) -> int:
        return pc.sum(column.filter(answered)).as_py() or 0

    return UsageRecord(pc.sum(answered).as_py() or 0, total(results["output_tokens"]),
                       total(results["input_tokens"]), total(index_rows["estimated_input_tokens"]))


def harvest_partition(
    wh: Warehouse, sending: Sending, uc: UseCase, state: PartitionState, known: Mapping[str, ProviderBatch]
) -> Harvest:
    """Write the partition's results from every batch in `state`; queue and send retries.
    `known`: batches the caller just retrieved, by id; the state records the status they ended in.

    Raises `NotTerminal` (before anything is written) when a batch is still running.
    """
    folder = wh.partition_dir(uc.name, layout.REQUESTS, state.partition)
    index = wh.read_parquet(folder / layout.INDEX_FILE)
    carried = wh.read_parquet(folder / layout.CARRIED_FILE) if (folder / layout.CARRIED_FILE).exists() else None
    path = wh.partition_dir(uc.name, layout.RESULTS, state.partition) / layout.RESULTS_FILE
    harvested = dataclasses.replace(
        state.with_statuses({batch_id: batch.status for batch_id, batch in known.items()}),
        harvested=tuple(s.batch_id for s in state.submissions), results_written=True,
    )
    report = Harvest(path, index, harvested)
    with wh.parquet_writer(path, unique=RESULT_UNIQUE + uc.source.key_columns) as write:
        for table in harvest_slices(wh, sending, uc, state, index, carried, known, report.figures):
            write(table)
            report.add(table, uc.spec.max_attempts)
        report.state = follow_ups(sending, wh, uc, harvested, index, report.retryable, report.parents)
    return report
