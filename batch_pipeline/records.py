"""What the pipeline submitted for a partition, as recorded in materialization metadata.

The Dagster instance is the truth for what the pipeline submitted (DESIGN.md): the batches
asset records its submissions and queued shards; the results asset records the same plus any
follow-up (retry) batches and which batches it harvested. The newest of the two is the
partition's current record, read by the batch monitor and by the next results run.
"""

from dataclasses import dataclass

import dagster as dg

from batch_pipeline.submission import Queued, Submission


@dataclass(frozen=True)
class PartitionRecord:
    record_id: int
    timestamp: float
    submissions: list[Submission]
    queued: list[Queued]
    harvested: list[str]

    @property
    def unharvested(self) -> list[Submission]:
        done = set(self.harvested)
        return [s for s in self.submissions if s.batch_id not in done]


def record_metadata(
    submissions: list[Submission], queued: list[Queued], harvested: list[str]
) -> dict[str, dg.MetadataValue]:
    return {
        "submissions": dg.MetadataValue.json([s.record() for s in submissions]),
        "queued": dg.MetadataValue.json([q.record() for q in queued]),
        "harvested_batch_ids": dg.MetadataValue.json(harvested),
        "batch_ids": dg.MetadataValue.json([s.batch_id for s in submissions]),
    }


def record_from(event: dg.EventLogRecord) -> PartitionRecord | None:
    materialization = event.asset_materialization
    if materialization is None or "submissions" not in materialization.metadata:
        return None
    meta = materialization.metadata
    return PartitionRecord(
        record_id=event.storage_id,
        timestamp=event.timestamp,
        submissions=[Submission(**s) for s in meta["submissions"].value],
        queued=[Queued(**q) for q in meta["queued"].value] if "queued" in meta else [],
        harvested=list(meta["harvested_batch_ids"].value) if "harvested_batch_ids" in meta else [],
    )


def latest_record(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey], partition: str
) -> PartitionRecord | None:
    """The newest record of a partition among the given assets' materializations."""
    newest = None
    for key in keys:
        for event in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records:
            if newest is None or event.storage_id > newest.storage_id:
                newest = event
    return record_from(newest) if newest else None
