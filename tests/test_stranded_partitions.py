"""A partition stays watched until its results are materialized, not until its run is requested.

A results run that fails is asked for again with a backoff (a run key of its own), and after a
bounded number of failures the partition is reported as stranded on the sensor's tick and on
the results asset, while the provider still holds the answers.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from batch_pipeline import BatchSpec, CsvSource, UseCase, definitions_for
from batch_pipeline.dagster.jobs import asset_key, submit_job
from batch_pipeline.dagster.sensor import Rerun
from batch_pipeline.state.partition_state import SCHEMA_VERSION, STATE_KEY
from batch_pipeline.testing import IDLE, execute, tick
from tests.helpers import submit, tick_until_requested

PARTITION = "2026-11-20"


def use_case(tmp_path: Path) -> UseCase:
    csv = tmp_path / "notes.csv"
    csv.write_text("id,day,text\n" + "".join(f"n{i},{PARTITION},note {i}\n" for i in range(4)))
    return UseCase(
        spec=BatchSpec(name="notes", model="gpt-4o-mini", prompt="Summarise: {text}"),
        source=CsvSource(path=csv, key="id", partition_column="day"),
        partitions_def=dg.DailyPartitionsDefinition(start_date=PARTITION),
    )


def index_path(pipeline_env: Path) -> Path:
    return pipeline_env / "warehouse" / "notes" / "requests" / f"partition={PARTITION}" / "rows.parquet"


def failed_results_run(defs, instance, index: Path) -> tuple[dg.RunRequest, str | None]:
    """The results run the sensor asks for, failing because the run cannot read the request index."""
    [request], cursor, _ = tick_until_requested(defs, instance)
    index.rename(index.with_suffix(".away"))
    assert not execute(defs, instance, request).success
    index.with_suffix(".away").rename(index)
    return request, cursor


def test_a_failed_results_run_is_asked_for_again_and_the_answers_land(pipeline_env, instance):
    uc = use_case(pipeline_env)
    defs = definitions_for([uc], rerun=Rerun(backoff_seconds=0, max_failures=3))
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    first, cursor = failed_results_run(defs, instance, index_path(pipeline_env))

    again = tick(defs, instance, cursor)
    [request] = again.run_requests
    assert request.run_key != first.run_key and request.partition_key == PARTITION
    assert execute(defs, instance, request).success
    assert tick(defs, instance, again.cursor).skip_message == IDLE
    results = pq.read_table(pipeline_env / "warehouse" / "notes" / "results" / f"partition={PARTITION}")
    assert sorted(results["status"].to_pylist()) == ["succeeded"] * 4


def test_a_partition_whose_run_keeps_failing_is_reported_stranded(pipeline_env, instance):
    uc = use_case(pipeline_env)
    defs = definitions_for([uc], rerun=Rerun(backoff_seconds=0, max_failures=0))
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    _, cursor = failed_results_run(defs, instance, index_path(pipeline_env))

    data = tick(defs, instance, cursor)
    assert not data.run_requests and "STRANDED" in (data.skip_message or "")
    [observation] = [e for e in data.asset_events if e.asset_key == asset_key(uc, "results")]
    assert observation.partition == PARTITION and "STRANDED" in observation.metadata["stranded"].value


def test_a_state_recorded_by_a_newer_pipeline_is_reported_and_the_others_stay_watched(pipeline_env, instance):
    uc = use_case(pipeline_env)
    defs = definitions_for([uc])
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    newer = {"schema_version": SCHEMA_VERSION + 1, "use_case": "notes", "partition": "2026-11-21", "submissions": []}
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key(uc, "batches"), partition="2026-11-21", metadata={STATE_KEY: dg.MetadataValue.json(newer)}))

    [request], cursor, _ = tick_until_requested(defs, instance)  # the readable partition is harvested
    assert request.partition_key == PARTITION and execute(defs, instance, request).success
    refused = tick(defs, instance, cursor).skip_message or ""
    assert refused.startswith("notes|2026-11-21 not watched:") and f"schema_version {SCHEMA_VERSION + 1}" in refused
