"""Operating it: paid work only on an instance the sensor can see; schedules off until switched on."""

from __future__ import annotations

import dagster as dg

from assets.definitions import defs as sample_defs
from batch_pipeline import BatchSpec, CsvSource, UseCase, definitions_for
from batch_pipeline.testing import failure_message

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
    result = defs.resolve_job_def(uc.submit_job_name).execute_in_process(
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
    result = defs.resolve_job_def(uc.submit_job_name).execute_in_process(
        instance=instance, partition_key=PARTITION, raise_on_error=False)
    assert result.success
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "unassigned_rows"]
    assert not check.passed and check.metadata["unassigned"].value == 2
    preview = check.metadata["preview"].value
    assert "n2" in preview and "n3" in preview and "| 3 |" in preview
