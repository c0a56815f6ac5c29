"""The results asset's checks: every source row once, and the answer-quality rates."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.dagster.preview import markdown_table
from batch_pipeline.sources.base import Source
from batch_pipeline.sources.partitions import dimensions
from batch_pipeline.sources.unassigned import FUTURE, unassigned_rows
from batch_pipeline.use_case import UseCase

UNASSIGNED_ROWS = "unassigned_rows"
EVERY_ROW_ONCE = "every_row_once"
INVALID_OUTPUT_RATE = "invalid_output_rate"
REFUSAL_RATE = "refusal_rate"


def check_specs(uc: UseCase) -> list[dg.AssetCheckSpec]:
    asset, spec = uc.key("results"), uc.spec
    return [
        dg.AssetCheckSpec(EVERY_ROW_ONCE, asset=asset,
                          description="Every source row of the partition appears exactly once."),
        dg.AssetCheckSpec(INVALID_OUTPUT_RATE, asset=asset,
                          description=f"At most {spec.max_invalid_output_rate:.0%} of answers fail their schema."),
        dg.AssetCheckSpec(REFUSAL_RATE, asset=asset,
                          description=f"At most {spec.max_refusal_rate:.0%} of requests are refused by the model."),
    ]


def unassigned_spec(uc: UseCase) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        UNASSIGNED_ROWS, asset=uc.key("requests"),
        description="Every source row belongs to a partition: none has a blank or malformed partition "
        "value, or one the partitions definition does not have (those would be in no results).",
    )


def unassigned(uc: UseCase, instance: dg.DagsterInstance, loaded: Source | None = None) -> dg.AssetCheckResult:
    """Rows no partition will ever read, with key, line and reason; rows of a partition that does
    not exist yet (a later date) are counted but do not fail the check: they are read then."""
    dynamic = {d.name: instance.get_dynamic_partitions(d.name) for _, d in dimensions(uc.partitions_def)
               if isinstance(d, dg.DynamicPartitionsDefinition) and d.name}
    rows = unassigned_rows(loaded or uc.source, uc.partitions_def, dynamic_keys=dynamic)
    later = pc.sum(pc.equal(rows["reason"], FUTURE)).as_py() or 0
    lost = rows.filter(pc.not_equal(rows["reason"], FUTURE))
    return dg.AssetCheckResult(
        check_name=UNASSIGNED_ROWS,
        passed=lost.num_rows == 0,
        description=f"{lost.num_rows} source rows are in no partition" if lost.num_rows else None,
        metadata={
            "unassigned": lost.num_rows,
            "in_later_partitions": later,
            "preview": dg.MetadataValue.md(markdown_table(lost, 20)),
        },
    )


def accounting_problems(partition: str, index: pa.Table, results: pa.Table) -> list[str]:
    """Source rows missing from, or doubled in, a partition's results, by custom_id."""
    expected = index["custom_id"].to_pylist()
    seen: set[str] = set()
    doubled: set[str] = set()
    for custom_id in results["custom_id"].to_pylist():
        (doubled if custom_id in seen else seen).add(custom_id)
    missing = sorted(set(expected) - seen)
    problems = []
    if missing:
        problems.append(f"{partition}: {len(missing)} rows missing: {', '.join(missing[:20])}")
    if doubled:
        problems.append(f"{partition}: {len(doubled)} rows doubled: {', '.join(sorted(doubled)[:20])}")
    return problems


def every_row_once(problems: list[str], partitions: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=EVERY_ROW_ONCE,
        passed=not problems,
        description="; ".join(problems)[:2000] or None,
        metadata={"partitions": partitions, "problems": len(problems)},
    )


def rate_check(name: str, count: int, answered: int, limit: float) -> dg.AssetCheckResult:
    """A WARN check: the share of answered rows with a problem stays under the spec's limit."""
    rate = count / answered if answered else 0.0
    return dg.AssetCheckResult(
        check_name=name,
        passed=rate <= limit,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rate": dg.MetadataValue.float(round(rate, 4)), "count": count, "answered": answered,
                  "limit": dg.MetadataValue.float(limit)},
    )
