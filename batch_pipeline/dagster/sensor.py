"""One sensor watching every batch in flight, for every use case, with list calls only.

The sensor learns what was submitted from the partition records (materializations of the
batches and results assets), then reads batch states from `batches.list` pages, newest first,
stopping as soon as every watched batch has been seen. It requests:
- a partition's results run once all its batches are terminal (the run key names the exact
  batches, so the same submission is harvested once and a follow-up round again);
- a run of the batches asset for shards that waited for enqueued-token capacity, once the
  batches in flight leave room for them;
- a results run for a retry round whose backoff has passed, to submit it.
"""

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
import openai

from batch_pipeline.failpoints import failpoint
from batch_pipeline.provider.gateway import TERMINAL, BatchGateway
from batch_pipeline.state.records import PartitionRecord, record_from
from batch_pipeline.dagster.resources import BatchAPIResource
from batch_pipeline.use_case import UseCase

MONITOR_NAME = "batch_monitor"
_EVENTS_PER_TICK = 1000
# Batches are listed newest first; stop once past anything submitted this long before the
# oldest watched submission (clock skew between us and the provider).
_LIST_SLACK_SECONDS = 3600


@dataclass
class Watch:
    """A partition's batches waiting to become terminal, and its shards waiting to be sent."""

    use_case: str
    partition: str
    record_id: int
    submitted_at: float
    harvest: bool
    pending: list[list] = field(default_factory=list)  # [batch_id, estimated_tokens]
    queued: list[list] = field(default_factory=list)  # [attempt, estimated_tokens, not_before]
    progress: dict[str, list] = field(default_factory=dict)

    @classmethod
    def of(cls, uc: UseCase, partition: str, record: PartitionRecord, from_results: bool) -> "Watch":
        pending = [[s.batch_id, s.estimated_tokens] for s in record.unharvested]
        return cls(
            use_case=uc.name,
            partition=partition,
            record_id=record.record_id,
            submitted_at=record.timestamp,
            harvest=bool(pending) or not from_results,
            pending=pending,
            queued=[[q.attempt, q.estimated_tokens, q.not_before] for q in record.queued],
        )

    @property
    def done(self) -> bool:
        return not self.harvest and not self.queued

    def run_key(self, kind: str) -> str:
        if kind == "results" and self.pending:
            digest = hashlib.sha256(",".join(sorted(b for b, _ in self.pending)).encode()).hexdigest()[:16]
            return f"{self.use_case}:{self.partition}:{digest}"
        return f"{self.use_case}:{self.partition}:{kind}-{self.record_id}"


def build_batch_monitor(use_cases: Sequence[UseCase], interval_seconds: int = 30) -> dg.SensorDefinition:
    """The sensor for all use cases; it runs by default."""
    by_name = {uc.name: uc for uc in use_cases}
    jobs = [job for uc in use_cases for job in (uc.results_job, uc.admit_job)]

    @dg.sensor(
        name=MONITOR_NAME,
        jobs=jobs,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches every batch in flight with batches.list pages; requests a "
        "partition's results run once all its batches are terminal, and the submission of "
        "shards that waited for capacity or for a retry backoff.",
    )
    def batch_monitor(
        context: dg.SensorEvaluationContext, batch_api: BatchAPIResource
    ) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        after: dict[str, int] = cursor.get("after", {})
        watches = {k: Watch(**w) for k, w in cursor.get("watches", {}).items()}
        for uc in use_cases:
            _collect_records(context.instance, uc, after, watches)

        def result(**kwargs) -> dg.SensorResult:
            state = {"after": after, "watches": {k: vars(w) for k, w in watches.items()}}
            return dg.SensorResult(cursor=json.dumps(state), **kwargs)

        if not watches:
            return result(skip_reason="no batches in flight")
        gateway = batch_api.gateway()
        try:
            states = _batch_states(gateway, watches)
        except openai.APIError as exc:  # the exception's text may echo request details; not logged
            return result(skip_reason=f"provider unavailable, will retry next tick: {type(exc).__name__}")
        failpoint("monitor.listed")

        in_flight = _tokens_in_flight(watches, states, by_name)
        run_requests, observations, waiting = [], [], []
        for key, watch in list(watches.items()):
            uc = by_name[watch.use_case]
            seen = [states[b] for b, _ in watch.pending if b in states]
            observations += _progress(uc, watch, seen)
            terminal = len(seen) == len(watch.pending) and all(b.status in TERMINAL for b in seen)
            request = _next_run(uc, watch, terminal, in_flight, batch_api.enqueued_token_limits.get(uc.spec.model))
            if request is not None:
                run_requests.append(request)
                del watches[key]
            else:
                done = sum(b.status in TERMINAL for b in seen)
                waiting.append(
                    f"{key} {done}/{len(watch.pending)} batches terminal"
                    + (f", {len(watch.queued)} shards queued" if watch.queued else "")
                )
        context.log.info(
            "listed batches in %d calls; %d runs requested; waiting: %s",
            gateway.calls, len(run_requests), ", ".join(waiting) or "nothing",
        )
        if not run_requests:
            return result(
                skip_reason=f"{len(waiting)} partitions in flight: {'; '.join(waiting)[:500]}",
                asset_events=observations,
            )
        return result(run_requests=run_requests, asset_events=observations)

    return batch_monitor


def _next_run(
    uc: UseCase, watch: Watch, terminal: bool, in_flight: dict[str, int], limit: int | None
) -> dg.RunRequest | None:
    """The run a partition needs now, if any."""
    now = time.time()
    due = [q for q in watch.queued if q[2] <= now]
    enqueued = in_flight.get(uc.spec.model, 0)
    fits = bool(due) and (limit is None or not enqueued or enqueued + min(q[1] for q in due) <= limit)
    if due and fits and all(q[0] == 1 for q in due):
        job, kind = uc.admit_job.name, "admit"
    elif terminal and not any(q[0] == 1 for q in watch.queued) and (watch.harvest or (due and fits)):
        job, kind = uc.results_job.name, "results"
    else:
        return None
    if kind == "admit":
        in_flight[uc.spec.model] = in_flight.get(uc.spec.model, 0) + sum(q[1] for q in due)
    return dg.RunRequest(
        run_key=watch.run_key(kind),
        job_name=job,
        partition_key=watch.partition,
        tags={"batch_pipeline/use_case": watch.use_case, "batch_pipeline/reason": kind},
    )


def _collect_records(
    instance: dg.DagsterInstance, uc: UseCase, after: dict[str, int], watches: dict[str, Watch]
) -> None:
    """Watch every partition whose record changed since the last tick; the newest record wins."""
    for key in uc.record_keys:
        name = key.to_user_string()
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after.get(name)),
            limit=_EVENTS_PER_TICK,
            ascending=True,
        ).records
        for event in records:
            after[name] = event.storage_id
            record = record_from(event)
            partition = event.asset_materialization.partition if event.asset_materialization else None
            if record is None or partition is None:
                continue
            watch_key = f"{uc.name}|{partition}"
            current = watches.get(watch_key)
            if current is not None and current.record_id > record.record_id:
                continue
            watch = Watch.of(uc, partition, record, from_results=key == uc.key("results"))
            if watch.done:
                watches.pop(watch_key, None)
            else:
                watches[watch_key] = watch


def _batch_states(gateway: BatchGateway, watches: dict[str, Watch]) -> dict[str, openai.types.Batch]:
    """The current state of every watched batch, from as few list pages as possible."""
    wanted = {b for w in watches.values() for b, _ in w.pending}
    states: dict[str, openai.types.Batch] = {}
    if not wanted:
        return states
    oldest = min(w.submitted_at for w in watches.values()) - _LIST_SLACK_SECONDS
    for page in gateway.batch_pages():
        for batch in page:
            if batch.id in wanted:
                states[batch.id] = batch
        if states.keys() >= wanted or (page[-1].created_at or time.time()) < oldest:
            break
    return states


def _tokens_in_flight(
    watches: dict[str, Watch], states: dict[str, openai.types.Batch], by_name: dict[str, UseCase]
) -> dict[str, int]:
    """Estimated tokens of our batches not yet terminal, per model (unseen ones count)."""
    totals: dict[str, int] = {}
    for watch in watches.values():
        model = by_name[watch.use_case].spec.model
        for batch_id, tokens in watch.pending:
            state = states.get(batch_id)
            if state is None or state.status not in TERMINAL:
                totals[model] = totals.get(model, 0) + tokens
    return totals


def _progress(uc: UseCase, watch: Watch, seen: list[openai.types.Batch]) -> list[dg.AssetObservation]:
    """An observation on the batches asset for each batch whose progress changed."""
    observations = []
    for batch in seen:
        counts = batch.request_counts
        progress = [batch.status, counts.completed, counts.failed, counts.total] if counts else [batch.status]
        if watch.progress.get(batch.id) == progress:
            continue
        watch.progress[batch.id] = progress
        metadata: dict = {"batch_id": batch.id, "status": batch.status}
        if counts:
            metadata |= {"completed": counts.completed, "failed": counts.failed, "total": counts.total}
        observations.append(
            dg.AssetObservation(asset_key=uc.key("batches"), partition=watch.partition, metadata=metadata)
        )
    return observations
