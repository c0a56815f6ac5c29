"""`batch-pipeline demo` (this module's `run_demo`): every sample use case, every partition.

Everything goes through the real Definitions.

It does in one process what the Dagster daemon does over time: run each partition's submit job,
evaluate the real batch monitor sensor until it asks for the results runs, execute those, and
print what landed where. A use case that fails (a table that cannot be read, a column it lacks)
is reported with its cause and the others go on; rows of a table that no partition reads are
listed with their line.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from batch_pipeline.cost import BATCH_DISCOUNT
from batch_pipeline.dagster.jobs import asset_key, submit_job
from batch_pipeline.dagster.sensor import MONITOR_NAME
from batch_pipeline.dagster.state_store import latest_state
from batch_pipeline.errors import ProviderSettingError, SpecError
from batch_pipeline.harvest.lines import STATUSES
from batch_pipeline.sources.unassigned import unassigned_rows
from batch_pipeline.spec import IMAGES_ENDPOINT
from batch_pipeline.state.results import settled
from batch_pipeline.testing import run_until_idle
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse, arrow_file, is_url, resolve_root

_TIMEOUT_SECONDS = 600
AZURE_API_VERSION = "2024-10-21"  # a GA Azure OpenAI API version with the Batch API
# Runs log to the instance (and so to the UI) as usual; the console shows only warnings.
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class PartitionRun:
    use_case: str
    partition: str
    submitted: bool = False
    harvested: bool = False
    error: str | None = None


def run_demo(
    warehouse: str | None, base_url: str | None, use_cases: Sequence[UseCase] | None = None,
    only: Sequence[str] = (), partitions: Sequence[str] = (), provider: str | None = None,
) -> int:
    """Run the demo (the sample use cases, or `use_cases`); non-zero if any stage failed.

    `only` limits it to the use cases of those names, `partitions` to those partition keys;
    `provider` ('openai', 'azure', 'anthropic' or 'gemini', default $BATCH_PIPELINE_PROVIDER) is whose
    Batch API to speak; a use case whose endpoint or model that provider has not is reported, not run.
    """
    provider = provider or os.environ.get("BATCH_PIPELINE_PROVIDER") or "openai"
    _configure_environment(warehouse, base_url, provider)
    logging.getLogger("dagster").setLevel(logging.WARNING)  # progress is printed below instead
    if use_cases is None:
        from assets.definitions import USE_CASES, defs  # after the environment is set
    else:
        from batch_pipeline import definitions_for

        USE_CASES, defs = list(use_cases), definitions_for(use_cases)

    if provider == "azure":
        _default_deployments(USE_CASES)
    instance = dg.DagsterInstance.get()
    print(f"warehouse:  {os.environ['BATCH_PIPELINE_WAREHOUSE']}")
    print(f"batch API:  {_batch_api(provider)}")
    print(f"dagster:    {instance.root_directory}\n")
    unknown = set(only) - {uc.name for uc in USE_CASES}
    if unknown:
        print(f"no use case named {', '.join(sorted(unknown))}; there are {', '.join(u.name for u in USE_CASES)}")
        return 2
    USE_CASES = _supported([uc for uc in USE_CASES if not only or uc.name in only], defs)
    runs, broken = _plan(USE_CASES)
    if partitions:
        runs = {key: run for key, run in runs.items() if key[1] in partitions}

    for wave in _waves(runs):
        _submit_all(defs, instance, USE_CASES, wave)
        _harvest(defs, instance, USE_CASES, runs)
    _print_summary(runs, instance, USE_CASES, broken)
    return 0 if not broken and all(r.submitted and r.harvested for r in runs.values()) else 1


def _supported(use_cases: Sequence[UseCase], defs: dg.Definitions) -> list[UseCase]:
    """The use cases the provider in use can serve; the others are reported as not supported there."""
    with dg.build_resources({"batch_api": (defs.resources or {})["batch_api"]}) as resources:
        provider = resources.batch_api.provider_in_use()
    supported = []
    for uc in use_cases:
        try:
            provider.encoding(uc.spec)
            supported.append(uc)
        except (ProviderSettingError, SpecError) as exc:
            print(f"  {uc.name}: not supported on {provider.name} ({exc})")
    return supported


def _waves(runs: dict[tuple[str, str], PartitionRun]) -> list[dict[tuple[str, str], PartitionRun]]:
    """Each use case's first partition, then the rest: the first harvest teaches the estimate the
    use case's real output tokens, so the estimates printed for the others are the learned ones."""
    first: dict[str, tuple[str, str]] = {}
    for key in runs:
        first.setdefault(key[0], key)
    leading = {key: runs[key] for key in first.values()}
    rest = {key: run for key, run in runs.items() if key not in leading}
    return [wave for wave in (leading, rest) if wave]


def _submit_all(defs: dg.Definitions, instance: dg.DagsterInstance, use_cases: Sequence[UseCase],
                runs: dict[tuple[str, str], PartitionRun]) -> None:
    """Run each planned partition's submit job, recording how it went."""
    print(f"\nsubmitting {len(runs)} partitions")
    for uc in use_cases:
        job = defs.resolve_job_def(submit_job(uc).name)
        for (name, partition), run in runs.items():
            if name != uc.name:
                continue
            try:
                result = job.execute_in_process(
                    instance=instance, partition_key=partition, run_config=_QUIET,
                    raise_on_error=False,
                )
                run.submitted = result.success
                run.error = None if result.success else failure_cause(result)
            except Exception as exc:  # one use case's failure never stops the others
                run.error = _said(exc)
            print(f"  {name} {partition}: {'submitted' if run.submitted else 'FAILED ' + str(run.error)}")


def _plan(
    use_cases: Sequence[UseCase],
) -> tuple[dict[tuple[str, str], PartitionRun], dict[str, str]]:
    """Every partition each use case's table has rows for, and the use cases whose table cannot
    be read, with why. Rows no partition reads are printed with their line."""
    runs: dict[tuple[str, str], PartitionRun] = {}
    broken: dict[str, str] = {}
    for uc in use_cases:
        try:
            keys = _partitions_with_rows(uc)
            unassigned = unassigned_rows(uc.source, uc.partitions_def)
        except Exception as exc:  # one use case's failure never stops the others
            broken[uc.name] = _said(exc)
            print(f"  {uc.name}: FAILED {broken[uc.name]}")
            continue
        runs.update({(uc.name, p): PartitionRun(uc.name, p) for p in keys})
        if unassigned.num_rows:
            count = unassigned.num_rows
            print(f"  {uc.name}: {count} row{'s are' if count != 1 else ' is'} in no partition:")
            for row in unassigned.slice(0, 5).to_pylist():
                print(f"    line {row['line']} key {row['key']!r}: {row['message']}")
    return runs, broken


def _partitions_with_rows(uc: UseCase) -> list[str]:
    """The partitions that exist now and have source rows (the sample tables are small)."""
    if uc.partitions_def is None:
        return [uc.partition_of(None)]
    key = list(uc.source.key_columns)  # a column the spec may misspell is the build's to report
    return [p for p in uc.partitions_def.get_partition_keys()
            if next(uc.source.read(uc.selection(p), key), None) is not None]


def failure_cause(result: dg.ExecuteInProcessResult) -> str:
    """The first failed step's own exception message, not the wrappers Dagster puts around it."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            lines = error.message.strip().splitlines() or [error.cls_name or "failed"]
            text = "\n".join(lines)
            if error.cls_name and text.split(":", 1)[0].endswith(error.cls_name):
                text = text.split(":", 1)[1].strip()
            return text[:500]
    return "run failed"


def _said(exc: BaseException) -> str:
    """An exception as the demo prints it: its message, or its type when it has none."""
    return str(exc).strip()[:500] or type(exc).__name__


# Each provider's key variables and base URL variable, as its official client reads them.
_VARIABLES = {
    "openai": (("OPENAI_API_KEY",), "OPENAI_BASE_URL"),
    "azure": (("AZURE_OPENAI_API_KEY",), "AZURE_OPENAI_ENDPOINT"),
    "anthropic": (("ANTHROPIC_API_KEY",), "ANTHROPIC_BASE_URL"),
    "gemini": (("GEMINI_API_KEY", "GOOGLE_API_KEY"), "GOOGLE_GEMINI_BASE_URL"),
}


def _configure_environment(warehouse: str | None, base_url: str | None, provider: str) -> None:
    # a folder is made absolute; a URL (s3://bucket/wh) is kept as given
    os.environ["BATCH_PIPELINE_WAREHOUSE"] = resolve_root(
        warehouse or os.environ.get("BATCH_PIPELINE_WAREHOUSE") or "warehouse"
    )
    # the embedded local Batch API's state beside the warehouse, where `make dev` looks too
    os.environ["BATCH_PIPELINE_LOCAL_API_DIR"] = str(
        Path(os.environ.get("BATCH_PIPELINE_LOCAL_API_DIR") or ".local_batch_api").resolve()
    )
    os.environ["BATCH_PIPELINE_PROVIDER"] = provider
    keys, url = _VARIABLES[provider]
    if base_url:
        if not any(os.environ.get(key) for key in keys):
            sys.exit(f"--base-url needs the Batch API's key in {keys[0]}")
        os.environ[url] = base_url
    else:
        for name in (*keys, url):
            if os.environ.pop(name, None):
                print(f"note: {name} is ignored; the demo uses the embedded local Batch API")
    if provider == "azure":
        os.environ.setdefault("OPENAI_API_VERSION", AZURE_API_VERSION)
    if not os.environ.get("DAGSTER_HOME"):
        home = Path(".dagster_home").resolve()
        home.mkdir(exist_ok=True)
        settings, shipped = home / "dagster.yaml", Path(__file__).parents[1] / "deploy" / "dagster.yaml"
        # the project's settings as they are now (an edit to deploy/dagster.yaml is never ignored)
        settings.write_text(shipped.read_text() if shipped.exists() else "telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(home)


def _default_deployments(use_cases: Sequence[UseCase]) -> None:
    """Without BATCH_PIPELINE_AZURE_DEPLOYMENTS, each sample model runs on a deployment named
    `<model>-batch` (the local Batch API serves it as that model)."""
    models = sorted({uc.spec.model for uc in use_cases})
    os.environ.setdefault("BATCH_PIPELINE_AZURE_DEPLOYMENTS", ",".join(f"{m}={m}-batch" for m in models))


def _batch_api(provider: str) -> str:
    """Where the demo's requests go, and as whom; no key."""
    if provider != "azure":
        where = os.environ.get(_VARIABLES[provider][1]) or "embedded local Batch API"
        return where if provider == "openai" else f"{where}, as {provider}"
    where = os.environ.get("AZURE_OPENAI_ENDPOINT") or "embedded local Batch API"
    return (f"{where}, as Azure OpenAI (api-version {os.environ['OPENAI_API_VERSION']}; deployments "
            f"{os.environ['BATCH_PIPELINE_AZURE_DEPLOYMENTS']})")


def _harvest(defs: dg.Definitions, instance: dg.DagsterInstance, use_cases: Sequence[UseCase], runs: dict) -> None:
    """Tick the real sensor, running what it asks for, until nothing is in flight."""
    print(f"\nwaiting for batches (sensor '{MONITOR_NAME}')")

    def report(request: dg.RunRequest, result: dg.ExecuteInProcessResult) -> None:
        key = (request.tags["batch_pipeline/use_case"], request.partition_key)
        kind = request.tags["batch_pipeline/reason"]
        run = runs[key]
        run.error = None if result.success else failure_cause(result)
        if kind == "results":
            run.harvested = result.success
        outcome = {"results": "results written", "admit": "queued shards submitted"}[kind]
        print(f"  {key[0]} {key[1]}: {outcome if result.success else 'FAILED ' + str(run.error)}")

    try:
        run_until_idle(defs, instance, _TIMEOUT_SECONDS, run_config=_QUIET, on_run=report)
        _harvested_elsewhere(instance, use_cases, runs)
    except TimeoutError:
        for run in runs.values():
            if run.submitted and not run.harvested and run.error is None:
                run.error = f"batches not finished within {_TIMEOUT_SECONDS} s"
    except Exception as exc:  # a failing sensor tick still leaves the summary to print
        for run in runs.values():
            if run.submitted and not run.harvested and run.error is None:
                run.error = f"batch monitor failed: {_said(exc)}"


def _harvested_elsewhere(instance: dg.DagsterInstance, use_cases: Sequence[UseCase], runs: dict) -> None:
    """Mark harvested what the instance says is: another process on the same instance (a second
    demo, `make dev`'s daemon) may have run a partition's results run, so this one's monitor
    never asked for it."""
    by_name = {uc.name: uc for uc in use_cases}
    for (name, partition), run in runs.items():
        if run.submitted and not run.harvested and name in by_name:
            run.harvested = settled(latest_state(instance, by_name[name], partition), time.time())


def _print_summary(runs: dict, instance: dg.DagsterInstance, use_cases: Sequence[UseCase],
                   broken: dict[str, str]) -> None:
    root = os.environ["BATCH_PIPELINE_WAREHOUSE"]
    wh = Warehouse(root)  # a folder or a URL: the results are read where they were written
    rows: list[list[str]] = [
        [name, "-", "-", "-", *["-"] * len(STATUSES), cause] for name, cause in broken.items()
    ]
    totals: dict[str, dict] = {}
    for run in runs.values():
        path = wh.partition_dir(run.use_case, layout.RESULTS, run.partition) / layout.RESULTS_FILE
        if not run.harvested or not path.exists():
            rows.append([run.use_case, run.partition, "-", "-", *["-"] * len(STATUSES), run.error or "not harvested"])
            continue
        with arrow_file(path) as f:
            results = pq.read_table(f, columns=["status", "batch_id", "cost_usd"])
        statuses = results["status"].to_pylist()
        batches = {b for b in results["batch_id"].to_pylist() if b}
        rows.append([run.use_case, run.partition, str(results.num_rows), str(len(batches)),
                     *[str(statuses.count(s)) for s in STATUSES], str(path)])
        total = totals.setdefault(run.use_case, {"rows": 0, "succeeded": 0, "estimated": 0.0, "actual": 0.0})
        total["rows"] += results.num_rows
        total["succeeded"] += statuses.count("succeeded")
        total["actual"] += sum(c for c in results["cost_usd"].to_pylist() if c)
        uc = next(u for u in use_cases if u.name == run.use_case)
        total["estimated"] += _estimate_of(instance, uc, run.partition)
    _print_table(["use case", "partition", "rows", "batches", *STATUSES, "parquet"], rows)

    costs = []
    for name, t in totals.items():
        synchronous = t["actual"] / BATCH_DISCOUNT
        costs.append([name, str(t["rows"]), str(t["succeeded"]), f"${t['estimated']:.6f}", f"${t['actual']:.6f}",
                      f"${synchronous:.6f}", f"${synchronous - t['actual']:.6f}"])
    _print_table(["use case", "rows", "succeeded", "estimated", "actual", "at sync prices", "saved"], costs)
    _print_images(runs, wh, use_cases)
    setup = "import duckdb; duckdb"
    if is_url(root):  # DuckDB reads it through the fsspec filesystem (and credentials) the pipeline used
        setup = ("import duckdb, fsspec; con = duckdb.connect(); "
                 f"con.register_filesystem(fsspec.filesystem('{wh.root.protocol}')); con")
    print(
        f"\nquery it: .venv/bin/python -c \"{setup}.sql(\\\"select status, count(*) "
        f"from read_parquet('{root}/*/results/**/*.parquet', hive_partitioning=true) group by 1\\\").show()\""
    )


def _print_images(runs: dict, wh: Warehouse, use_cases: Sequence[UseCase]) -> None:
    """For each images use case, the files its results name, how many are in the warehouse, and
    the succeeded rows they belong to (one file per succeeded row, or n with `n`)."""
    for uc in use_cases:
        if uc.spec.endpoint != IMAGES_ENDPOINT:
            continue
        named = present = succeeded = 0
        for run in runs.values():
            path = wh.partition_dir(uc.name, layout.RESULTS, run.partition) / layout.RESULTS_FILE
            if run.use_case != uc.name or not run.harvested or not path.exists():
                continue
            with arrow_file(path) as f:
                table = pq.read_table(f, columns=["status", "image_files"])
            succeeded += table["status"].to_pylist().count("succeeded")
            files = [name for names in table["image_files"].to_pylist() if names for name in names]
            named += len(files)
            present += sum(wh.resolve(name).exists() for name in files)
        folder = wh.root / uc.name / layout.RESULTS / "partition=*" / layout.IMAGES_FOLDER
        print(f"\n{uc.name}: {present} of {named} image files in the warehouse for {succeeded} succeeded rows, "
              f"under {folder}/")


def _estimate_of(instance: dg.DagsterInstance, uc: UseCase, partition: str) -> float:
    """The estimate the requests asset recorded before this partition's batches were sent."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key(uc, "requests"), asset_partitions=[partition]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    meta = materialization.metadata if materialization else {}
    value = meta["estimated_cost_usd"].value if "estimated_cost_usd" in meta else 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
