"""One sensor watching every batch in flight, for every use case, with list calls only.

The sensor learns each partition's `PartitionState` from the materializations of the batches and
results assets, reads batch states from `batches.list` pages (newest first, stopping as soon as
every watched batch has been seen), and asks the state machine what each partition needs:
- `Harvest` or `Resubmit`: the partition's results run (the run key names the exact batches, so
  the same submission is harvested once and a follow-up round again);
- `Admit`: a run of the batches asset for shards that waited for enqueued-token capacity;
- `Wait`: nothing yet; progress is reported as observations on the batches asset;
- `Done`: the partition is no longer watched.

With webhooks (`webhooks=True`), the sensor ticks every `WEBHOOK_TICK_SECONDS` but lists batches
only when a recorded delivery names a watched batch, when a partition's state changed, or when
`interval_seconds` passed since the last listing: a delivery is a reason to look now, the
provider's list stays the truth, and a lost delivery is found by the next listing (docs/webhooks.md).
"""


import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import dagster as dg

from batch_pipeline.dagster.jobs import admit_job, asset_key, record_keys, results_job
from batch_pipeline.dagster.resources import BatchAPIResource
from batch_pipeline.dagster.state_store import state_from
from batch_pipeline.dagster.webhook_events import batches_delivered
from batch_pipeline.errors import ProviderUnavailable, StateVersionError
from batch_pipeline.failpoints import failpoint
from batch_pipeline.provider.contract import ProviderBatch
from batch_pipeline.state.lease import lease_held
from batch_pipeline.state.machine import (
    Action,
    Admit,
    Done,
    Harvest,
    ProviderReport,
    Resubmit,
    Wait,
    next_action,
)
from batch_pipeline.state.partition_state import TERMINAL, PartitionState
from batch_pipeline.state.rerun import Hold, LastRun, Rerun, RunAsked, RunOutcome, hold, lease_wait
from batch_pipeline.state.results import settled
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse.storage import Warehouse

MONITOR_NAME = "batch_monitor"
# The monitor's metadata entry naming the use cases it watches as `definitions_for` defined them
# (name, key prefix, resource keys): how `as_defined` finds a declared use case's names in a
# `Definitions`, however it was merged.
WATCHED = "batch_pipeline/use_cases"
_CURSOR_VERSION = 2
_EVENTS_PER_TICK = 1000
# With webhooks, how often the sensor looks for deliveries: the sensor daemon's own loop period,
# the shortest interval a sensor gets.
WEBHOOK_TICK_SECONDS = 5
# Tag on a run the monitor requested: what made it list the batches then (`webhook` or `poll`).
TRIGGER_TAG = "batch_pipeline/trigger"


@dataclass
class MonitorCursor:
    """What the sensor keeps between ticks: the last event read per asset, the partitions it
    watches (their states) and the last progress reported per batch."""

    after: dict[str, int] = field(default_factory=dict)
    watched: dict[str, PartitionState] = field(default_factory=dict)
    progress: dict[str, list] = field(default_factory=dict)
    requested: dict[str, dict] = field(default_factory=dict)  # watch key -> RunAsked fields
    # watch key -> why its newest state is not read (recorded by a newer pipeline); reported each tick
    refused: dict[str, str] = field(default_factory=dict)
    polled_at: float = 0.0  # when the batches were last listed
    webhooks_after: int | None = None  # the last webhook delivery read (storage id)

    @classmethod
    def load(cls, text: str | None) -> "MonitorCursor":
        data = json.loads(text) if text else {}
        if data.get("version") != _CURSOR_VERSION:  # an older cursor: read every record again
            return cls()
        try:
            watched = {
                key: PartitionState.from_json(doc, doc.get("record_id", 0), doc.get("recorded_at", 0.0))
                for key, doc in data.get("watched", {}).items()
            }
        except StateVersionError:  # written by a newer pipeline: read every record again
            return cls()
        return cls(data.get("after", {}), watched, data.get("progress", {}), data.get("requested", {}),
                   data.get("refused", {}), data.get("polled_at", 0.0), data.get("webhooks_after"))

    def dump(self) -> str:
        watched = {
            key: {**s.to_json(), "record_id": s.record_id, "recorded_at": s.recorded_at}
            for key, s in self.watched.items()
        }
        wanted = {s.batch_id for state in self.watched.values() for s in state.unharvested}
        progress = {b: p for b, p in self.progress.items() if b in wanted}
        requested = {k: r for k, r in self.requested.items() if k in self.watched}
        return json.dumps({"version": _CURSOR_VERSION, "after": self.after, "watched": watched,
                           "progress": progress, "requested": requested, "refused": self.refused,
                           "polled_at": self.polled_at, "webhooks_after": self.webhooks_after})


def watched(uc: UseCase) -> dict:
    """What the monitor's metadata says of a use case it watches."""
    keys = uc.resource_keys
    return {"spec": uc.spec.name, "name": uc.name, "key_prefix": list(uc.key_prefix),
            "resource_keys": {"warehouse": keys.warehouse, "batch_api": keys.batch_api}}


def build_batch_monitor(
    use_cases: Sequence[UseCase], interval_seconds: int = 30, rerun: Rerun | None = None, name: str = MONITOR_NAME,
    webhooks: bool = False,
) -> dg.SensorDefinition:
    """The sensor for all use cases; it runs by default. It uses the batch API resource under the
    use cases' resource key (`UseCase.resource_keys`). With `webhooks`, it also acts on the
    deliveries `batch-pipeline webhooks` records, within `WEBHOOK_TICK_SECONDS`."""
    by_name = {uc.name: uc for uc in use_cases}
    rerun = rerun or Rerun()
    resource_key = use_cases[0].resource_keys.batch_api if use_cases else "batch_api"
    warehouse_key = use_cases[0].resource_keys.warehouse if use_cases else "warehouse"

    @dg.sensor(
        name=name,
        required_resource_keys={resource_key, warehouse_key},
        jobs=[job for uc in use_cases for job in (results_job(uc), admit_job(uc))],
        minimum_interval_seconds=min(interval_seconds, WEBHOOK_TICK_SECONDS) if webhooks else interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        metadata={WATCHED: dg.MetadataValue.json([watched(uc) for uc in use_cases])},
        description="Watches every batch in flight with batches.list pages; requests a "
        "partition's results run once all its batches are terminal, and the submission of "
        "shards that waited for capacity or for a retry backoff.",
    )
    def batch_monitor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        batch_api: BatchAPIResource = getattr(context.resources, resource_key)
        cursor = MonitorCursor.load(context.cursor)
        changed = [_collect_states(context.instance, uc, cursor) for uc in use_cases]
        trigger = _trigger(context.instance, cursor, any(changed), interval_seconds) if webhooks else "poll"
        for key, reason in cursor.refused.items():
            context.log.error("%s not watched: %s", key, reason)
        if not cursor.watched:
            refused = "; ".join(f"{key} not watched: {reason}" for key, reason in cursor.refused.items())
            return dg.SensorResult(skip_reason=refused[:500] or "no batches in flight", cursor=cursor.dump())
        if trigger is None:
            due = time.strftime("%H:%M:%S", time.localtime(cursor.polled_at + interval_seconds))
            return dg.SensorResult(skip_reason=f"{counted(len(cursor.watched), 'partition')} in flight; next "
                                   f"listing at {due} or on a webhook delivery", cursor=cursor.dump())
        cursor.polled_at = time.time()
        try:
            holds = {key: _hold(context.instance, cursor, key, rerun, time.time()) for key in cursor.watched}
            batches, calls = _batch_states(batch_api, [cursor.watched[k] for k, h in holds.items()
                                                       if h.reason is None])
        except ProviderUnavailable as exc:  # names the call and the error's type, never its text
            return dg.SensorResult(skip_reason=f"provider unavailable, will retry next tick: {exc}",
                                   cursor=cursor.dump())
        failpoint("monitor.listed")
        warehouse = getattr(context.resources, warehouse_key).warehouse()
        return _decide(context, by_name, (batch_api, warehouse), cursor, batches, calls, holds, trigger)

    return batch_monitor


def _trigger(instance: dg.DagsterInstance, cursor: MonitorCursor, changed: bool, interval_seconds: int) -> str | None:
    """Why this tick lists the batches (`webhook`, `poll`), or None: a webhook delivery names a
    watched batch, a partition's state changed, or the interval passed since the last listing.
    Deliveries read are consumed either way (one for a batch not watched yet is covered by the
    listing its partition's new state brings)."""
    delivered, cursor.webhooks_after = batches_delivered(instance, cursor.webhooks_after)
    if delivered & {s.batch_id for state in cursor.watched.values() for s in state.unharvested}:
        return "webhook"
    return "poll" if changed or time.time() >= cursor.polled_at + interval_seconds else None


def _decide(
    context: dg.SensorEvaluationContext, by_name: dict[str, UseCase],
    resources: tuple[BatchAPIResource, Warehouse], cursor: MonitorCursor, batches: dict[str, ProviderBatch], calls: int,
    holds: dict[str, Hold], trigger: str,
) -> dg.SensorResult:
    """Ask the state machine about every watched partition and request the runs it needs."""
    batch_api, warehouse = resources
    in_flight = _tokens_in_flight(cursor.watched.values(), batches, by_name)
    run_requests, observations = [], []
    waiting = [f"{key} not watched: {reason}" for key, reason in cursor.refused.items()]
    for key, state in list(cursor.watched.items()):
        uc = by_name[state.use_case]
        seen = [batches[s.batch_id] for s in state.unharvested if s.batch_id in batches]
        observations += _progress(uc, state, seen, cursor.progress)
        held = holds[key]
        if held.reason is not None:
            waiting.append(f"{key} {held.reason}")
            if held.stranded:
                observations.append(_stranded(uc, state, held.reason))
            continue
        failures = held.failures
        report = ProviderReport({b.id: b.status for b in seen}, time.time(),
                                in_flight.get(uc.spec.model, 0), batch_api.enqueued_token_limits.get(uc.spec.model))
        action = next_action(state, report)
        request = _run_request(uc, state, action, failures, trigger)
        if request is not None and (busy := lease_wait(action, lease_held(warehouse, uc.name, state.partition))):
            waiting.append(f"{key} {busy}")
            continue
        if request is not None:
            run_requests.append(request)
            cursor.requested[key] = asdict(RunAsked(request.run_key or "", state.record_id, time.time(), failures))
            if isinstance(action, Admit):
                admitted = sum(q.estimated_tokens for q in action.shards)
                in_flight[uc.spec.model] = in_flight.get(uc.spec.model, 0) + admitted
        elif isinstance(action, Done):
            del cursor.watched[key]
        else:
            waiting.append(f"{key} {action.reason if isinstance(action, Wait) else action}")
    context.log.info("listed batches in %s; %s requested; waiting: %s", counted(calls, "call"),
                     counted(len(run_requests), "run"), ", ".join(waiting) or "nothing")
    if not run_requests:
        return dg.SensorResult(skip_reason=f"{counted(len(waiting), 'partition')} in flight: "
                               f"{'; '.join(waiting)[:500]}",
                               asset_events=observations, cursor=cursor.dump())
    return dg.SensorResult(run_requests=run_requests, asset_events=observations, cursor=cursor.dump())


def counted(count: int, noun: str) -> str:
    """`1 call`, `2 calls`: the sensor's texts are read in the UI's tick list."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _run_request(uc: UseCase, state: PartitionState, action: Action, failures: int,
                 trigger: str = "poll") -> dg.RunRequest | None:
    """The run that carries out `action`, if it needs one; the run key makes it happen once (a
    request made again after `failures` failed runs gets a key of its own)."""
    if isinstance(action, Admit):
        job, kind, run_key = admit_job(uc).name, "admit", f"{uc.name}:{state.partition}:admit-{state.record_id}"
    elif isinstance(action, Harvest) and action.batch_ids:
        digest = hashlib.sha256(",".join(sorted(action.batch_ids)).encode()).hexdigest()[:16]
        job, kind, run_key = results_job(uc).name, "results", f"{uc.name}:{state.partition}:{digest}"
    elif isinstance(action, Harvest | Resubmit):
        job, kind, run_key = results_job(uc).name, "results", f"{uc.name}:{state.partition}:results-{state.record_id}"
    else:
        return None
    return dg.RunRequest(
        run_key=f"{run_key}:again-{failures}" if failures else run_key,
        job_name=job,
        partition_key=uc.dagster_partition(state.partition),
        tags={"batch_pipeline/use_case": uc.name, "batch_pipeline/reason": kind, TRIGGER_TAG: trigger},
    )


_OUTCOMES: dict[dg.DagsterRunStatus, RunOutcome] = {
    dg.DagsterRunStatus.SUCCESS: "succeeded",
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELED: "failed",
}


def _hold(instance: dg.DagsterInstance, cursor: MonitorCursor, key: str, rerun: Rerun, now: float) -> Hold:
    """The partition's hold on the run asked for it (`state.rerun.hold`), with that run's outcome
    read from the instance."""
    asked = RunAsked(**cursor.requested[key]) if key in cursor.requested else None
    record_id = cursor.watched[key].record_id
    last_run = None
    if asked is not None and asked.record_id == record_id:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": asked.run_key}), limit=1)
        if runs:
            last_run = LastRun(runs[0].run_id, _OUTCOMES.get(runs[0].status, "running"))
    return hold(asked, record_id, last_run, now, rerun)


def _stranded(uc: UseCase, state: PartitionState, reason: str) -> dg.AssetObservation:
    """Where the user looks: an observation on the partition's results asset."""
    return dg.AssetObservation(asset_key=asset_key(uc, "results"), partition=uc.dagster_partition(state.partition),
                               metadata={"stranded": reason})


def _collect_states(instance: dg.DagsterInstance, uc: UseCase, cursor: MonitorCursor) -> bool:
    """Watch every partition whose state changed since the last tick; the newest state wins.
    True when a watched partition was added or given a newer state."""
    changed = False
    for key in record_keys(uc):
        name = key.to_user_string()
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor.after.get(name)),
            limit=_EVENTS_PER_TICK,
            ascending=True,
        ).records
        for event in records:
            cursor.after[name] = event.storage_id
            try:
                state = state_from(event, uc)
            except StateVersionError as exc:  # never acted on: it waits for this code to be upgraded
                _refuse(cursor, uc, event, exc)
                continue
            if state is None:
                continue
            watch_key = f"{uc.name}|{state.partition}"
            cursor.refused.pop(watch_key, None)
            current = cursor.watched.get(watch_key)
            if current is not None and current.record_id > state.record_id:
                continue
            if settled(state, time.time()):
                cursor.watched.pop(watch_key, None)
            else:
                cursor.watched[watch_key] = state
                changed = True
    return changed


def _refuse(cursor: MonitorCursor, uc: UseCase, event: dg.EventLogRecord, exc: StateVersionError) -> None:
    """Stop watching a partition whose newest state this code cannot read, and say why on every
    tick (the sensor keeps watching the others)."""
    materialization = event.asset_materialization
    partition = uc.partition_of(materialization.partition if materialization else None)
    watch_key = f"{uc.name}|{partition}"
    cursor.watched.pop(watch_key, None)
    cursor.refused[watch_key] = str(exc)


def _batch_states(batch_api: BatchAPIResource, watched: Iterable[PartitionState]
                  ) -> tuple[dict[str, ProviderBatch], int]:
    """The current state of every watched batch, asked of the provider that holds it (see
    `BatchAPI.batches`), and the calls sent; batches at a provider no longer configured stay
    unseen, so their partitions wait."""
    api = batch_api.api()
    here = api.provider.fingerprint()
    groups: dict[str, tuple[set[str], float]] = {}
    for state in watched:
        for sub in state.unharvested:
            at = sub.provider_fingerprint or here
            ids, since = groups.get(at, (set(), state.recorded_at))
            groups[at] = (ids | {sub.batch_id}, min(since, state.recorded_at))
    found: dict[str, ProviderBatch] = {}
    holders = [api]
    for at, (ids, since) in groups.items():
        holder = api if at == here else batch_api.api_at(at)
        if holder is not None:
            found |= holder.batches(ids, since)
            holders += [] if holder is api else [holder]
    return found, sum(h.calls for h in holders)


def _tokens_in_flight(
    watched: Iterable[PartitionState], batches: dict[str, ProviderBatch], by_name: dict[str, UseCase]
) -> dict[str, int]:
    """Estimated tokens of our batches not yet terminal, per model (unseen ones count)."""
    totals: dict[str, int] = {}
    for state in watched:
        model = by_name[state.use_case].spec.model
        for sub in state.unharvested:
            batch = batches.get(sub.batch_id)
            if batch is None or batch.status not in TERMINAL:
                totals[model] = totals.get(model, 0) + sub.estimated_tokens
    return totals


def _progress(
    uc: UseCase, state: PartitionState, seen: list[ProviderBatch], progress: dict[str, list]
) -> list[dg.AssetObservation]:
    """An observation on the batches asset for each batch whose progress changed."""
    observations = []
    for batch in seen:
        counts = batch.request_counts
        now = [batch.status, counts.completed, counts.failed, counts.total] if counts else [batch.status]
        if progress.get(batch.id) == now:
            continue
        progress[batch.id] = now
        metadata: dict = {"batch_id": batch.id, "status": batch.status}
        if counts:
            metadata |= {"completed": counts.completed, "failed": counts.failed, "total": counts.total}
        observations.append(
            dg.AssetObservation(asset_key=asset_key(uc, "batches"), partition=uc.dagster_partition(state.partition),
                               metadata=metadata)
        )
    return observations
