"""A partition's result rows, one first-round shard at a time.

`harvest_slices` yields the partition's result rows one first-round shard at a time (with the
follow-up rounds' lines for those rows), so memory holds one shard, not the partition.
`harvest_batch` turns one terminal batch into parsed lines, keeping the provider's files raw in
the warehouse first (they expire at the provider), and lands the images of an images batch.
"""

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
from upath import UPath

from batch_pipeline.cost import batch_prices
from batch_pipeline.errors import NotTerminal
from batch_pipeline.failpoints import failpoint
from batch_pipeline.harvest.batch_usage import BatchFigures, batch_figures
from batch_pipeline.harvest.images import land_images
from batch_pipeline.harvest.lines import BatchOutcome, assemble, batch_lines
from batch_pipeline.provider.contract import RESULT_ROWS, ProviderBatch
from batch_pipeline.provider.submission import Sending
from batch_pipeline.requests.carry_over import merge_carried
from batch_pipeline.requests.lines import line_custom_id
from batch_pipeline.spec import IMAGES_ENDPOINT
from batch_pipeline.state.partition_state import PartitionState, Submission
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse


def harvest_batch(
    wh: Warehouse, sending: Sending, uc: UseCase, partition: str, sub: Submission,
    expected: pa.Array | list[str] | None = None, batch: ProviderBatch | None = None,
    figures: dict[str, BatchFigures] | None = None,
) -> pa.Table:
    """One terminal batch's lines; its provider files are kept raw in the warehouse first.

    `expected` are the custom_ids the batch was sent, read from its request file when not given;
    `batch` is the provider's batch when the caller just retrieved it (else it is retrieved here).
    The batch's own usage, beside its lines' sum, goes in `figures` where the provider reports it.
    """
    api = sending.api_for(sub)
    batch = batch or api.retrieve(sub.batch_id)
    if not batch.terminal:
        raise NotTerminal(f"batch {batch.id} is still {batch.status}")
    raw_dir = wh.partition_dir(uc.name, layout.RAW, partition)
    raw_files = []
    for kind in api.result_kinds(batch):
        path = raw_dir / layout.raw_file(batch.id, kind)
        if not path.exists():
            wh.write_bytes(path, api.download(batch, kind))
            failpoint("harvest.downloaded")
        raw_files.append(wh.local_path(path) or path.read_bytes())
    outcome = BatchOutcome(batch.id, batch.status, batch.error_code, batch.error_message)
    if expected is None:
        expected = custom_ids_in(wh.resolve(sub.path))
    parsed = _priced_as(api.parse_results(raw_files), uc.spec.models.get(sub.provider, uc.spec.model))
    if uc.spec.endpoint == IMAGES_ENDPOINT:
        folder = wh.partition_dir(uc.name, layout.RESULTS, partition) / layout.IMAGES_FOLDER
        sent = set(expected if isinstance(expected, list) else expected.to_pylist())
        images = (image for image in api.images(raw_files) if image.custom_id in sent)  # never a stray id's file
        parsed = land_images(wh, folder, uc.spec.parameters.get("n", 1), images, parsed, uc.spec.model)
    reported = batch_figures(batch, parsed)
    if figures is not None and reported is not None:
        figures[batch.id] = reported
    return batch_lines(outcome, sub.attempt, expected, parsed)


def harvest_slices(
    wh: Warehouse,
    sending: Sending,
    uc: UseCase,
    state: PartitionState,
    index: pa.Table,
    carried: pa.Table | None,
    known: Mapping[str, ProviderBatch],
    figures: dict[str, BatchFigures] | None = None,
) -> Iterator[pa.Table]:
    """Result rows in source order, one slice per first-round shard. `known`: batches the caller
    already retrieved, by id (not retrieved again); `figures` collects each batch's own usage."""
    partition = state.partition
    first = {s.shard: s for s in state.submissions if s.attempt == 1}
    later = [harvest_batch(wh, sending, uc, partition, s, batch=known.get(s.batch_id), figures=figures)
             for s in state.submissions if s.attempt > 1]

    def first_round(shard: int, expected: pa.Array) -> pa.Table | None:
        if shard not in first:
            return None
        return harvest_batch(wh, sending, uc, partition, first[shard], expected, known.get(first[shard].batch_id),
                             figures)

    lines = assembled_slices(index, uc, first_round, pa.concat_tables(later) if later else None)
    for table in lines:
        yield merge_carried(table, carried)


def assembled_slices(
    index: pa.Table,
    uc: UseCase,
    first_round: Callable[[int, pa.Array], pa.Table | None],
    later_lines: pa.Table | None,
) -> Iterator[pa.Table]:
    """`assemble` one first-round shard's rows at a time, with their follow-up rounds' lines.

    `first_round(shard, custom_ids)` gives the lines of a first-round shard's batch, whose
    requests are the index rows of that shard.
    The next shard's lines are read (downloaded, parsed by DuckDB, which runs without the GIL)
    while this one is assembled and written, so both cores work; memory holds two shards.
    """
    slices = list(shard_slices(index))
    prices = batch_prices([uc.spec.model])

    def read(i: int) -> pa.Table | None:
        rows, shard = slices[i]
        if shard is None:
            return None
        return first_round(shard, rows["custom_id"].filter(pc.fill_null(pc.equal(rows["shard"], shard), False)))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="harvest-reader") as reader:
        upcoming: Future | None = reader.submit(read, 0) if slices else None
        for i, (rows, _) in enumerate(slices):
            assert upcoming is not None  # submitted for every slice
            first_lines = upcoming.result()
            upcoming = reader.submit(read, i + 1) if i + 1 < len(slices) else None
            parts = [first_lines] if first_lines is not None else []
            if later_lines is not None:
                parts.append(later_lines.filter(pc.is_in(later_lines["custom_id"], value_set=rows["custom_id"])))
            lines = pa.concat_tables(parts) if parts else batch_lines(
                BatchOutcome("", "completed"), 1, [], RESULT_ROWS.empty_table())
            prices |= batch_prices([m for m in pc.unique(lines["model"]).to_pylist() if m])
            yield assemble(rows, uc.source.key_columns, lines, prices, uc.spec)


def shard_slices(index: pa.Table) -> Iterator[tuple[pa.Table, int | None]]:
    """Contiguous runs of the index, each starting where a new first-round shard starts."""
    shards = index["shard"].to_pylist()
    starts = [0]
    current = None
    for i, shard in enumerate(shards):
        if shard is not None and shard != current:
            if current is not None:
                starts.append(i)
            current = shard
    starts.append(len(shards))
    for begin, end in zip(starts, starts[1:], strict=False):
        rows = index.slice(begin, end - begin)
        yield rows, next((s for s in rows["shard"].to_pylist() if s is not None), None)
    if not shards:
        yield index, None


def custom_ids_in(shard: UPath) -> list[str]:
    """The custom_ids of a request file, in order, read without parsing the lines."""
    return [line_custom_id(line) for line in shard.read_bytes().splitlines() if line.strip()]


def _priced_as(lines: pa.Table, model: str) -> pa.Table:
    """An answered line that names no model (an images answer, a Gemini embedding) takes the model
    its request asked for (the one the spec names for the batch's provider, else the spec's own,
    as a registered provider without its own entry is sent), so its cost is that model's."""
    answered = pc.fill_null(pc.equal(lines["status"], "succeeded"), False)
    named = pc.if_else(pc.and_(answered, pc.is_null(lines["model"])), model, lines["model"])
    return lines.set_column(lines.schema.get_field_index("model"), "model", named)
