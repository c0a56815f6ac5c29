"""A partition's `PartitionState`, stored in and read back from Dagster materialization metadata.

The batches and results assets each record the partition's state when they materialize it; the
newest record of the two is the partition's current state (the Dagster instance is the truth for
what the pipeline submitted: docs/provider-port.md, "Idempotency without batch metadata").
"""

from __future__ import annotations

import dagster as dg

from batch_pipeline.dagster.failures import as_failures
from batch_pipeline.dagster.jobs import asset_key, record_keys
from batch_pipeline.state.partition_state import STATE_KEY, PartitionState
from batch_pipeline.use_case import UseCase

_LOOKBACK = 20  # materializations per asset searched for the newest one carrying a state


def state_metadata(state: PartitionState) -> dict[str, dg.MetadataValue]:
    """The state document, and for people reading the UI the batches behind the partition's
    answers (kept from an earlier build, or sent by this one), those harvested, and their requests."""
    return {
        STATE_KEY: dg.MetadataValue.json(state.to_json()),
        "batch_ids": dg.MetadataValue.json([s.batch_id for s in state.batches]),
        "harvested_batch_ids": dg.MetadataValue.json([s.batch_id for s in state.kept] + list(state.harvested)),
        "requests": dg.MetadataValue.int(sum(s.requests for s in state.batches)),
    }


def state_from(event: dg.EventLogRecord, uc: UseCase) -> PartitionState | None:
    """The state a materialization recorded, if it recorded one (a partition left as it was did not)."""
    materialization = event.asset_materialization
    if materialization is None or (materialization.partition is None) != (uc.partitions_def is None):
        return None
    meta = materialization.metadata
    by_results = materialization.asset_key == asset_key(uc, "results")
    if STATE_KEY in meta:
        document = dict(meta[STATE_KEY].value)  # type: ignore[arg-type]
    elif "submissions" in meta:  # written before states were versioned
        document = {k: meta[k].value for k in ("submissions", "queued", "harvested_batch_ids") if k in meta}
    else:
        return None
    document.setdefault("use_case", uc.name)
    document.setdefault("partition", uc.partition_of(materialization.partition))
    return PartitionState.from_json(document, event.storage_id, event.timestamp, results_written=by_results)


def latest_state(instance: dg.DagsterInstance, uc: UseCase, partition: str) -> PartitionState | None:
    """The newest recorded state of a partition, from its batches and results materializations.

    A state recorded by a newer version of the pipeline fails the run, unretried (a retry would
    read the same record): acting on it, or writing a state over it, would lose what it says.
    """
    states = []
    for key in record_keys(uc):
        for event in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=_partitions(uc, partition)), limit=_LOOKBACK
        ).records:
            with as_failures(f"{uc.name} {partition}"):  # StateVersionError
                state = state_from(event, uc)
            if state is not None:
                states.append(state)
                break
    return max(states, key=lambda s: s.record_id, default=None)


def _partitions(uc: UseCase, partition: str) -> list[str] | None:
    dagster_key = uc.dagster_partition(partition)
    return None if dagster_key is None else [dagster_key]
