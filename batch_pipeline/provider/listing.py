"""What every adapter whose provider lists batches newest first does with those pages, and how
each adapter reads a results file line by line: written once here, not once per provider."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from batch_pipeline.provider.contract import RESULT_ROWS, ProviderBatch

CLOCK_SLACK_SECONDS = 900  # our clock against the provider's created_at

Pages = Iterable[list[ProviderBatch]]


def created_since(pages: Pages, since: float) -> list[ProviderBatch]:
    """The batches created after `since`, reading pages (newest first) no further back."""
    created: list[ProviderBatch] = []
    for page in pages:
        created += [b for b in page if b.created_at >= since - CLOCK_SLACK_SECONDS]
        if not page or page[-1].created_at < since - CLOCK_SLACK_SECONDS:
            break
    return created


def states_of(pages: Pages, retrieve: Callable[[str], ProviderBatch | None], batch_ids: set[str],
              since: float) -> dict[str, ProviderBatch]:
    """The current state of `batch_ids` in few calls whatever else the organisation holds: list
    pages find many of ours at once while ours are among the newest; once a page holds none of
    them, the rest are retrieved one call each (`retrieve` gives None for a batch the provider
    does not know), so the calls follow our batches in flight."""
    states: dict[str, ProviderBatch] = {}
    for page in pages:
        seen = [batch for batch in page if batch.id in batch_ids]
        states.update((batch.id, batch) for batch in seen)
        if states.keys() >= batch_ids or not seen or page[-1].created_at < since - CLOCK_SLACK_SECONDS:
            break
    for batch_id in sorted(batch_ids - states.keys()):
        batch = retrieve(batch_id)
        if batch is not None:
            states[batch_id] = batch
    return states


def result_rows(files: Sequence[bytes | Path], row: Callable[[bytes, int], dict[str, Any]]) -> pa.Table:
    """Every non-blank line of results files (bytes, or local copies; a byte order mark skipped)
    as `RESULT_ROWS`, each line made a row by `row(line, line_number)`."""
    return pa.Table.from_pylist(list(_rows(files, row)), schema=RESULT_ROWS)


def _rows(files: Sequence[bytes | Path], row: Callable[[bytes, int], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for data in files:
        raw = data if isinstance(data, bytes) else data.read_bytes()
        for number, line in enumerate(raw.removeprefix(codecs.BOM_UTF8).splitlines(), 1):
            if line.strip():
                yield row(line, number)
