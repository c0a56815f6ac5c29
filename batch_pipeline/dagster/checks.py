"""The checks: every source row once and the answer-quality rates (results), rows in no partition
(requests). Each is recorded per partition, with the partition's key.

A step reports its checks with `recorded`: one `AssetCheckEvaluation` per check and partition it
evaluated, after the step's materialization, each targeting the partition's newest materialization
(the one it checked). `AssetCheckResult` cannot name a partition, so in a run of several
partitions (one run per backfill range) Dagster would record it unpartitioned and each planned
partition as "Skipped" beside it. Dagster counts a partition's check as passed or failed only
while its evaluation targets the partition's newest materialization; one that targets none is
never current once the partition is materialized, and the check's partitions show as missing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_pipeline.dagster.dagster_private import materialization_target
from batch_pipeline.dagster.jobs import asset_key
from batch_pipeline.dagster.preview import markdown_table
from batch_pipeline.harvest.lines import counts_by_status
from batch_pipeline.harvest.partition import Harvest
from batch_pipeline.sources.base import Source
from batch_pipeline.sources.partitions import dimensions
from batch_pipeline.sources.unassigned import FUTURE, unassigned_rows
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse, arrow_file

UNASSIGNED_ROWS = "unassigned_rows"
EVERY_ROW_ONCE = "every_row_once"
INVALID_OUTPUT_RATE = "invalid_output_rate"
REFUSAL_RATE = "refusal_rate"
# Dagster 1.13 marks `AssetCheckSpec(partitions_def=...)` as a preview and warns each time one is made.
_PARTITIONED_SPEC_PREVIEW = "Specifying a partitions_def on an AssetCheckSpec is currently in preview"


# Checks whose failure stops downstream use of the partition: rows missing or doubled make the
# results wrong, not merely worse (the rates are warnings; unassigned rows are other partitions').
BLOCKING = frozenset({EVERY_ROW_ONCE})


def _spec(uc: UseCase, stage: str, name: str, description: str) -> dg.AssetCheckSpec:
    """A check partitioned as its asset. Partitioned specs are the only way to show a check per
    partition in Dagster 1.13, and still a preview there: exactly that warning is silenced,
    here, so it is not printed by every process that loads the code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PARTITIONED_SPEC_PREVIEW, category=dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset_key(uc, stage), description=description,
                                 partitions_def=uc.partitions_def, blocking=name in BLOCKING)


def check_specs(uc: UseCase) -> list[dg.AssetCheckSpec]:
    spec = uc.spec
    return [
        _spec(uc, "results", EVERY_ROW_ONCE, "Every source row of the partition appears exactly once."),
        _spec(uc, "results", INVALID_OUTPUT_RATE,
              f"At most {spec.max_invalid_output_rate:.0%} of answers fail their schema."),
        _spec(uc, "results", REFUSAL_RATE,
              f"At most {spec.max_refusal_rate:.0%} of requests are refused by the model."),
    ]


def unassigned_spec(uc: UseCase) -> dg.AssetCheckSpec:
    """A property of the whole table, yet partitioned: Dagster 1.13 plans every check of a
    partitioned run once per partition of the run, so an unpartitioned evaluation would leave each
    of those planned as "Skipped" beside it."""
    return _spec(
        uc, "requests", UNASSIGNED_ROWS,
        "Every source row belongs to a partition: none has a blank or malformed partition value, or one "
        "the partitions definition does not have (those would be in no results). A property of the whole "
        "table, recorded for each partition a run builds.",
    )


def recorded(context: dg.AssetExecutionContext, evaluations: Iterable[dg.AssetCheckEvaluation]
             ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """The step's evaluations, then the check outputs Dagster expects of it (what an
    `AssetCheckResult` would add). A check with no evaluation for a partition of the run (one that
    waits for its batches) did not run, and Dagster shows it as skipped there."""
    for evaluation in evaluations:
        yield _targeting(context.instance, evaluation)
    for key in context.selected_asset_check_keys:
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))


def _targeting(instance: dg.DagsterInstance, evaluation: dg.AssetCheckEvaluation) -> dg.AssetCheckEvaluation:
    """The evaluation pointed at the partition's newest materialization: the step's own, recorded
    before its checks, or, in a step that materialized nothing, the one it read back."""
    partitions = None if evaluation.partition is None else [evaluation.partition]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=evaluation.asset_key, asset_partitions=partitions), limit=1).records
    if not records:
        return evaluation
    newest = records[0]
    return dg.AssetCheckEvaluation(
        asset_key=evaluation.asset_key, check_name=evaluation.check_name, passed=evaluation.passed,
        metadata=evaluation.metadata, severity=evaluation.severity, description=evaluation.description,
        blocking=evaluation.blocking, partition=evaluation.partition,
        target_materialization_data=materialization_target(newest.storage_id, newest.run_id, newest.timestamp),
    )


def _evaluation(uc: UseCase, stage: str, name: str, partition: str, passed: bool, metadata: Mapping[str, Any],
                **kwargs: Any) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=asset_key(uc, stage), check_name=name, passed=passed, metadata=metadata,
                                   partition=uc.dagster_partition(partition), blocking=name in BLOCKING, **kwargs)


def unassigned(uc: UseCase, instance: dg.DagsterInstance, partitions: Iterable[str],
               loaded: Source | None = None) -> list[dg.AssetCheckEvaluation]:
    """Rows no partition will ever read, with key, line and reason, for each of `partitions`; rows
    of a partition that does not exist yet (a later date) are counted but do not fail the check:
    they are read then."""
    dynamic = {d.name: instance.get_dynamic_partitions(d.name) for _, d in dimensions(uc.partitions_def)
               if isinstance(d, dg.DynamicPartitionsDefinition) and d.name}
    rows = unassigned_rows(loaded or uc.source, uc.partitions_def, dynamic_keys=dynamic)
    later = pc.sum(pc.equal(rows["reason"], FUTURE)).as_py() or 0
    lost = rows.filter(pc.not_equal(rows["reason"], FUTURE))
    metadata = {
        "unassigned": lost.num_rows,
        "in_later_partitions": later,
        "preview": dg.MetadataValue.md(markdown_table(lost, 20)),
    }
    description = f"{lost.num_rows} source rows are in no partition" if lost.num_rows else None
    return [_evaluation(uc, "requests", UNASSIGNED_ROWS, partition, lost.num_rows == 0, metadata,
                        description=description) for partition in partitions]


def results(uc: UseCase, partition: str, harvest: Harvest) -> list[dg.AssetCheckEvaluation]:
    """The results checks of one harvested partition."""
    return _results(uc, partition, harvest.index, harvest.written_ids(), harvest.counts, harvest.refusals)


def results_on_disk(uc: UseCase, wh: Warehouse, partition: str) -> list[dg.AssetCheckEvaluation]:
    """The results checks of a partition's results as an earlier run wrote them (read back, only
    the columns the checks need): a run that plans the checks and writes nothing still
    evaluates them, rather than leave them "Skipped" for the partition."""
    index = wh.read_parquet(wh.partition_dir(uc.name, layout.REQUESTS, partition) / layout.INDEX_FILE)
    with arrow_file(wh.partition_dir(uc.name, layout.RESULTS, partition) / layout.RESULTS_FILE) as f:
        written = pq.read_table(f, columns=["custom_id", "status", "error_code"])
    refusals = pc.sum(pc.equal(written["error_code"], "refusal")).as_py() or 0
    return _results(uc, partition, index, written, counts_by_status(written), refusals)


def _results(uc: UseCase, partition: str, index: pa.Table, written: pa.Table, counts: Mapping[str, int],
             refusals: int) -> list[dg.AssetCheckEvaluation]:
    answered = counts["succeeded"] + counts["invalid_output"]
    spec = uc.spec
    return [
        _every_row_once(uc, partition, _accounting_problems(index, written)),
        _rate(uc, partition, INVALID_OUTPUT_RATE, counts["invalid_output"], answered, spec.max_invalid_output_rate),
        _rate(uc, partition, REFUSAL_RATE, refusals, answered, spec.max_refusal_rate),
    ]


def _accounting_problems(index: pa.Table, results: pa.Table) -> list[str]:
    """Source rows missing from, or doubled in, a partition's results, by custom_id."""
    expected = index["custom_id"].to_pylist()
    seen: set[str] = set()
    doubled: set[str] = set()
    for custom_id in results["custom_id"].to_pylist():
        (doubled if custom_id in seen else seen).add(custom_id)
    missing = sorted(set(expected) - seen)
    problems = []
    if missing:
        problems.append(f"{len(missing)} rows missing: {', '.join(missing[:20])}")
    if doubled:
        problems.append(f"{len(doubled)} rows doubled: {', '.join(sorted(doubled)[:20])}")
    return problems


def _every_row_once(uc: UseCase, partition: str, problems: list[str]) -> dg.AssetCheckEvaluation:
    return _evaluation(uc, "results", EVERY_ROW_ONCE, partition, not problems, {"problems": len(problems)},
                       description="; ".join(problems)[:2000] or None)


def _rate(uc: UseCase, partition: str, name: str, count: int, answered: int, limit: float
               ) -> dg.AssetCheckEvaluation:
    """A WARN check: the share of the partition's answered rows with a problem stays under the limit."""
    rate = count / answered if answered else 0.0
    metadata = {"rate": dg.MetadataValue.float(round(rate, 4)), "count": count, "answered": answered,
                "limit": dg.MetadataValue.float(limit)}
    return _evaluation(uc, "results", name, partition, rate <= limit, metadata,
                       severity=dg.AssetCheckSeverity.WARN)
