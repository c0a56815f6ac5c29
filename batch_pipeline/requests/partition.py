"""A partition's requests, built from its source rows and written to the warehouse.

Rows whose request is unchanged and whose last result is a final answer keep that answer
(`carried.parquet`) and are not sent again; the index (`rows.parquet`) has one row per source
row with its custom_id, shard and, for rows that cannot become a request, the reason. The index
streams to its file; what the asset reports of it is kept, not the index (flat memory). A request
file a batch was sent from is kept: a rebuild that would replace it moves it beside the batch's
output first (`raw/<batch_id>.input.jsonl`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from batch_pipeline.failpoints import failpoint
from batch_pipeline.provider.contract import RequestEncoding
from batch_pipeline.provider.submission import Submitted
from batch_pipeline.requests.carry_over import PreviousAnswers, carried_rows
from batch_pipeline.requests.lines import INDEX_UNIQUE, check_columns
from batch_pipeline.requests.shard_files import write_requests
from batch_pipeline.sources.base import Source
from batch_pipeline.sources.partitions import check_partition_column, dimensions
from batch_pipeline.state.partition_state import PartitionState, Submission
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse, arrow_file


@dataclass(frozen=True)
class BuiltRequests:
    """A partition's request index as reported (its rows, the estimated input tokens of each
    request to send, its rejected rows: how many and the first few) and its shard files (paths
    relative to the warehouse root)."""

    folder: UPath
    rows: int
    pending_tokens: pa.ChunkedArray
    rejected: int
    rejected_preview: pa.Table
    shards: list[str]
    kept: int

    @property
    def to_send(self) -> int:
        return len(self.pending_tokens)


def build_partition(wh: Warehouse, uc: UseCase, partition: str, source: Source | None = None,
                    form: RequestEncoding | None = None, sent: Sequence[Submission] = ()) -> BuiltRequests:
    """Rebuild a partition's shards, index and carried answers from its source rows (`source`:
    the source as loaded for this run, for an upstream asset; `form`: the provider's request
    lines, default OpenAI's; `sent`: the batches of its current state, whose request files are
    kept as sent). The source's columns are checked before any row is read."""
    source = source or uc.source
    with source.opened():  # one database connection for the checks and the rows
        _check_source(uc, source)
        folder = wh.partition_dir(uc.name, layout.REQUESTS, partition)
        results_path = wh.partition_dir(uc.name, layout.RESULTS, partition) / layout.RESULTS_FILE
        set_aside = _set_aside_as_sent(wh, uc, partition, sent)
        previous = PreviousAnswers.load(
            _columns(folder / layout.INDEX_FILE, ["custom_id", "request_hash"]),
            _columns(results_path, ["custom_id", "status", "request_hash"]),
        )
        # The index file appears when this block ends, after the shards and the carried answers.
        with wh.parquet_writer(folder / layout.INDEX_FILE, unique=INDEX_UNIQUE + uc.source.key_columns) as index:
            written = write_requests(wh, folder, uc.read(partition, source), source, uc.spec, previous, index, form)
            failpoint("requests.shards_written")
            if written.kept:
                with wh.parquet_writer(folder / layout.CARRIED_FILE) as write, arrow_file(results_path) as old:
                    for rows in carried_rows(pq.ParquetFile(old), written.kept):
                        write(rows)
            elif (folder / layout.CARRIED_FILE).exists():
                (folder / layout.CARRIED_FILE).unlink()
    wh.remove_stale(folder, layout.SHARD_GLOB, set(written.shards))
    for was, copy in set_aside.items():
        if was.exists() and was.stat().st_size == copy.stat().st_size and was.read_bytes() == copy.read_bytes():
            copy.unlink()  # rebuilt byte for byte: still kept where it was
    shards = [wh.relative(folder / name) for name in written.shards]
    tally = written.tally
    return BuiltRequests(folder, tally.rows, pa.chunked_array(tally.pending_tokens, pa.int32()), tally.rejected,
                         tally.preview(written.schema), shards, len(written.kept))


def _check_source(uc: UseCase, source: Source) -> None:
    """The spec's columns and the partition columns' types against the source's schema."""
    schema = source.schema()
    check_columns(schema, source, uc.spec)
    for dimension, definition in dimensions(uc.partitions_def):
        if column := source.partition_columns.get(dimension):
            check_partition_column(definition, column, schema.field(column).type, f"spec '{uc.spec.name}'")


def _set_aside_as_sent(wh: Warehouse, uc: UseCase, partition: str, sent: Sequence[Submission]
                       ) -> dict[UPath, UPath]:
    """Move each request file a batch was sent from to `raw/<batch_id>.input.jsonl`, beside the
    batch's output, before a rebuild overwrites or removes it: the warehouse keeps what was sent
    (the provider deletes or expires its copy). Returns the files moved, old path to new."""
    raw, moved = wh.partition_dir(uc.name, layout.RAW, partition), {}
    for submission in sent:
        was, copy = wh.resolve(submission.path), raw / layout.raw_file(submission.batch_id, "input")
        if was != copy and was.exists() and not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            was.rename(copy)  # a rename on disk, a server-side copy on object storage: never in memory
            moved[was] = copy
    return moved


def submitted_state(wh: Warehouse, uc: UseCase, partition: str, previous: PartitionState | None,
                    sent: Submitted) -> PartitionState:
    """The partition's state after a submission: the batches sent or reused, the shards held
    back, and the earlier batches whose answers the build kept (found in `previous`), so the
    state names every batch behind the partition's answers, even when nothing was sent."""
    kept = previous.keeping(carried_batch_ids(wh, uc, partition)) if previous is not None else ()
    return PartitionState(uc.name, partition, tuple(sent.submissions), tuple(sent.queued),
                          kept=tuple(as_sent(wh, uc, partition, s) for s in kept))


def as_sent(wh: Warehouse, uc: UseCase, partition: str, submission: Submission) -> Submission:
    """The submission with `path` naming where its request file is kept now."""
    copy = wh.partition_dir(uc.name, layout.RAW, partition) / layout.raw_file(submission.batch_id, "input")
    return dataclasses.replace(submission, path=wh.relative(copy)) if copy.exists() else submission


def carried_batch_ids(wh: Warehouse, uc: UseCase, partition: str) -> set[str]:
    """The batches whose answers the partition's last build kept (its carried rows name them)."""
    path = wh.partition_dir(uc.name, layout.REQUESTS, partition) / layout.CARRIED_FILE
    carried = _columns(path, ["batch_id"])
    if carried is None or "batch_id" not in carried.column_names:
        return set()
    return set(carried["batch_id"].drop_null().to_pylist())


def stray_rounds(wh: Warehouse, uc: UseCase, partition: str, recorded: set[str], since: float) -> tuple[str, ...]:
    """Retry files written after the partition's last recorded state that no state mentions.

    A results run died between preparing a round and Dagster recording it; rebuilding then could
    send that round's requests a second time.
    """
    folder = wh.partition_dir(uc.name, layout.REQUESTS, partition)
    if not folder.exists():
        return ()
    return tuple(
        wh.relative(p) for p in folder.glob(layout.RETRY_GLOB)
        if wh.relative(p) not in recorded and str(p) not in recorded and p.stat().st_mtime > since
    )


def _columns(path: UPath, columns: list[str]) -> pa.Table | None:
    if not path.exists():
        return None
    with arrow_file(path) as f:
        present = pq.read_schema(f).names
        return pq.read_table(f, columns=[c for c in columns if c in present])
