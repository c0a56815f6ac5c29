"""A partition's request shards and index written to the warehouse as they are built.

One shard is built while the previous one is written (writing releases the GIL), so the disk
and the CPU work at once and memory holds at most two shards. The index goes to its Parquet file
a shard's rows at a time: whole, it would grow with the partition (~75 bytes a row, 0.75 GB at
10M rows), so only what the requests asset reports of it is kept (`IndexTally`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from upath import UPath

from batch_pipeline.provider.contract import RequestEncoding
from batch_pipeline.requests.carry_over import PreviousAnswers, renumber
from batch_pipeline.requests.lines import (
    PENDING,
    REJECTED,
    empty_index,
    shard_buffers,
    stream_requests,
)
from batch_pipeline.sources.base import Source
from batch_pipeline.spec import BatchSpec
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse

PREVIEW_ROWS = 10  # rejected rows kept to show in the asset's metadata


@dataclass
class IndexTally:
    """What is reported of a partition's index, summed as its rows stream to the index file."""

    rows: int = 0
    rejected: int = 0
    rejected_preview: list[pa.Table] = field(default_factory=list)  # the first PREVIEW_ROWS rejected rows
    pending_tokens: list[pa.Array] = field(default_factory=list)  # estimated input tokens of each request

    def add(self, chunk: pa.Table) -> None:
        self.rows += chunk.num_rows
        pending, rejected = pc.equal(chunk["status"], PENDING), pc.equal(chunk["status"], REJECTED)
        tokens = chunk["estimated_input_tokens"].filter(pending).combine_chunks()
        self.pending_tokens.append(tokens.cast(pa.int32()))  # half the bytes; a request's tokens fit
        count = pc.sum(rejected).as_py() or 0
        if count and self.rejected < PREVIEW_ROWS:
            self.rejected_preview.append(chunk.filter(rejected).slice(0, PREVIEW_ROWS))
        self.rejected += count

    def preview(self, schema: pa.Schema) -> pa.Table:
        """The first rejected rows (an empty table of `schema` when there are none)."""
        if not self.rejected_preview:
            return schema.empty_table()
        return pa.concat_tables(self.rejected_preview).slice(0, PREVIEW_ROWS)


@dataclass(frozen=True)
class WrittenRequests:
    """The partition's index as tallied, its shard file names and the custom_ids that keep their answer."""

    tally: IndexTally
    schema: pa.Schema
    shards: list[str]
    kept: list[str]


def write_requests(wh: Warehouse, folder: UPath, batches: Iterable[pa.RecordBatch], source: Source,
                   spec: BatchSpec, previous: PreviousAnswers, write_index: Callable[[pa.Table], None],
                   form: RequestEncoding | None = None) -> WrittenRequests:
    """Build the partition's requests from `batches` (in the provider's `form`, default OpenAI's),
    write each shard as soon as it closes and hand each stretch of index rows to `write_index`."""
    tally = IndexTally()
    schema: pa.Schema | None = None
    names: list[str] = []
    kept: list[str] = []
    # One writer thread takes the shards and the index rows in order: Parquet encoding, like
    # writing, releases the GIL, so it overlaps the next shard's building.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer") as writer:
        writing: list[Future] = []
        for chunk, lines in stream_requests(batches, source, spec, form):
            chunk, lines, carried = previous.apply(chunk, lines)
            kept += carried
            if lines is not None:
                names.append(layout.shard_file(len(names)))
                writing = _settled(writing)  # memory holds at most the shard being written and this one
                writing.append(writer.submit(wh.write_bytes, folder / names[-1], shard_buffers(lines)))
                chunk = renumber(chunk, len(names) - 1)
            writing.append(writer.submit(write_index, chunk))
            tally.add(chunk)
            schema = chunk.schema
        _settled(writing)
    if schema is None:
        empty = empty_index(source, spec)
        write_index(empty)
        schema = empty.schema
    return WrittenRequests(tally, schema, names, kept)


def _settled(writing: list[Future]) -> list[Future]:
    """Wait for the writes submitted so far (raising the first one's error); none are left."""
    for future in writing:
        future.result()
    return []
