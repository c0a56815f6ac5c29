"""A use case (source table + `BatchSpec`) to Dagster definitions: requests, batches, results.

The asset bodies are thin: for each partition of the run (one run can submit a whole backfill
range, `BackfillPolicy.single_run()`), they ask the state machine what to do
(`batch_pipeline.state.machine.next_action`), call the stage that does it, and record metadata
and the partition's new state.
"""


import time
from collections.abc import Sequence

import dagster as dg
from pydantic import Field

from batch_pipeline.dagster import checks
from batch_pipeline.dagster.metadata import (
    batches_metadata,
    requests_metadata,
    results_metadata,
    waiting_metadata,
)
from batch_pipeline.dagster.resources import BatchAPIResource, WarehouseResource
from batch_pipeline.dagster.state_store import latest_state
from batch_pipeline.failpoints import failpoint
from batch_pipeline.harvest.partition import harvest_partition
from batch_pipeline.provider.partition import submit_partition
from batch_pipeline.requests.partition import build_partition, stray_rounds
from batch_pipeline.state.machine import (
    Admit,
    Blocked,
    ProviderReport,
    RebuildAsked,
    SubmitAsked,
    Wait,
    next_action,
)
from batch_pipeline.state.partition_state import PartitionState
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse


class SubmitConfig(dg.Config):
    """Run-time knobs of a submission, set in the Launchpad."""

    max_run_cost_usd: float | None = Field(
        default=None, description="Refuse to submit when this run's estimated cost is higher."
    )


def use_case_definitions(uc: UseCase) -> dg.Definitions:
    """The use case's assets, its submit, admit and results jobs, and its daily schedule."""
    schedule = dg.build_schedule_from_partitioned_job(
        uc.submit_job, hour_of_day=1, default_status=dg.DefaultScheduleStatus.RUNNING
    )
    source = dg.AssetSpec(
        uc.key("source"),
        description=f"Source table `{uc.source.path.name}`, one partition per `{uc.source.partition_column}`.",
        kinds={"csv"},
        group_name=uc.name,
        partitions_def=uc.partitions_def,
        metadata={"path": dg.MetadataValue.path(str(uc.source.path))},
    )
    return dg.Definitions(
        assets=[source, _requests_asset(uc), _batches_asset(uc), _results_asset(uc)],
        jobs=[uc.submit_job, uc.admit_job, uc.results_job],
        schedules=[schedule],
    )


def _common(uc: UseCase) -> dict:
    return dict(
        partitions_def=uc.partitions_def,
        group_name=uc.name,
        owners=list(uc.spec.owners) or None,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )


def _left_alone(context: dg.AssetExecutionContext, uc: UseCase, partition: str, action: object) -> bool:
    """True (and noted in the log and metadata) when the state machine says to leave it."""
    if not isinstance(action, Blocked):
        return False
    note = f"left as it was: {action.reason}"
    context.log.warning("%s %s: %s", uc.name, partition, note)
    context.add_asset_metadata({"note": note}, partition_key=partition)
    return True


def _strays(wh: Warehouse, uc: UseCase, partition: str, state: PartitionState | None) -> tuple[str, ...]:
    if state is None:
        return ()
    return stray_rounds(wh, uc, partition, state.recorded_paths(), state.recorded_at)


def _requests_asset(uc: UseCase) -> dg.AssetsDefinition:
    @dg.asset(
        key=uc.key("requests"),
        deps=[uc.key("source")],
        kinds={"python", "jsonl"},
        description=f"One {uc.spec.endpoint} request per source row of the partition, as JSONL "
        f"shards; rows that cannot become a request are kept as rejected rows. Model {uc.spec.model}.",
        **_common(uc),
    )
    def requests(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> None:
        wh, total = warehouse.warehouse(), 0.0
        for partition in context.partition_keys:
            state = latest_state(context.instance, uc, partition)
            if _left_alone(context, uc, partition, next_action(state, RebuildAsked(_strays(wh, uc, partition, state)))):
                continue
            built = build_partition(wh, uc, partition)
            cost = uc.estimate(built.index)
            total += cost.cost_usd
            context.log.info(
                "%s %s: %d rows -> %d requests in %d shards, %d rejected, %d keep their answer",
                uc.name, partition, built.index.num_rows, built.to_send, len(built.shards),
                built.rejected.num_rows, built.kept,
            )
            context.add_asset_metadata(requests_metadata(uc, partition, built, cost), partition_key=partition)
        failpoint("requests.done")
        context.log.info("estimated cost of %d partitions: $%.4f at batch prices", len(context.partition_keys), total)

    return requests


def _check_budget(wh: Warehouse, uc: UseCase, partitions: Sequence[str], run_limit: float | None) -> None:
    """Stop before any upload when a partition, or the run, is estimated over its budget."""
    total, limit = 0.0, uc.spec.max_cost_usd
    for partition in partitions:
        index_path = wh.partition_dir(uc.name, layout.REQUESTS, partition) / layout.INDEX_FILE
        if not index_path.exists():
            raise dg.Failure(f"{uc.name} {partition}: no request index at {index_path}; "
                             "materialize the requests asset for this partition first")
        cost = uc.estimate(wh.read_parquet(index_path)).cost_usd
        total += cost
        if limit is not None and cost > limit:
            raise dg.Failure(f"{uc.name} {partition}: estimated cost ${cost:.4f} is over the spec's "
                             f"max_cost_usd ${limit:.4f}; nothing was uploaded")
    if run_limit is not None and total > run_limit:
        raise dg.Failure(f"{uc.name}: estimated cost ${total:.4f} of {len(partitions)} partitions is over "
                         f"max_run_cost_usd ${run_limit:.4f}; nothing was uploaded")


def _batches_asset(uc: UseCase) -> dg.AssetsDefinition:
    @dg.asset(
        key=uc.key("batches"),
        deps=[uc.key("requests")],
        kinds={"openai"},
        pool=f"{uc.name}_batch_api",
        description="Each request shard uploaded and submitted as one Batch API batch, tagged "
        "with an idempotency key so a rerun reuses the batch instead of paying twice.",
        **_common(uc),
    )
    def batches(
        context: dg.AssetExecutionContext, config: SubmitConfig, warehouse: WarehouseResource,
        batch_api: BatchAPIResource,
    ) -> None:
        wh = warehouse.warehouse()
        _check_budget(wh, uc, context.partition_keys, config.max_run_cost_usd)
        gateway, limit = batch_api.gateway(), batch_api.enqueued_token_limits.get(uc.spec.model)
        for partition in context.partition_keys:
            state = latest_state(context.instance, uc, partition)
            if _left_alone(context, uc, partition, next_action(state, SubmitAsked(_strays(wh, uc, partition, state)))):
                continue
            sent = submit_partition(wh, gateway, uc, partition, limit, context.log.info)
            new_state = PartitionState(uc.name, partition, tuple(sent.submissions), tuple(sent.queued))
            context.add_asset_metadata(batches_metadata(new_state, sent, batch_api.describe()), partition_key=partition)
        failpoint("batches.done")

    return batches


def _results_asset(uc: UseCase) -> dg.AssetsDefinition:
    @dg.asset(
        key=uc.key("results"),
        deps=[uc.key("batches")],
        pool=f"{uc.name}_batch_api",
        kinds={"python", "parquet"},
        description="One row per source row of the partition: the answer, its status, error, "
        "tokens, cost and batch id, joined by custom_id and written as Parquet.",
        check_specs=checks.check_specs(uc),
        **_common(uc),
    )
    def results(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, batch_api: BatchAPIResource,
    ) -> dg.MaterializeResult:
        return _harvest_run(context, uc, warehouse.warehouse(), batch_api)

    return results


def _harvest_run(
    context: dg.AssetExecutionContext, uc: UseCase, wh: Warehouse, batch_api: BatchAPIResource
) -> dg.MaterializeResult:
    """Harvest every partition of the run whose batches are terminal; the others wait (green)."""
    gateway, limit = batch_api.gateway(), batch_api.enqueued_token_limits.get(uc.spec.model)
    problems: list[str] = []
    rates = {"answered": 0, "invalid_output": 0, "refusal": 0, "partitions": 0}
    for partition in context.partition_keys:
        state = latest_state(context.instance, uc, partition)
        statuses = {s.batch_id: gateway.retrieve(s.batch_id).status for s in (state.unharvested if state else ())}
        action = next_action(state, ProviderReport(statuses, now=time.time()))
        if isinstance(action, Blocked) or state is None:
            raise dg.Failure(f"{uc.name} {partition}: {getattr(action, 'reason', action)}")
        if isinstance(action, Wait | Admit):
            reason = action.reason if isinstance(action, Wait) else "shards wait for enqueued-token capacity"
            context.log.info("%s %s: waiting (%s); the batch monitor harvests it", uc.name, partition, reason)
            context.add_asset_metadata(waiting_metadata(state, reason), partition_key=partition)
            continue
        harvest = harvest_partition(wh, gateway, uc, state, limit, context.log.info)
        failpoint("results.written")
        problems += checks.accounting_problems(partition, harvest.index, harvest.written_ids())
        context.log.info("%s %s: %s; %d requests being retried", uc.name, partition, harvest.counts, harvest.retrying)
        rates["answered"] += harvest.counts["succeeded"] + harvest.counts["invalid_output"]
        rates["invalid_output"] += harvest.counts["invalid_output"]
        rates["refusal"] += harvest.refusals
        rates["partitions"] += 1
        metadata = results_metadata(uc, harvest, uc.estimate(harvest.index).cost_usd)
        context.add_asset_metadata(metadata, partition_key=partition)
    return dg.MaterializeResult(check_results=[
        checks.every_row_once(problems, rates["partitions"]),
        checks.rate_check(checks.INVALID_OUTPUT_RATE, rates["invalid_output"], rates["answered"],
                          uc.spec.max_invalid_output_rate),
        checks.rate_check(checks.REFUSAL_RATE, rates["refusal"], rates["answered"], uc.spec.max_refusal_rate),
    ])
