"""Provider file hygiene: a harvested partition's batch files are deleted at the provider.

A busy organisation would otherwise pile up three files per batch (input, output, error) until
the provider's file limits refuse new uploads. Only files the pipeline no longer needs from the
provider go: input files of terminal batches (the request shards are in the warehouse before any
upload), and output and error files whose raw copy is in the warehouse.

The results asset calls this after the partition's Parquet is committed and before Dagster
records the results run, so a crash before or during the deletion loses nothing: the rerun finds
the same batches unharvested, reads their raw copies instead of downloading, and deletes what is
left. A file already gone counts as done; any other failure is a warning, and the file expires at
the provider by itself (inputs after a week, outputs after 30 days).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import openai
from openai.types import Batch

from batch_pipeline.provider.gateway import BatchGateway
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse


def delete_provider_files(
    wh: Warehouse, gateway: BatchGateway, use_case: str, partition: str, batches: Iterable[Batch],
    warn: Callable[[str], None],
) -> int:
    """Delete the files of a partition's harvested (terminal) `batches`; how many were deleted.

    Failures never fail the run: each is a warning naming the file (never the provider's message,
    which could echo request details).
    """
    deleted = 0
    for file_id in _disposable(wh, use_case, partition, batches, warn):
        try:
            deleted += gateway.delete_file(file_id)
        except openai.OpenAIError as exc:
            status = getattr(exc, "status_code", None)
            reason = type(exc).__name__ + (f", HTTP {status}" if status else "")
            warn(f"{use_case} {partition}: provider file {file_id} was not deleted ({reason}); "
                 "it expires at the provider")
    return deleted


def _disposable(
    wh: Warehouse, use_case: str, partition: str, batches: Iterable[Batch], warn: Callable[[str], None]
) -> Iterator[str]:
    """Each batch's input file, and its output and error files that are kept raw in the warehouse."""
    raw_dir = wh.partition_dir(use_case, layout.RAW, partition)
    for batch in batches:
        if batch.input_file_id:
            yield batch.input_file_id
        for kind, file_id in (("output", batch.output_file_id), ("error", batch.error_file_id)):
            if not file_id:  # null, or "" on Azure
                continue
            if (raw_dir / layout.raw_file(batch.id, kind)).exists():
                yield file_id
            else:
                warn(f"{use_case} {partition}: provider file {file_id} of batch {batch.id} is not kept "
                     "in the warehouse; left at the provider")
