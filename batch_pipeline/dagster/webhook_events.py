"""Batch webhooks received, kept in the Dagster instance, where the batch monitor reads them.

The instance is the truth for what the pipeline knows of its batches (docs/webhooks.md): each
verified delivery becomes a runless observation of one asset, `batch_pipeline/webhook_deliveries`,
partitioned by batch id and carrying the `webhook-id`. No code location defines that asset; the
UI lists it in the catalog with each delivery. The receiver records, the monitor reads; neither
launches a run from a delivery alone, so the monitor's run keys stay the one guard against a
second harvest.
"""

from __future__ import annotations

import dagster as dg

from batch_pipeline.provider.openai_webhooks import WebhookDelivery

DELIVERIES = dg.AssetKey(["batch_pipeline", "webhook_deliveries"])
_PAGE = 1000
# A batch has one terminal event; more observations than this for one batch id means retries of
# it, which the replay check reads all of (page by page).
_PER_BATCH_PAGE = 100


def record_delivery(instance: dg.DagsterInstance, delivery: WebhookDelivery) -> bool:
    """Record a batch event once per `webhook-id`: False, recording nothing, for a replay.

    Two copies of one delivery arriving at the same instant may both be recorded; the monitor
    reads a delivery only as "look at this batch now", so a second record changes nothing.
    """
    if delivery.batch_id is None:
        raise ValueError(f"{delivery.event_type} is not a batch event")
    if _seen(instance, delivery.batch_id, delivery.webhook_id):
        return False
    instance.report_runless_asset_event(dg.AssetObservation(
        asset_key=DELIVERIES, partition=delivery.batch_id,
        metadata={"webhook_id": delivery.webhook_id, "event_id": delivery.event_id, "type": delivery.event_type,
                  "batch_id": delivery.batch_id, "event_created_at": delivery.created_at},
    ))
    return True


def _seen(instance: dg.DagsterInstance, batch_id: str, webhook_id: str) -> bool:
    """Whether a delivery with this `webhook-id` was recorded for the batch."""
    before = None
    while True:
        records = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=DELIVERIES, asset_partitions=[batch_id], before_storage_id=before),
            limit=_PER_BATCH_PAGE,
        ).records
        for record in records:
            observation = record.asset_observation
            if observation is not None and _text(observation.metadata.get("webhook_id")) == webhook_id:
                return True
        if len(records) < _PER_BATCH_PAGE:
            return False
        before = records[-1].storage_id


def batches_delivered(instance: dg.DagsterInstance, after: int | None) -> tuple[set[str], int | None]:
    """The batch ids of deliveries recorded after storage id `after`, and the newest storage id
    read (`after` when there is none). `after` None reads from the newest delivery on: what came
    before the monitor first looked was seen by its first poll."""
    if after is None:
        newest = instance.fetch_observations(DELIVERIES, limit=1).records
        return set(), newest[0].storage_id if newest else 0
    batch_ids: set[str] = set()
    while True:
        records = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=DELIVERIES, after_storage_id=after), limit=_PAGE, ascending=True,
        ).records
        for record in records:
            observation = record.asset_observation
            if observation is not None and observation.partition:
                batch_ids.add(observation.partition)
            after = record.storage_id
        if len(records) < _PAGE:
            return batch_ids, after


def _text(value: object) -> str | None:
    """A metadata value's text (`TextMetadataValue` when read back)."""
    text = getattr(value, "value", value)
    return text if isinstance(text, str) else None
