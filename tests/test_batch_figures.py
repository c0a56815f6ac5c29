"""OpenAI's batch as it is now, through the real Definitions on the local Batch API: the batch's
own usage and model recorded beside the sum of its answered lines (a disagreement is a warning on
the results record), and the files' expiry set from the spec and the provider resource."""

from __future__ import annotations

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_pipeline import OpenAIProviderResource
from batch_pipeline.dagster.jobs import asset_key, submit_job
from tests.helpers import run_until_idle, submit
from tests.test_metadata import latest
from tests.test_retries import PARTITION, make, provider_batches

HOURS = 3600


def results_parquet(pipeline_env):
    return pq.read_table(pipeline_env / "warehouse" / "notes" / "results" / f"partition={PARTITION}"
                         / "results.parquet")


def test_the_results_record_the_batch_s_usage_beside_its_answered_lines(instance: dg.DagsterInstance,
                                                                       pipeline_env) -> None:
    uc, defs = make(pipeline_env, rows=6, output_expires_after_seconds=2 * HOURS, batch_api_args={
        "delete_provider_files": False, "openai": OpenAIProviderResource(input_expires_after_seconds=3 * HOURS)})
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)

    [batch] = provider_batches(defs)
    metadata = latest(instance, asset_key(uc, "results"))
    assert "batch_usage_warning" not in metadata
    figures = metadata["batch_usage"][batch.id]
    assert figures["model"] == batch.model == "gpt-4o-mini"
    reported = batch.usage.model_dump()
    assert figures["batch"] == {"input_tokens": reported["input_tokens"], "output_tokens": reported["output_tokens"],
                                "cached_input_tokens": reported["input_tokens_details"]["cached_tokens"],
                                "reasoning_tokens": reported["output_tokens_details"]["reasoning_tokens"],
                                "total_tokens": reported["total_tokens"]}
    table = results_parquet(pipeline_env)
    lines = figures["answered_lines"]
    assert lines["input_tokens"] == pc.sum(table["input_tokens"]).as_py() == reported["input_tokens"] > 0
    assert lines["output_tokens"] == pc.sum(table["output_tokens"]).as_py() == reported["output_tokens"] > 0

    client = defs.resources["batch_api"].client()
    uploaded, output = client.files.retrieve(batch.input_file_id), client.files.retrieve(batch.output_file_id)
    assert uploaded.expires_at - uploaded.created_at == 3 * HOURS  # the resource's setting
    assert output.expires_at - output.created_at == 2 * HOURS  # the spec's, over the resource's default


def test_a_provider_bill_that_disagrees_with_the_lines_is_a_warning(instance: dg.DagsterInstance,
                                                                    pipeline_env) -> None:
    uc, defs = make(pipeline_env, rows=4, local_api={"usage_skew_input_tokens": 7})
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)

    [batch] = provider_batches(defs)
    metadata = latest(instance, asset_key(uc, "results"))
    figures = metadata["batch_usage"][batch.id]
    assert figures["batch"]["input_tokens"] == figures["answered_lines"]["input_tokens"] + 7
    warning = metadata["batch_usage_warning"]
    assert batch.id in warning and "input_tokens" in warning and "output_tokens" not in warning
    assert metadata["status/succeeded"] == 4  # the results are written all the same
