"""What the pipeline submitted for a partition, as recorded in materialization metadata.

The Dagster instance is the truth for what the pipeline submitted (DESIGN.md): the batches
asset records its submissions and queued shards; the results asset records the same plus any
follow-up (retry) batches and which batches it harvested. The newest of the two is the
partition's current record, read by the batch monitor and by the next results run.
"""

from dataclasses import dataclass

import dagster as dg

from batch_pipeline.provider.submission import Queued, Submission

_LOOKBACK = 20  # materializations per asset searched for the newest one carrying a record


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

    @property
    def retrying(self) -> bool:
        """A follow-up round is in flight or waiting: rebuilding the partition now could send its
        requests a second time, and would drop the round from the record."""
        return any(s.attempt > 1 for s in self.unharvested) or any(q.attempt > 1 for q in self.queued)


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
    """The newest record of a partition among the given assets' materializations.

    A materialization without a record (a partition left as it was) does not count.
    """
    records = []
    for key in keys:
        for event in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=_LOOKBACK
        ).records:
            record = record_from(event)
            if record is not None:
                records.append(record)
                break
    return max(records, key=lambda r: r.record_id, default=None)
