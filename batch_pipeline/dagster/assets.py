"""A use case (source table + `BatchSpec`) to Dagster definitions: requests, batches, results.

The asset bodies are thin: for each partition of the run (one run can submit a whole backfill
range, `BackfillPolicy.single_run()`), they ask the state machine what to do
(`batch_pipeline.state.machine.next_action`), call the stage that does it, and record metadata
and the partition's new state.
"""


import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

from batch_pipeline.cost import History
from batch_pipeline.dagster import checks
from batch_pipeline.dagster.failures import as_failures
from batch_pipeline.dagster.jobs import admit_job, asset_key, results_job, submit_job
from batch_pipeline.dagster.metadata import (
    batches_metadata,
    requests_metadata,
    results_metadata,
    waiting_metadata,
)
from batch_pipeline.dagster.resources import DAGSTER_HOME, BatchAPIResource
from batch_pipeline.dagster.state_store import latest_state
from batch_pipeline.dagster.usage_history import recorded_usage, usage_history
from batch_pipeline.failpoints import failpoint
from batch_pipeline.harvest.partition import Harvest as PartitionHarvest
from batch_pipeline.harvest.partition import harvest_partition
from batch_pipeline.harvest.provider_files import delete_provider_files, note_provider_files
from batch_pipeline.provider.contract import ProviderBatch, RequestEncoding
from batch_pipeline.provider.partition import submit_partition
from batch_pipeline.provider.submission import Sending
from batch_pipeline.requests.partition import build_partition, stray_rounds, submitted_state
from batch_pipeline.sources.asset import AssetSource
from batch_pipeline.sources.base import Source
from batch_pipeline.state.budget import PartitionEstimate, budget_refusal
from batch_pipeline.state.cleanup import cleanup_steps
from batch_pipeline.state.lease import partition_lease
from batch_pipeline.state.machine import (
    Action,
    Blocked,
    ProviderReport,
    RebuildAsked,
    SubmitAsked,
    next_action,
)
from batch_pipeline.state.partition_state import PartitionState, Submission
from batch_pipeline.state.results import (
    Fail,
    LeaveToMonitor,
    PollAgain,
    results_step,
    sent_nothing,
)
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse

# What a stage's step yields: its materialization, then its check evaluations and outputs.
StepEvent = dg.MaterializeResult | dg.AssetCheckEvaluation | dg.Output

# How long a run waits for another run of the same partition to finish building, submitting or
# harvesting it, before it fails with "already in flight" (then its batches are reused).
LEASE_WAIT_SECONDS = 600.0
# How often a results step asks again about batches it waits for (`harvest_wait_seconds`).
HARVEST_POLL_SECONDS = 0.5


class SubmitConfig(dg.Config):
    """Run-time knobs of a submission, set in the Launchpad."""

    max_run_cost_usd: float | None = Field(
        default=None, description="Refuse to submit when this run's estimated cost is higher."
    )


def use_case_definitions(uc: UseCase) -> dg.Definitions:
    """The use case's assets, its submit, admit and results jobs, and, for time-window
    partitions, a schedule (off until switched on: with a key set, a schedule spends money)."""
    schedules = []
    if isinstance(uc.partitions_def, dg.TimeWindowPartitionsDefinition):
        schedules.append(dg.build_schedule_from_partitioned_job(
            submit_job(uc), hour_of_day=1, default_status=dg.DefaultScheduleStatus.STOPPED,
            description=f"Builds and submits each new partition of {uc.name} ({uc.spec.model}) after "
            "it ends; off until switched on.",
        ))
    assets: list = [_requests_asset(uc), _batches_asset(uc), _results_asset(uc)]
    if not isinstance(uc.source, AssetSource):  # an upstream asset is its own source asset
        assets.insert(0, dg.AssetSpec(
            asset_key(uc, "source"), description=f"Source {uc.source.describe()}. Read as it is, never materialized by "
            "Dagster, so its partitions show as missing here: each partition's rows are counted on its "
            "requests materialization (dagster/row_count).", kinds={uc.source.kind},
            group_name=uc.name, partitions_def=uc.partitions_def,
        ))
    return dg.Definitions(assets=assets, jobs=[submit_job(uc), admit_job(uc), results_job(uc)], schedules=schedules)


def _spec(uc: UseCase, stage: str, description: str, kinds: set[str], deps: Sequence[dg.AssetKey | dg.AssetDep] = (),
          skippable: bool = False) -> dg.AssetSpec:
    """One stage's asset: in the use case's group, partitioned as the use case says."""
    return dg.AssetSpec(asset_key(uc, stage), deps=deps, description=description, kinds=kinds, group_name=uc.name,
                        owners=list(uc.spec.owners) or None, partitions_def=uc.partitions_def,
                        skippable=skippable)


def _stage(spec: dg.AssetSpec, uc: UseCase, **kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.multi_asset` over one spec: the asset `@dg.asset` would make (same op name), but with a
    backfill policy that is a stable parameter here (on `@dg.asset` it is beta and prints a
    BetaWarning in every process that loads the code)."""
    return dg.multi_asset(name=spec.key.to_python_identifier(), specs=[spec], partitions_def=uc.partitions_def,
                          backfill_policy=_backfill_policy(uc), **kwargs)


def _backfill_policy(uc: UseCase) -> dg.BackfillPolicy | None:
    """One run for a whole backfill range, except over an upstream asset whose loaded value is
    the partition's rows (no partition column): there a run per partition, so the IO manager
    loads exactly one partition's rows."""
    if uc.partitions_def is None:
        return None
    if isinstance(uc.source, AssetSource) and not uc.source.partition_columns:
        return dg.BackfillPolicy.multi_run(1)
    return dg.BackfillPolicy.single_run()


def _partitions(context: dg.AssetExecutionContext, uc: UseCase) -> list[str]:
    """The run's partitions (the whole table for an unpartitioned use case)."""
    return list(context.partition_keys) if uc.partitions_def is not None else [uc.partition_of(None)]


def _resources(context: dg.AssetExecutionContext, uc: UseCase) -> tuple[Warehouse, BatchAPIResource]:
    """The warehouse and batch API under the use case's resource keys."""
    keys = uc.resource_keys
    return getattr(context.resources, keys.warehouse).warehouse(), getattr(context.resources, keys.batch_api)


def _bound(context: dg.AssetExecutionContext, uc: UseCase, sending: bool = True
           ) -> tuple[UseCase, Warehouse, BatchAPIResource]:
    """The use case as it runs on the provider in use (its model there, so estimates, prices and
    learned usage are that model's), its warehouse and its Batch API. A step that builds or sends
    fails here when the provider has not the use case's endpoint or model, before anything is
    built; a results step does not: it harvests batches from the provider that holds them."""
    wh, batch_api = _resources(context, uc)
    with as_failures(f"spec '{uc.name}'"):
        provider = batch_api.provider_in_use()
        if sending:
            provider.encoding(uc.spec)
        return uc.on(provider.name), wh, batch_api


def _metadata(context: dg.AssetExecutionContext, uc: UseCase, partition: str, metadata: dict) -> None:
    context.add_asset_metadata(metadata, partition_key=uc.dagster_partition(partition))


def _left_alone(context: dg.AssetExecutionContext, uc: UseCase, partition: str, action: object) -> bool:
    """True (and noted in the log and metadata) when the state machine says to leave it."""
    if not isinstance(action, Blocked):
        return False
    note = f"left as it was: {action.reason}"
    context.log.warning("%s %s: %s", uc.name, partition, note)
    _metadata(context, uc, partition, {"note": note})
    return True


def _strays(wh: Warehouse, uc: UseCase, partition: str, state: PartitionState | None) -> tuple[str, ...]:
    if state is None:
        return ()
    return stray_rounds(wh, uc, partition, state.recorded_paths(), state.recorded_at)


@dataclass(frozen=True)
class _Step:
    """One partition's step: its latest state (read once, under its lease), the state machine's
    action, and the batches the provider reported for it (results steps only)."""

    partition: str
    state: PartitionState | None
    action: Action
    batches: dict[str, ProviderBatch] = field(default_factory=dict)


_Done = TypeVar("_Done")
# How a stage asks the state machine about a partition and its latest state.
_Ask = Callable[[str, PartitionState | None], _Step]


def _run_steps(context: dg.AssetExecutionContext, uc: UseCase, wh: Warehouse, ask: _Ask,
               stage: Callable[[_Step], _Done]) -> list[_Done]:
    """The step runner of the three stages: for each partition of the run, under its lease, read
    the latest state once, ask the state machine (`ask`), and run the stage on the answer (the
    stage carries out the action and records the partition's metadata)."""
    done = []
    for partition in _partitions(context, uc):
        with _lease(wh, uc, partition):
            done.append(stage(ask(partition, latest_state(context.instance, uc, partition))))
    return done


def _asking(wh: Warehouse, uc: UseCase, event: type[RebuildAsked | SubmitAsked]) -> _Ask:
    """Ask about rebuilding or submitting, naming the retry files no state records."""
    return lambda partition, state: _Step(partition, state, next_action(state, event(
        _strays(wh, uc, partition, state))))


def _requests_asset(uc: UseCase) -> dg.AssetsDefinition:
    """The requests asset. Over an upstream asset it takes that asset as its input, one partition
    per run, so the IO manager loads exactly the partition's rows (or a mapping's range)."""
    # An upstream asset's partition mapping goes on the dependency: Dagster refuses it on the input
    # when the spec names the same key as a dependency.
    upstream = (dg.AssetDep(uc.source.asset_key, partition_mapping=uc.source.partition_mapping)
                if isinstance(uc.source, AssetSource) else asset_key(uc, "source"))
    spec = _spec(uc, "requests", f"One {uc.spec.endpoint} request per source row of the partition, as JSONL "
                 f"shards; rows that cannot become a request are kept as rejected rows. Model {uc.spec.model}.",
                 {"python", "jsonl"}, deps=[upstream])
    common: dict[str, Any] = dict(
        check_specs=[checks.unassigned_spec(uc)] if uc.source.partition_columns else None,
        required_resource_keys={uc.resource_keys.warehouse, uc.resource_keys.batch_api},
    )
    if isinstance(uc.source, AssetSource):
        source = uc.source

        @_stage(spec, uc, ins={"upstream": dg.AssetIn(source.asset_key)},
                **common)
        def requests_from_asset(context: dg.AssetExecutionContext, upstream: Any) -> Iterator[StepEvent]:
            yield from _requests_run(context, uc, source.loaded(upstream))

        return requests_from_asset

    @_stage(spec, uc, **common)
    def requests(context: dg.AssetExecutionContext) -> Iterator[StepEvent]:
        yield from _requests_run(context, uc, None)

    return requests


def _requests_run(context: dg.AssetExecutionContext, uc: UseCase, loaded: Source | None) -> Iterator[StepEvent]:
    """Build every partition of the run (each under its lease), in the provider's form, and check
    for unassigned rows."""
    uc, wh, batch_api = _bound(context, uc)
    form, history = _encoding(uc, batch_api), usage_history(context.instance, uc)
    costs = _run_steps(context, uc, wh, _asking(wh, uc, RebuildAsked),
                       lambda step: _build(context, wh, uc, step, loaded, form, history))
    failpoint("requests.done")
    context.log.info("estimated cost of %d partitions: $%.4f at batch prices", len(costs), sum(costs))
    yield dg.MaterializeResult()
    if context.selected_asset_check_keys:  # declared when the source names partition columns
        yield from checks.recorded(context, checks.unassigned(uc, context.instance, _partitions(context, uc), loaded))


def _encoding(uc: UseCase, batch_api: BatchAPIResource) -> RequestEncoding:
    """How the provider wants the use case's request lines; an incomplete provider setting (an
    Azure model with no deployment) fails the run here, before anything is built or uploaded."""
    with as_failures(f"spec '{uc.name}'"):
        return batch_api.provider_in_use().encoding(uc.spec)


def _sending(context: dg.AssetExecutionContext, uc: UseCase, batch_api: BatchAPIResource) -> Sending:
    """How this run sends the use case's shards; an incomplete provider setting fails it here."""
    with as_failures(f"spec '{uc.name}'"):
        return batch_api.sending(uc.spec.model, context.log.info)


def _build(context: dg.AssetExecutionContext, wh: Warehouse, uc: UseCase, step: _Step,
           loaded: Source | None, form: RequestEncoding, history: History) -> float:
    """Rebuild one partition's requests unless the state machine said to leave it; its cost,
    estimated from the use case's earlier harvests (`history`)."""
    partition, state = step.partition, step.state
    if _left_alone(context, uc, partition, step.action):
        return 0.0
    built = build_partition(wh, uc, partition, loaded, form, state.batches if state else ())
    with as_failures(f"spec '{uc.name}'"):  # an unpriced model
        cost = uc.estimate_tokens(built.pending_tokens, history)
    context.log.info(
        "%s %s: %d rows -> %d requests in %d shards, %d rejected, %d keep their answer; estimated $%.4f (%s)",
        uc.name, partition, built.rows, built.to_send, len(built.shards),
        built.rejected, built.kept, cost.cost_usd, cost.basis.describe(),
    )
    _metadata(context, uc, partition, requests_metadata(uc, partition, built, cost))
    return cost.cost_usd


def _submit(
    context: dg.AssetExecutionContext, wh: Warehouse, uc: UseCase, step: _Step, sending: Sending, provider: str,
) -> None:
    """Submit one partition's shards unless the state machine said to leave it; record its state.
    A partition that sent nothing and waits for nothing is harvested by a results step: the one
    right after this in "Materialize all", else the one the batch monitor asks for. Each step
    records its own asset, in the order the run executes them, so no partition is left stale."""
    partition = step.partition
    if _left_alone(context, uc, partition, step.action):
        return
    # shards written for another provider (nothing was sent), or a submission an operator must
    # resolve (which batch is the shard's)
    with as_failures(f"{uc.name} {partition}"):
        sent = submit_partition(wh, sending, sending.api.provider.encoding(uc.spec), uc.name, partition,
                                uc.spec.model)
    new_state = submitted_state(wh, uc, partition, step.state, sent)
    _metadata(context, uc, partition, batches_metadata(new_state, sent, provider))


@contextmanager
def _lease(wh: Warehouse, uc: UseCase, partition: str) -> Iterator[None]:
    """Hold the partition against other runs; a run that waited too long fails with the reason.
    Only taking the lease is translated: the stage's own errors pass through as they are."""
    with ExitStack() as held:
        with as_failures(f"{uc.name} {partition}"):
            held.enter_context(partition_lease(wh, uc.name, partition, LEASE_WAIT_SECONDS))
        yield


def _refuse_a_temporary_instance(instance: dg.DagsterInstance) -> None:
    """Paid work must be recorded where the batch monitor looks: a throw-away instance (no
    DAGSTER_HOME, e.g. `dagster asset materialize` run bare) would orphan its batches."""
    temporary = not DAGSTER_HOME.get_value() and Path(instance.root_directory or "/").is_relative_to(
        tempfile.gettempdir())
    if instance.is_ephemeral or temporary:
        raise dg.Failure(
            "this run's Dagster instance is temporary (DAGSTER_HOME is not set), so the batch monitor "
            "sensor would never see its batches; nothing was uploaded. Run it on the instance the "
            "daemon uses, e.g. DAGSTER_HOME=$PWD/.dagster_home dagster asset materialize ...",
            allow_retries=False,
        )


def _check_budget(wh: Warehouse, uc: UseCase, partitions: Sequence[str], run_limit: float | None,
                  history: History) -> None:
    """Stop before any upload when `state.budget` refuses the run's estimates (from the use
    case's earlier harvests, as the requests asset estimated them)."""
    estimates = []
    for partition in partitions:
        index_path = wh.partition_dir(uc.name, layout.REQUESTS, partition) / layout.INDEX_FILE
        if not index_path.exists():
            raise dg.Failure(f"{uc.name} {partition}: no request index at {index_path}; "
                             "materialize the requests asset for this partition first", allow_retries=False)
        with as_failures(f"spec '{uc.name}'"):  # an unpriced model
            estimate = uc.estimate(wh.read_parquet(index_path), history)
        estimates.append(PartitionEstimate(partition, estimate.cost_usd, estimate.basis.describe()))
    refusal = budget_refusal(uc.name, estimates, uc.spec.max_cost_usd, run_limit)
    if refusal is not None:
        raise dg.Failure(refusal, allow_retries=False)


def _batches_asset(uc: UseCase) -> dg.AssetsDefinition:
    spec = _spec(uc, "batches", "Each request shard uploaded and submitted as one Batch API batch, tagged "
                 "with an idempotency key so a rerun reuses the batch instead of paying twice.",
                 {"openai"}, deps=[asset_key(uc, "requests")])

    @_stage(spec, uc, pool=f"{uc.name}_batch_api",
            required_resource_keys={uc.resource_keys.warehouse, uc.resource_keys.batch_api})
    def batches(context: dg.AssetExecutionContext, config: SubmitConfig) -> None:
        _refuse_a_temporary_instance(context.instance)
        on, wh, batch_api = _bound(context, uc)
        _check_budget(wh, on, _partitions(context, on), config.max_run_cost_usd,
                      usage_history(context.instance, on))
        sending, provider = _sending(context, on, batch_api), batch_api.describe()
        _run_steps(context, on, wh, _asking(wh, on, SubmitAsked),
                   lambda step: _submit(context, wh, on, step, sending, provider))
        failpoint("batches.done")

    return batches


def _results_asset(uc: UseCase) -> dg.AssetsDefinition:
    spec = _spec(uc, "results", "One row per source row of the partition: the answer, its status, error, "
                 "tokens, cost and batch id, joined by custom_id and written as Parquet.",
                 {"python", "parquet"}, deps=[asset_key(uc, "batches")], skippable=True)

    @_stage(spec, uc, pool=f"{uc.name}_batch_api", check_specs=checks.check_specs(uc),
            required_resource_keys={uc.resource_keys.warehouse, uc.resource_keys.batch_api})
    def results(context: dg.AssetExecutionContext) -> Iterator[StepEvent]:
        yield from _harvest_run(context, *_bound(context, uc, sending=False))

    return results


def _settled(sending: Sending, deadline: float) -> _Ask:
    """Ask about harvesting with the batches' states (one call each, at the provider that holds
    each), asked again while `state.results.results_step` says to poll (until `deadline`, on
    `time.monotonic()`)."""
    def ask(partition: str, state: PartitionState | None) -> _Step:
        subs: tuple[Submission, ...] = state.unharvested if state else ()
        while True:
            known = {s.batch_id: sending.api_for(s).retrieve(s.batch_id) for s in subs}
            report = ProviderReport({batch_id: batch.status for batch_id, batch in known.items()}, now=time.time())
            step = _Step(partition, state, next_action(state, report), known)
            if not isinstance(results_step(step.action, time.monotonic(), deadline), PollAgain):
                return step
            time.sleep(HARVEST_POLL_SECONDS)
    return ask


def _harvest_one(
    context: dg.AssetExecutionContext, uc: UseCase, wh: Warehouse, sending: Sending, step: _Step,
    history: History, batch_api: BatchAPIResource, deadline: float,
) -> PartitionHarvest | None:
    """Harvest one partition as `state.results.results_step` says; None (and a note) when it is
    left to the batch monitor.

    With the resource's `delete_provider_files`, the harvested batches' provider files (and any
    an earlier, killed run noted) are deleted once the Parquet and the raw copies are written,
    before Dagster records the run (see `harvest/provider_files.py`).
    """
    partition, state, known = step.partition, step.state, step.batches
    move = results_step(step.action, time.monotonic(), deadline)
    if isinstance(move, Fail) or state is None:
        raise dg.Failure(f"{uc.name} {partition}: {getattr(move, 'reason', move)}")
    if isinstance(move, LeaveToMonitor):
        context.log.info("%s %s: waiting (%s); the batch monitor harvests it", uc.name, partition, move.reason)
        statuses = {batch_id: batch.status for batch_id, batch in known.items()}
        _metadata(context, uc, partition, waiting_metadata(state.with_statuses(statuses), move.reason))
        return None
    harvest = _write_results(context, uc, wh, sending, state, known, batch_api.delete_provider_files)
    context.log.info("%s %s: %s; %d requests being retried; %d provider files deleted", uc.name, partition,
                     harvest.counts, harvest.retrying, harvest.files_deleted)
    with as_failures(f"spec '{uc.name}'"):  # an unpriced model
        estimate = uc.estimate(harvest.index, history, with_kept=True)
    usage = recorded_usage(context.instance, uc, context.run.run_id, uc.dagster_partition(partition), harvest.usage)
    metadata = results_metadata(uc, harvest, estimate.cost_usd, usage)
    if "batch_usage_warning" in metadata:
        context.log.warning("%s %s: %s", uc.name, partition, metadata["batch_usage_warning"].value)
    _metadata(context, uc, partition, metadata)
    return harvest


def _write_results(context: dg.AssetExecutionContext, uc: UseCase, wh: Warehouse, sending: Sending,
                   state: PartitionState, known: dict[str, ProviderBatch], delete_files: bool) -> PartitionHarvest:
    """Harvest the partition's terminal batches, with their provider files noted before and
    deleted after, in the order `state.cleanup.cleanup_steps` gives (a run killed after the
    Parquet leaves the note for the next one)."""
    harvest = None
    for step in cleanup_steps(delete_files):
        if step == "note":
            note_provider_files(wh, uc.name, state.partition, known.values())
        elif step == "write":
            harvest = harvest_partition(wh, sending, uc, state, known)
            failpoint("results.written")
        elif harvest is not None:
            harvest.files_deleted = delete_provider_files(wh, sending.api, uc.name, state.partition,
                                                          context.log.warning)
    assert harvest is not None, "every cleanup plan writes the results"
    return harvest


def _unchanged(context: dg.AssetExecutionContext, uc: UseCase, wh: Warehouse, partitions: list[str]
               ) -> Iterator[StepEvent]:
    """The results step of partitions whose results are written and that sent nothing since: no
    output (the results spec is skippable), so no materialization. Dagster plans the results
    checks in every run that selects the asset; they are evaluated against the Parquet as written
    (and target the materialization that wrote it), so they do not show "Skipped"."""
    context.log.info("%s %s: nothing was sent; the results are written", uc.name, ", ".join(partitions))
    yield from checks.recorded(context, [e for p in partitions for e in checks.results_on_disk(uc, wh, p)])


def _harvest_run(
    context: dg.AssetExecutionContext, uc: UseCase, wh: Warehouse, batch_api: BatchAPIResource
) -> Iterator[StepEvent]:
    """Harvest every partition of the run whose batches are terminal, or become so within the
    resource's `harvest_wait_seconds`, and check each; the others wait (green, their checks not
    run). A run whose partitions all sent nothing since their results were written writes nothing
    and yields no materialization (see `_unchanged`). A range run that also
    harvests or waits records every partition of the range (one output covers the range), so it
    rewrites those too."""
    partitions = _partitions(context, uc)
    if all(sent_nothing(latest_state(context.instance, uc, p), time.time()) for p in partitions):
        yield from _unchanged(context, uc, wh, partitions)
        return
    deadline = time.monotonic() + batch_api.harvest_wait_seconds
    sending, history = _sending(context, uc, batch_api), usage_history(context.instance, uc)
    harvests = _run_steps(context, uc, wh, _settled(sending, deadline),
                          lambda step: _harvest_one(context, uc, wh, sending, step, history, batch_api, deadline))
    evaluations = [e for partition, harvest in zip(partitions, harvests, strict=True) if harvest is not None
                   for e in checks.results(uc, partition, harvest)]
    yield dg.MaterializeResult()
    yield from checks.recorded(context, evaluations)
