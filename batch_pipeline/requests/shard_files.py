"""A partition's request shards written to the warehouse as they are built.

One shard is built while the previous one is written (writing releases the GIL), so the disk
and the CPU work at once and memory holds at most two shards.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
from upath import UPath

from batch_pipeline.provider.contract import LineForm
from batch_pipeline.requests.carry_over import PreviousAnswers, renumber
from batch_pipeline.requests.lines import empty_index, shard_buffers, stream_requests
from batch_pipeline.sources.base import Source
from batch_pipeline.spec import BatchSpec
from batch_pipeline.warehouse.storage import Warehouse


@dataclass(frozen=True)
class WrittenRequests:
    """The partition's request index, its shard file names and the custom_ids that keep their answer."""

    index: pa.Table
    shards: list[str]
    kept: list[str]


def write_requests(wh: Warehouse, folder: UPath, batches: Iterable[pa.RecordBatch], source: Source,
                   spec: BatchSpec, previous: PreviousAnswers, form: LineForm | None = None) -> WrittenRequests:
    """Build the partition's requests from `batches` (in the provider's `form`, default OpenAI's)
    and write each shard as soon as it closes."""
    chunks: list[pa.Table] = []
    names: list[str] = []
    kept: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer") as writer:
        writing: Future | None = None
        for chunk, lines in stream_requests(batches, source, spec, form):
            chunk, lines, carried = previous.apply(chunk, lines)
            kept += carried
            if lines is not None:
                names.append(f"shard-{len(names):05d}.jsonl")
                if writing is not None:
                    writing.result()
                writing = writer.submit(wh.write_bytes, folder / names[-1], shard_buffers(lines))
                chunk = renumber(chunk, len(names) - 1)
            chunks.append(chunk)
        if writing is not None:
            writing.result()
    index = pa.concat_tables(chunks) if chunks else empty_index(source, spec)
    return WrittenRequests(index, names, kept)
