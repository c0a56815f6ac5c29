"""`batch-pipeline demo` (this module's `run_demo`): every sample use case, every partition, through the real Definitions.

It does in one process what the Dagster daemon does over time: run each partition's submit job,
evaluate the real batch monitor sensor until it asks for the results runs, execute those, and
print what landed where.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from batch_pipeline.cost import BATCH_DISCOUNT
from batch_pipeline.dagster.sensor import MONITOR_NAME
from batch_pipeline.harvest.lines import STATUSES
from batch_pipeline.sources.csv_source import partition_keys
from batch_pipeline.testing import failure_message, run_until_idle

_TIMEOUT_SECONDS = 600
# Runs log to the instance (and so to the UI) as usual; the console shows only warnings.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class PartitionRun:
    use_case: str
    partition: str
    submitted: bool = False
    harvested: bool = False
    error: str | None = None


def run_demo(warehouse: str | None, base_url: str | None) -> int:
    """Run the demo; the exit code is non-zero if any stage failed."""
    _configure_environment(warehouse, base_url)
    logging.getLogger("dagster").setLevel(logging.WARNING)  # progress is printed below instead
    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # BackfillPolicy is beta, knowingly
    from assets.definitions import USE_CASES, defs  # after the environment is set

    instance = dg.DagsterInstance.get()
    runs = {
        (uc.name, p): PartitionRun(uc.name, p)
        for uc in USE_CASES
        for p in partition_keys(uc.source)
        if uc.partitions_def.has_partition_key(p)
    }
    print(f"warehouse:  {os.environ['BATCH_PIPELINE_WAREHOUSE']}")
    print(f"batch API:  {os.environ.get('OPENAI_BASE_URL') or 'embedded local Batch API'}")
    print(f"dagster:    {instance.root_directory}\n")

    print(f"submitting {len(runs)} partitions")
    for uc in USE_CASES:
        job = defs.resolve_job_def(uc.submit_job_name)
        for (name, partition), run in runs.items():
            if name != uc.name:
                continue
            result = job.execute_in_process(
                instance=instance, partition_key=partition, run_config=_QUIET, raise_on_error=False
            )
            run.submitted = result.success
            run.error = None if result.success else failure_message(result)
            print(f"  {name} {partition}: {'submitted' if run.submitted else 'FAILED ' + str(run.error)}")

    _harvest(defs, instance, runs)
    _print_summary(runs, instance, USE_CASES)
    return 0 if all(r.submitted and r.harvested for r in runs.values()) else 1


def _configure_environment(warehouse: str | None, base_url: str | None) -> None:
    os.environ["BATCH_PIPELINE_WAREHOUSE"] = str(
        Path(warehouse or os.environ.get("BATCH_PIPELINE_WAREHOUSE") or "warehouse").resolve()
    )
    if base_url:
        if not os.environ.get("OPENAI_API_KEY"):
            sys.exit("--base-url needs the Batch API's key in OPENAI_API_KEY")
        os.environ["OPENAI_BASE_URL"] = base_url
    else:
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            if os.environ.pop(name, None):
                print(f"note: {name} is ignored; the demo uses the embedded local Batch API")
    if not os.environ.get("DAGSTER_HOME"):
        home = Path(".dagster_home").resolve()
        home.mkdir(exist_ok=True)
        settings, shipped = home / "dagster.yaml", Path("dagster.yaml")
        if not settings.exists():
            settings.write_text(shipped.read_text() if shipped.exists() else "telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(home)


def _harvest(defs: dg.Definitions, instance: dg.DagsterInstance, runs: dict) -> None:
    """Tick the real sensor, running what it asks for, until nothing is in flight."""
    print(f"\nwaiting for batches (sensor '{MONITOR_NAME}')")

    def report(request: dg.RunRequest, result: dg.ExecuteInProcessResult) -> None:
        key = (request.tags["batch_pipeline/use_case"], request.partition_key)
        kind = request.tags["batch_pipeline/reason"]
        run = runs[key]
        run.error = None if result.success else failure_message(result)
        if kind == "results":
            run.harvested = result.success
        outcome = {"results": "results written", "admit": "queued shards submitted"}[kind]
        print(f"  {key[0]} {key[1]}: {outcome if result.success else 'FAILED ' + str(run.error)}")

    try:
        run_until_idle(defs, instance, _TIMEOUT_SECONDS, run_config=_QUIET, on_run=report)
    except TimeoutError:
        for run in runs.values():
            if run.submitted and not run.harvested and run.error is None:
                run.error = f"batches not finished within {_TIMEOUT_SECONDS} s"


def _print_summary(runs: dict, instance: dg.DagsterInstance, use_cases: list) -> None:
    root = Path(os.environ["BATCH_PIPELINE_WAREHOUSE"])
    rows, totals = [], {}
    for run in runs.values():
        path = root / run.use_case / "results" / f"partition={run.partition}" / "results.parquet"
        if not run.harvested or not path.exists():
            rows.append([run.use_case, run.partition, "-", "-", *["-"] * len(STATUSES), run.error or "not harvested"])
            continue
        results = pq.read_table(path, columns=["status", "batch_id", "cost_usd"])
        statuses = results["status"].to_pylist()
        batches = {b for b in results["batch_id"].to_pylist() if b}
        rows.append([run.use_case, run.partition, str(results.num_rows), str(len(batches)),
                     *[str(statuses.count(s)) for s in STATUSES], str(path)])
        total = totals.setdefault(run.use_case, {"rows": 0, "succeeded": 0, "estimated": 0.0, "actual": 0.0})
        total["rows"] += results.num_rows
        total["succeeded"] += statuses.count("succeeded")
        total["actual"] += sum(c for c in results["cost_usd"].to_pylist() if c)
        total["estimated"] += _estimate_of(instance, next(u for u in use_cases if u.name == run.use_case), run.partition)
    _print_table(["use case", "partition", "rows", "batches", *STATUSES, "parquet"], rows)

    costs = []
    for name, t in totals.items():
        synchronous = t["actual"] / BATCH_DISCOUNT
        costs.append([name, str(t["rows"]), str(t["succeeded"]), f"${t['estimated']:.6f}", f"${t['actual']:.6f}",
                      f"${synchronous:.6f}", f"${synchronous - t['actual']:.6f}"])
    _print_table(["use case", "rows", "succeeded", "estimated", "actual", "at sync prices", "saved"], costs)
    print(
        "\nquery it: .venv/bin/python -c \"import duckdb; duckdb.sql(\\\"select status, count(*) "
        f"from read_parquet('{root}/*/results/**/*.parquet', hive_partitioning=true) group by 1\\\").show()\""
    )


def _estimate_of(instance: dg.DagsterInstance, uc, partition: str) -> float:
    """The estimate the requests asset recorded before this partition's batches were sent."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=uc.key("requests"), asset_partitions=[partition]), limit=1
    ).records
    meta = records[0].asset_materialization.metadata if records else {}
    return meta["estimated_cost_usd"].value if "estimated_cost_usd" in meta else 0.0


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
