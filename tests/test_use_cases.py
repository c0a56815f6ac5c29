"""Every shipped use case end to end through Dagster, with its typed columns read back."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, field_validator

from assets.definitions import USE_CASES, defs
from batch_pipeline import BatchAPIResource, BatchSpec, CsvSource, UseCase, definitions_for
from batch_pipeline.dagster.jobs import asset_key, submit_job
from batch_pipeline.sources.csv_source import read_partition
from tests.helpers import execute, submit, tick_until_requested

PARTITION = "2026-11-21"
EXPECTED_TYPES = {
    "manuscript_review": {"originality": pa.int64(), "decision": pa.string(), "strengths": pa.list_(pa.string())},
    "ad_copy": {"variants": pa.list_(pa.struct([("headline", pa.string()), ("body", pa.string()),
                                                ("call_to_action", pa.string())])), "tone": pa.string()},
    "content_classification": {"topics": pa.list_(pa.string()), "sentiment": pa.string(),
                               "flags": pa.list_(pa.string())},
    "content_embeddings": {"embedding": pa.list_(pa.float32(), 256)},
    "patient_education": {},
    "content_screening": {"flagged": pa.bool_(), "harassment_score": pa.float64(), "violence_score": pa.float64()},
    "product_images": {"image_files": pa.list_(pa.string()), "image_size": pa.string(),
                       "output_image_tokens": pa.int64()},
}
FREE = {"content_screening"}  # moderations cost nothing


@pytest.mark.parametrize("uc", USE_CASES, ids=lambda uc: uc.name)
def test_use_case_end_to_end(uc, instance, pipeline_env):
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    [request], _, _ = tick_until_requested(defs, instance)
    assert execute(defs, instance, request).success

    path = pipeline_env / "warehouse" / uc.name / "results" / f"partition={PARTITION}" / "results.parquet"
    table = pq.read_table(path)
    source = read_partition(uc.source, PARTITION)
    assert table.num_rows == source.num_rows
    assert sorted(table[uc.source.key].drop_null().to_pylist()) == sorted(source[uc.source.key].drop_null().to_pylist())
    for column, type_ in EXPECTED_TYPES[uc.name].items():
        assert table.schema.field(column).type == type_, column
    succeeded = table.filter(pa.compute.equal(table["status"], "succeeded"))
    assert succeeded.num_rows >= source.num_rows - 2
    for column in EXPECTED_TYPES[uc.name]:
        assert succeeded[column].null_count == 0, column
    if uc.name in FREE:
        return
    assert pa.compute.min(succeeded["cost_usd"]).as_py() > 0
    materialization = instance.get_latest_materialization_event(asset_key(uc, "results")).asset_materialization
    assert materialization.metadata["estimated_cost_usd"].value > 0
    assert materialization.metadata["cost_usd"].value > 0


class PickyLabels(BaseModel):
    """Valid JSON for the schema, but the validator refuses some answers: they become invalid_output."""

    topics: list[str]
    sentiment: str

    @field_validator("topics")
    @classmethod
    def at_most_one_topic(cls, topics: list[str]) -> list[str]:
        if len(topics) > 1:
            raise ValueError("expected at most one topic")
        return topics


def _custom_use_case(tmp_path, **spec_args) -> tuple[UseCase, dg.Definitions]:
    csv = tmp_path / "docs.csv"
    csv.write_text("id,day,text\n" + "".join(f"d{i},2026-11-20,document number {i} about things\n" for i in range(12)))
    uc = UseCase(
        spec=BatchSpec(**{"name": "custom", "model": "gpt-4o-mini", "prompt": "Label: {text}", **spec_args}),
        source=CsvSource(path=csv, key="id", partition_column="day"),
        partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-20"),
    )
    return uc, definitions_for([uc])


def test_answers_that_do_not_validate_are_invalid_output_with_the_reason(instance, pipeline_env, tmp_path):
    uc, local = _custom_use_case(tmp_path, response_model=PickyLabels)
    assert submit(local, instance, submit_job(uc).name, "2026-11-20").success
    [request], _, _ = tick_until_requested(local, instance)
    run = execute(local, instance, request)
    checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
    assert checks == {"every_row_once": True, "invalid_output_rate": False, "refusal_rate": True}
    results = pipeline_env / "warehouse" / "custom" / "results"
    table = pq.read_table(results / "partition=2026-11-20" / "results.parquet")
    rows = table.to_pylist()
    invalid = [r for r in rows if r["status"] == "invalid_output"]
    valid = [r for r in rows if r["status"] == "succeeded"]
    assert invalid and valid and len(invalid) + len(valid) == 12
    assert all("expected at most one topic" in r["error_message"] and r["topics"] is None for r in invalid)
    assert all(len(r["topics"]) <= 1 and r["sentiment"] for r in valid)


def test_budget_stops_submission_before_any_upload(instance, pipeline_env, tmp_path):
    uc, local = _custom_use_case(tmp_path, max_cost_usd=0.000001)
    result = submit(local, instance, submit_job(uc).name, "2026-11-20")
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error.message)
    assert "estimated cost $0.00" in message and "over the spec's max_cost_usd $0.0000" in message
    client = BatchAPIResource().client()
    assert list(client.files.list()) == [] and list(client.batches.list()) == []


def test_run_budget_from_the_launchpad(instance, pipeline_env, tmp_path):
    uc, local = _custom_use_case(tmp_path)
    result = local.resolve_job_def(submit_job(uc).name).execute_in_process(
        instance=instance, partition_key="2026-11-20", raise_on_error=False,
        run_config={"ops": {"custom__batches": {"config": {"max_run_cost_usd": 0.0}}}},
    )
    assert not result.success
    assert list(BatchAPIResource().client().files.list()) == []


def test_unknown_model_needs_a_configured_price(instance, pipeline_env, tmp_path):
    uc, local = _custom_use_case(tmp_path, model="house-model-7b")
    result = submit(local, instance, submit_job(uc).name, "2026-11-20")
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "model 'house-model-7b' has no price in genai-prices" in failure.step_failure_data.error.message
