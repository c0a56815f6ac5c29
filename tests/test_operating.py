"""Operating it: paid work only on an instance the sensor can see; schedules off until switched on;
checks per partition."""

from __future__ import annotations

import time

import dagster as dg

from assets.definitions import defs as sample_defs
from batch_pipeline import BatchSpec, CsvSource, UseCase, definitions_for
from batch_pipeline.dagster.jobs import asset_key, results_job, submit_job
from batch_pipeline.state.lease import partition_lease
from batch_pipeline.state.partition_state import TERMINAL
from batch_pipeline.testing import failure_message, tick
from tests.helpers import run_until_idle, submit, tick_until_requested

PARTITION = "2026-11-20"


def notes(folder, rows: str) -> UseCase:
    """A one-column use case over `rows` (CSV lines `id,day,text`)."""
    csv = folder / "notes.csv"
    csv.write_text("id,day,text\n" + rows)
    return UseCase(spec=BatchSpec(name="notes", model="gpt-4o-mini", prompt="Summarise: {text}"),
                   source=CsvSource(path=csv, key="id", partition_column="day"),
                   partitions_def=dg.DailyPartitionsDefinition(start_date=PARTITION))


def test_a_submission_on_a_throw_away_instance_is_refused_before_any_upload(pipeline_env):
    uc = notes(pipeline_env, f"n1,{PARTITION},a note\n")
    defs = definitions_for([uc])
    result = defs.resolve_job_def(submit_job(uc).name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=PARTITION, raise_on_error=False)
    assert not result.success
    assert "DAGSTER_HOME is not set" in failure_message(result)
    client = defs.resources["batch_api"].client()
    assert list(client.files.list(purpose="batch")) == []


def test_schedules_are_off_until_switched_on():
    schedules = list(sample_defs.schedules or [])
    assert schedules and all(
        s.default_status == dg.DefaultScheduleStatus.STOPPED and s.description for s in schedules
    )


def test_rows_in_no_partition_fail_a_check_naming_key_and_line(pipeline_env, instance):
    uc = notes(pipeline_env, f"n1,{PARTITION},a note\nn2,2026/11/20,written another way\nn3,,no day\n")
    defs = definitions_for([uc])
    result = defs.resolve_job_def(submit_job(uc).name).execute_in_process(
        instance=instance, partition_key=PARTITION, raise_on_error=False)
    assert result.success
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "unassigned_rows"]
    assert not check.passed and check.metadata["unassigned"].value == 2
    preview = check.metadata["preview"].value
    assert "n2" in preview and "n3" in preview and "| 3 |" in preview


def test_checks_are_recorded_per_partition_and_none_is_a_phantom(pipeline_env, instance):
    """One run over two partitions (a backfill range) records each check once per partition, with
    the partition's key, and nothing unpartitioned or "Skipped" beside it."""
    days = ["2026-11-20", "2026-11-21"]
    uc = notes(pipeline_env, "".join(f"{day}-{i},{day},note {i}\n" for day in days for i in range(2)))
    defs = definitions_for([uc])
    both = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[1]}
    submitted = defs.resolve_job_def(submit_job(uc).name).execute_in_process(instance=instance, tags=both)
    assert submitted.success, failure_message(submitted)
    client, deadline = defs.resources["batch_api"].client(), time.monotonic() + 120
    while any(b.status not in TERMINAL for b in client.batches.list()):  # each list call advances them
        assert time.monotonic() < deadline, "batches did not finish"
        time.sleep(0.2)
    harvested = defs.resolve_job_def(results_job(uc).name).execute_in_process(instance=instance, tags=both)
    assert harvested.success, failure_message(harvested)
    checks = [(asset_key(uc, "requests"), "unassigned_rows")] + [
        (asset_key(uc, "results"), name) for name in ("every_row_once", "invalid_output_rate", "refusal_rate")]
    for key, name in checks:
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, name), limit=10)
        assert sorted((r.partition, r.status.value) for r in history) == [(d, "SUCCEEDED") for d in days], name
        for record in history:
            evaluation = record.event.dagster_event.event_specific_data
            assert evaluation.partition == record.partition and evaluation.check_name == name


def test_a_rerun_that_sends_nothing_names_the_batches_behind_its_answers(pipeline_env, instance):
    """Found through the UI: a rerun kept every answer and sent nothing, and its results metadata
    named no batch at all; `answered_by` names those whose answers the Parquet holds."""
    uc = notes(pipeline_env, f"n1,{PARTITION},a note\nn2,{PARTITION},another note\n")
    defs = definitions_for([uc])
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    [batch] = defs.resources["batch_api"].client().batches.list()
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success  # every answer kept
    results = instance.get_latest_materialization_event(asset_key(uc, "results")).asset_materialization
    assert results.metadata["answered_by"].value == [batch.id]


def test_materialize_all_on_a_fast_provider_lands_in_one_run(pipeline_env, instance):
    """Its results step waits a few seconds (`harvest_wait_seconds`) for the batches the run just
    created, so a small partition is harvested in that run and the monitor asks for nothing."""
    uc = notes(pipeline_env, f"n1,{PARTITION},a note\nn2,{PARTITION},another note\n")
    defs = definitions_for([uc])
    stages = {asset_key(uc, stage) for stage in ("requests", "batches", "results")}
    result = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=stages).execute_in_process(
        instance=instance, partition_key=PARTITION, raise_on_error=False)
    assert result.success, failure_message(result)
    results = instance.get_latest_materialization_event(asset_key(uc, "results")).asset_materialization
    assert results.metadata["dagster/row_count"].value == 2 and "waiting" not in results.metadata
    assert run_until_idle(defs, instance) == []


def test_the_monitor_asks_no_results_run_while_a_run_holds_the_partition(pipeline_env, instance):
    """Found by the turnaround benchmark: a tick while "Materialize all" was harvesting asked for a
    second results run of the same partition. While a run holds the partition's lease the monitor
    waits; once it is let go (or its holder died), the monitor asks as before."""
    uc = notes(pipeline_env, f"n1,{PARTITION},a note\n")
    defs = definitions_for([uc])
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    wh = defs.resources["warehouse"].warehouse()
    cursor, deadline = None, time.monotonic() + 120
    with partition_lease(wh, uc.name, PARTITION, wait_seconds=10):  # as a harvesting run holds it
        while True:  # until the batches are terminal and the monitor would otherwise ask
            data = tick(defs, instance, cursor)
            cursor = data.cursor
            assert not data.run_requests, data.run_requests
            if "a run holds it" in (data.skip_message or ""):
                break
            assert time.monotonic() < deadline, data.skip_message
            time.sleep(0.2)
    [request], _, _ = tick_until_requested(defs, instance, cursor)
    assert request.job_name == results_job(uc).name and request.partition_key == PARTITION
