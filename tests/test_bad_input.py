"""Bad input: a clear error naming the column and spec, or a clear note; never a lost row."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq

from assets.definitions import USE_CASES, defs
from batch_pipeline import BatchAPIResource, BatchSpec, CsvSource, UseCase, WarehouseResource
from batch_pipeline.dagster.assets import use_case_definitions
from batch_pipeline.dagster.jobs import asset_key, submit_job
from batch_pipeline.testing import IDLE
from tests.helpers import run_until_idle, submit, tick


def test_empty_partition_gives_an_empty_result_with_a_note(instance, pipeline_env):
    uc = next(u for u in USE_CASES if u.name == "patient_education")
    partition = "2026-11-27"  # in the partitions definition, no rows in the table
    assert submit(defs, instance, submit_job(uc).name, partition).success
    requests = instance.get_latest_materialization_event(asset_key(uc, "requests")).asset_materialization
    assert requests.metadata["note"].value == f"partition {partition} has no source rows"
    assert len(run_until_idle(defs, instance)) == 1  # the monitor's results run writes it, at once
    results = instance.get_latest_materialization_event(asset_key(uc, "results")).asset_materialization
    assert results.partition == partition and results.metadata["dagster/row_count"].value == 0
    assert tick(defs, instance, None).skip_message == IDLE
    path = pipeline_env / "warehouse" / uc.name / "results" / f"partition={partition}" / "results.parquet"
    table = pq.read_table(path)
    assert table.num_rows == 0 and "status" in table.column_names


def test_misspelled_column_fails_the_requests_asset_naming_column_and_spec(instance, tmp_path):
    csv = tmp_path / "drugs.csv"
    csv.write_text("id,day,name\nd1,2026-11-20,Aspirin\n")
    uc = UseCase(
        spec=BatchSpec(name="typo_case", model="gpt-4o-mini", prompt="Tell me about {nmae}"),
        source=CsvSource(path=csv, key="id", partition_column="day"),
        partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-20"),
    )
    local = use_case_definitions(uc)
    result = dg.materialize(
        [a for a in local.assets if isinstance(a, dg.AssetsDefinition) and a.key == asset_key(uc, "requests")],
        partition_key="2026-11-20",
        instance=instance,
        resources={"warehouse": WarehouseResource(), "batch_api": BatchAPIResource()},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else ""
    message += failure.step_failure_data.error.message
    assert "spec 'typo_case': column 'nmae' is not in CSV file '" in message and "drugs.csv' (columns:" in message
    assert "did you mean 'name'" in message
