"""The end-to-end flow on the production instance (PostgreSQL) as well as on SQLite.

`any_instance` runs a test once on each; `postgres_instance` is the shipped
deploy/dagster.postgres.yaml on a fresh database of the session's throwaway server
(tests/conftest.py). The Dagster instance is where the pipeline records what it submitted
(each partition's state is materialization metadata), its sensor cursors and run keys, so
every test here reads that record back through the instance under test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from assets.definitions import USE_CASES, defs
from batch_pipeline.dagster.jobs import asset_key, results_job, submit_job
from tests.conftest import POSTGRES_CONFIG, PROJECT_ROOT
from tests.fault_runner import PARTITION as FAULT_PARTITION
from tests.fault_runner import ROWS as FAULT_ROWS
from tests.fault_runner import build as build_fault_case
from tests.helpers import run_until_idle, stop_group, submit
from tests.test_retries import PARTITION as RETRY_PARTITION
from tests.test_retries import make as make_retry_case
from tests.test_retries import provider_batches

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def patient_education():
    return next(u for u in USE_CASES if u.name == "patient_education")


def source_rows(uc, partitions: list[str]) -> int:
    lines = uc.source.path.read_text().splitlines()[1:]
    return sum(1 for line in lines for p in partitions if f",{p}," in line)


def results_by_partition(root: Path, use_case: str) -> dict[str, list[tuple]]:
    path = root / "warehouse" / use_case / "results"
    rows = duckdb.sql(f"select partition, custom_id, status from read_parquet('{path}/**/*.parquet', "
                      "hive_partitioning=true) order by all").fetchall()
    out: dict[str, list[tuple]] = {}
    for partition, custom_id, status in rows:
        out.setdefault(str(partition), []).append((custom_id, status))
    return out


def assert_all_runs_succeeded(instance: dg.DagsterInstance) -> None:
    runs = instance.get_runs()
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]


def test_the_shipped_config_is_a_postgres_instance(postgres_instance):
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    instance = postgres_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert instance.run_storage._engine.dialect.driver == "psycopg2"  # what the postgres extra pins
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert instance.run_monitoring_enabled and instance.run_retries_enabled
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 2
    assert not instance.telemetry_enabled


def test_production_config_keeps_the_local_settings():
    """Pools, run monitoring, run retries and telemetry as in deploy/dagster.yaml (production
    may add to them, never drop or change one)."""
    local = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    production = yaml.safe_load(POSTGRES_CONFIG.read_text())

    def leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
        out: dict[tuple, object] = {}
        for key, value in tree.items():
            out.update(leaves(value, (*prefix, key)) if isinstance(value, dict) else {(*prefix, key): value})
        return out

    production_leaves = leaves(production)
    assert {k: production_leaves.get(k) for k in leaves(local)} == leaves(local)
    assert production["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}


def test_sensor_driven_flow_every_row_once(any_instance, pipeline_env):
    """Submit, then the batch monitor and the runs it asks for, to Parquet; a rerun of the same
    content sends nothing (what was answered is read back through the instance)."""
    uc, partition = patient_education(), "2026-11-22"
    assert submit(defs, any_instance, submit_job(uc).name, partition).success
    executed = run_until_idle(defs, any_instance)
    assert [(r.job_name, r.partition_key) for r in executed] == [(results_job(uc).name, partition)]

    rows = results_by_partition(pipeline_env, uc.name)[partition]
    assert len(rows) == len({cid for cid, _ in rows}) == source_rows(uc, [partition])
    assert Counter(status for _, status in rows) == {"succeeded": len(rows) - 2, "rejected": 2}
    assert any_instance.get_materialized_partitions(asset_key(uc, "results")) == {partition}
    assert_all_runs_succeeded(any_instance)

    # The rerun keeps every answer: nothing is uploaded, no batch is created (the harvested
    # batch's files were deleted at the provider, so any file listed would be a new upload).
    assert submit(defs, any_instance, submit_job(uc).name, partition).success
    requests = any_instance.get_latest_materialization_event(asset_key(uc, "requests")).asset_materialization
    assert requests.metadata["kept_answers"].value == len(rows) - 2
    client = defs.resources["batch_api"].client()
    assert len(list(client.batches.list(limit=100))) == 1 and list(client.files.list()) == []


def test_a_range_run_submits_every_partition(any_instance, pipeline_env):
    """One run over a partition range (a backfill under BackfillPolicy.single_run), then the
    monitor harvests each partition."""
    uc, partitions = patient_education(), ["2026-11-20", "2026-11-21", "2026-11-22"]
    tags = {RANGE_START: partitions[0], RANGE_END: partitions[-1]}
    assert defs.resolve_job_def(submit_job(uc).name).execute_in_process(instance=any_instance, tags=tags).success
    assert any_instance.get_materialized_partitions(asset_key(uc, "batches")) == set(partitions)

    run_until_idle(defs, any_instance)
    by_partition = results_by_partition(pipeline_env, uc.name)
    assert sorted(by_partition) == partitions
    assert sum(len(rows) for rows in by_partition.values()) == source_rows(uc, partitions)
    assert any_instance.get_materialized_partitions(asset_key(uc, "results")) == set(partitions)
    assert_all_runs_succeeded(any_instance)


def test_retryable_failures_come_back_as_follow_up_batches(any_instance, pipeline_env):
    faults = {"line_rate_limit_fraction": 0.3, "line_server_error_fraction": 0.2, "fault_seed": 3}
    uc, case = make_retry_case(pipeline_env, rows=12, local_api=faults)
    assert submit(case, any_instance, submit_job(uc).name, RETRY_PARTITION).success
    run_until_idle(case, any_instance)

    path = pipeline_env / "warehouse" / "notes" / "results" / f"partition={RETRY_PARTITION}" / "results.parquet"
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == len({r["custom_id"] for r in rows}) == 12
    assert all(r["status"] == "succeeded" or r["attempts"] == 3 for r in rows)
    assert any(r["attempts"] >= 2 for r in rows)
    batches = provider_batches(case)
    keys = [(b.metadata["shard"], b.metadata["attempt"]) for b in batches]
    assert len(keys) == len(set(keys)) and any(attempt != "1" for _, attempt in keys)


KILLS = {
    "killed after all creates, before Dagster records them": ("submit", "batches.done"),
    "killed after writing Parquet, before Dagster records it": ("harvest", "results.written"),
}


@pytest.mark.parametrize("kill", list(KILLS))
def test_process_killed_then_rerun_on_postgres(kill, postgres_instance, tmp_path):
    """The fault matrix's kills with the instance on PostgreSQL: the killed process is a
    subprocess that finds the same instance through DAGSTER_HOME; the rerun brings the partition
    to the fault-free Parquet with one batch per (partition, shard, attempt)."""
    instance = postgres_instance
    uc, case = build_fault_case(tmp_path)
    step, failpoint = KILLS[kill]
    if step == "harvest":
        assert submit(case, instance, submit_job(uc).name, FAULT_PARTITION).success
    done = subprocess.run([sys.executable, "-m", "tests.fault_runner", str(tmp_path), step], cwd=PROJECT_ROOT,
                          env={**os.environ, "BATCH_PIPELINE_FAILPOINT": failpoint}, capture_output=True,
                          timeout=180)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    # The killed run was recorded in this very database, by the other process, and never finished.
    assert dg.DagsterRunStatus.STARTED in {r.status for r in instance.get_runs()}

    assert submit(case, instance, submit_job(uc).name, FAULT_PARTITION).success
    run_until_idle(case, instance)
    path = tmp_path / "warehouse" / "notes" / "results" / f"partition={FAULT_PARTITION}" / "results.parquet"
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == len({r["custom_id"] for r in rows}) == FAULT_ROWS
    assert all(r["status"] == "succeeded" for r in rows)
    batches = list(case.resources["batch_api"].client().batches.list(limit=100))
    keys = Counter((b.metadata["partition"], b.metadata["shard"], b.metadata["attempt"]) for b in batches)
    assert len(keys) == 3 and set(keys.values()) == {1}, keys
    assert instance.get_materialized_partitions(asset_key(uc, "results")) == {FAULT_PARTITION}


@pytest.mark.slow
def test_the_daemon_runs_the_sensor_and_its_runs_on_postgres(postgres_instance, pipeline_env):
    """Production as deployed: a partition submitted, then `dagster-daemon run` on the Postgres
    instance ticks the batch monitor, queues the results run it asks for, launches it (a run
    worker process) and the Parquet lands; every record is in the one database."""
    instance, uc, partition = postgres_instance, patient_education(), "2026-11-20"
    assert submit(defs, instance, submit_job(uc).name, partition).success

    log = pipeline_env / "daemon.log"
    with open(log, "wb") as out:  # it inherits DAGSTER_HOME, DAGSTER_PG_URL and the warehouse
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                  cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, runs = time.monotonic() + 240, []
        while daemon.poll() is None and time.monotonic() < deadline:
            runs = instance.get_runs(dg.RunsFilter(job_name=results_job(uc).name))
            if runs and runs[0].status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
                break
            time.sleep(1)
        output = log.read_text(errors="replace")[-3000:]
        assert daemon.poll() is None, f"dagster-daemon exited ({daemon.returncode}):\n{output}"
        [run] = runs
        assert run.status == dg.DagsterRunStatus.SUCCESS, output
        assert run.tags["dagster/sensor_name"] == "batch_monitor" and run.tags["dagster/partition"] == partition
    finally:
        stop_group(daemon)
    rows = results_by_partition(pipeline_env, uc.name)[partition]
    assert len(rows) == len({cid for cid, _ in rows}) == source_rows(uc, [partition])
    assert instance.get_materialized_partitions(asset_key(uc, "results")) == {partition}
