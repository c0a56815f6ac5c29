"""The whole flow through the real Definitions on the embedded local Batch API."""

from __future__ import annotations

import duckdb

from assets.definitions import USE_CASES, defs
from batch_pipeline.dagster.jobs import asset_key, results_job, submit_job
from batch_pipeline.dagster.resources import BatchAPIResource
from tests.helpers import execute, submit, tick, tick_until_requested

PARTITION = "2026-11-22"  # holds a row with an empty indication and a repeated key


def provider_counts() -> tuple[int, int]:
    client = BatchAPIResource().client()
    return len(list(client.batches.list(limit=100))), len(list(client.files.list(purpose="batch")))


def test_partition_to_parquet_every_row_once(instance, pipeline_env):
    uc = next(u for u in USE_CASES if u.name == "patient_education")
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success

    requests, cursor, _ = tick_until_requested(defs, instance)
    [request] = requests
    assert request.partition_key == PARTITION and request.job_name == results_job(uc).name
    assert execute(defs, instance, request).success

    path = pipeline_env / "warehouse" / uc.name / "results"
    rows = duckdb.sql(
        f"select * from read_parquet('{path}/**/*.parquet', hive_partitioning=true) order by custom_id"
    ).fetchall()
    columns = [c[0] for c in duckdb.sql(
        f"describe select * from read_parquet('{path}/**/*.parquet', hive_partitioning=true)").fetchall()]
    assert columns[:14] == ["medication_id", "custom_id", "status", "output", "error_code", "error_message",
                           "attempts", "model", "input_tokens", "output_tokens", "cost_usd", "batch_id",
                           "request_hash", "partition"]
    by_id = {r[1]: dict(zip(columns, r, strict=True)) for r in rows}
    source = [line for line in (uc.source.path.read_text().splitlines()[1:]) if f",{PARTITION}," in line]
    assert len(rows) == len(source) == len(by_id)
    rejected = {cid: r for cid, r in by_id.items() if r["status"] == "rejected"}
    assert {r["error_message"] for r in rejected.values()} == {
        "column 'indication' is empty", "column 'medication_id' repeats a key already used by an earlier row"}
    succeeded = [r for r in by_id.values() if r["status"] == "succeeded"]
    assert len(succeeded) == len(rows) - 2
    assert all(r["output"] and r["input_tokens"] > 0 and r["cost_usd"] > 0 and r["batch_id"] for r in succeeded)

    raw = pipeline_env / "warehouse" / uc.name / "raw" / f"partition={PARTITION}"
    assert [p.name for p in raw.iterdir()] == [f"{succeeded[0]['batch_id']}.output.jsonl"]

    # The harvested submission is not requested again.
    assert not tick(defs, instance, cursor).run_requests


def test_rerun_with_same_content_creates_no_batch_and_uploads_nothing(instance):
    uc = next(u for u in USE_CASES if u.name == "patient_education")
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    before = provider_counts()
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    assert provider_counts() == before == (1, 1)
    latest = instance.get_latest_materialization_event(asset_key(uc, "batches")).asset_materialization
    assert latest.metadata["reused_batches"].value == 1 and latest.metadata["new_batches"].value == 0


def test_sensor_skips_with_a_reason_when_nothing_is_in_flight(instance):
    data = tick(defs, instance, None)
    assert not data.run_requests and data.skip_message == "no batches in flight"
