"""One sensor watching every batch in flight, for every use case, with list calls only.

The sensor learns what was submitted from new materializations of each use case's batches asset
(the Dagster instance is the truth for what the pipeline submitted), then reads batch states from
`batches.list` pages, newest first, stopping as soon as every watched batch has been seen. When
all batches of a partition are terminal it requests that partition's results run; the run key
names the exact batches, so the same submission is harvested once and a resubmission again.
"""


import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
import openai

from batch_pipeline.factory import UseCase, submissions_from
from batch_pipeline.gateway import TERMINAL, BatchGateway
from batch_pipeline.resources import BatchAPIResource

MONITOR_NAME = "batch_monitor"
_EVENTS_PER_TICK = 1000
# Batches are listed newest first; stop once past anything submitted this long before the
# oldest watched submission (clock skew between us and the provider).
_LIST_SLACK_SECONDS = 3600


@dataclass
class Watch:
    """A partition's submitted batches waiting to become terminal."""

    use_case: str
    partition: str
    batch_ids: list[str]
    submitted_at: float
    record_id: int
    progress: dict[str, list] = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        if not self.batch_ids:  # nothing was sent: key on the submission record itself
            return f"{self.use_case}:{self.partition}:record-{self.record_id}"
        digest = hashlib.sha256(",".join(sorted(self.batch_ids)).encode()).hexdigest()[:16]
        return f"{self.use_case}:{self.partition}:{digest}"


def build_batch_monitor(use_cases: Sequence[UseCase], interval_seconds: int = 30) -> dg.SensorDefinition:
    """The sensor for all use cases; it runs by default."""
    by_name = {uc.name: uc for uc in use_cases}
    jobs = [uc.results_job for uc in use_cases]

    @dg.sensor(
        name=MONITOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches every batch in flight with batches.list pages and requests a "
        "partition's results run once all its batches are terminal.",
    )
    def batch_monitor(
        context: dg.SensorEvaluationContext, batch_api: BatchAPIResource
    ) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        after: dict[str, int] = cursor.get("after", {})
        watches = {k: Watch(**w) for k, w in cursor.get("watches", {}).items()}

        for uc in use_cases:
            _collect_submissions(context.instance, uc, after, watches)

        def result(**kwargs) -> dg.SensorResult:
            state = {"after": after, "watches": {k: vars(w) for k, w in watches.items()}}
            return dg.SensorResult(cursor=json.dumps(state), **kwargs)

        if not watches:
            return result(skip_reason="no batches in flight")

        gateway = batch_api.gateway()
        try:
            states = _batch_states(gateway, watches)
        except openai.APIError as exc:  # no key or message from the provider is logged
            return result(skip_reason=f"provider unavailable, will retry next tick: {type(exc).__name__}")

        run_requests, observations, waiting = [], [], []
        for key, watch in list(watches.items()):
            seen = [states[b] for b in watch.batch_ids if b in states]
            for batch in seen:
                counts = batch.request_counts
                progress = [batch.status, counts.completed, counts.failed, counts.total] if counts else [batch.status]
                if watch.progress.get(batch.id) != progress:
                    watch.progress[batch.id] = progress
                    observations.append(_observation(by_name[watch.use_case], watch, batch))
            if len(seen) == len(watch.batch_ids) and all(b.status in TERMINAL for b in seen):
                run_requests.append(
                    dg.RunRequest(
                        run_key=watch.run_key,
                        job_name=by_name[watch.use_case].results_job_name,
                        partition_key=watch.partition,
                        tags={"batch_pipeline/use_case": watch.use_case},
                    )
                )
                del watches[key]
            else:
                done = sum(b.status in TERMINAL for b in seen)
                waiting.append(f"{key} {done}/{len(watch.batch_ids)} batches terminal")
        context.log.info(
            "listed batches in %d calls; %d results runs requested; waiting: %s",
            gateway.calls, len(run_requests), ", ".join(waiting) or "nothing",
        )
        if not run_requests:
            return result(
                skip_reason=f"{len(waiting)} partitions in flight: {'; '.join(waiting)[:500]}",
                asset_events=observations,
            )
        return result(run_requests=run_requests, asset_events=observations)

    return batch_monitor


def _collect_submissions(
    instance: dg.DagsterInstance, uc: UseCase, after: dict[str, int], watches: dict[str, Watch]
) -> None:
    """Watch every partition whose batches asset materialized since the last tick."""
    asset = uc.key("batches").to_user_string()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=uc.key("batches"), after_storage_id=after.get(asset)),
        limit=_EVENTS_PER_TICK,
        ascending=True,
    ).records
    for record in records:
        after[asset] = record.storage_id
        materialization = record.asset_materialization
        submissions = submissions_from(materialization)
        if materialization is None or submissions is None:
            continue
        partition = materialization.partition
        watches[f"{uc.name}|{partition}"] = Watch(
            use_case=uc.name,
            partition=partition,
            batch_ids=[s.batch_id for s in submissions],
            submitted_at=record.timestamp,
            record_id=record.storage_id,
        )


def _batch_states(gateway: BatchGateway, watches: dict[str, Watch]) -> dict[str, openai.types.Batch]:
    """The current state of every watched batch, from as few list pages as possible."""
    wanted = {b for w in watches.values() for b in w.batch_ids}
    oldest = min(w.submitted_at for w in watches.values()) - _LIST_SLACK_SECONDS
    states: dict[str, openai.types.Batch] = {}
    if not wanted:
        return states
    for page in gateway.batch_pages():
        for batch in page:
            if batch.id in wanted:
                states[batch.id] = batch
        if states.keys() >= wanted or (page[-1].created_at or time.time()) < oldest:
            break
    return states


def _observation(uc: UseCase, watch: Watch, batch: openai.types.Batch) -> dg.AssetObservation:
    counts = batch.request_counts
    metadata: dict = {"batch_id": batch.id, "status": batch.status}
    if counts:
        metadata |= {"completed": counts.completed, "failed": counts.failed, "total": counts.total}
    return dg.AssetObservation(asset_key=uc.key("batches"), partition=watch.partition, metadata=metadata)
