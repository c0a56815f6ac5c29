"""Azure OpenAI mode through the real Definitions: the official `AzureOpenAI` client on the local
Batch API (embedded, and served with a key), request lines in Azure's form, results landed, and
an incomplete Azure setting refused before anything is uploaded, naming the setting, never the key.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import openai
import orjson
import pyarrow.parquet as pq
import pytest

from batch_pipeline import (
    BatchAPIResource,
    BatchSpec,
    CsvSource,
    LocalBatchAPIResource,
    LocalBatchAPISettings,
    UseCase,
    definitions_for,
)
from batch_pipeline.dagster.jobs import admit_job, asset_key, submit_job
from batch_pipeline.testing import failure_message
from tests.helpers import run_until_idle, submit
from tests.local_api.conftest import launch

DAY = "2026-11-20"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-16", timezone="UTC")
SPEC = BatchSpec(name="tickets", model="gpt-4o-mini", prompt="Triage ticket {ticket}: {text}",
                 max_requests_per_shard=2)
DEPLOYMENT = "tickets-batch"
AZURE_VARIABLES = ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_AD_TOKEN", "OPENAI_API_VERSION",
                   "BATCH_PIPELINE_AZURE_DEPLOYMENTS", "BATCH_PIPELINE_PROVIDER")


@pytest.fixture
def azure_env(pipeline_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Azure mode with no key: the embedded local Batch API answers as Azure OpenAI."""
    for name in AZURE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", "azure")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    monkeypatch.setenv("BATCH_PIPELINE_AZURE_DEPLOYMENTS", f"gpt-4o-mini={DEPLOYMENT}")
    return pipeline_env


def tickets_use_case(root: Path) -> UseCase:
    path = root / "tickets.csv"
    path.write_text("ticket,day,text\n" + "".join(f"T{i},{DAY},printer {i} is on fire\n" for i in range(3)))
    return UseCase(SPEC, CsvSource(path, key="ticket", partition_column="day"), DAILY)


def event_text(instance: dg.DagsterInstance) -> str:
    """Every event of every run, with error chains and metadata, as text to search."""
    return "\n".join(repr(record) for run in instance.get_runs() for record in instance.all_logs(run.run_id))


def run_use_case(root: Path, instance: dg.DagsterInstance, **batch_api: bool) -> tuple[dg.Definitions, UseCase]:
    uc = tickets_use_case(root)
    defs = definitions_for([uc], batch_api=BatchAPIResource(**batch_api))
    result = submit(defs, instance, submit_job(uc).name, DAY)
    assert result.success, event_text(instance)[-3000:]
    run_until_idle(defs, instance)
    return defs, uc


def test_a_use_case_end_to_end_in_azure_mode(azure_env, instance):
    defs, uc = run_use_case(azure_env, instance, delete_provider_files=False)  # its files are read below
    requests = azure_env / "warehouse" / "tickets" / "requests" / f"partition={DAY}"
    shards = sorted(requests.glob("shard-*.jsonl"))
    lines = [orjson.loads(line) for shard in shards for line in shard.read_bytes().splitlines()]
    assert len(shards) == 2 and {(line["url"], line["body"]["model"]) for line in lines} == {
        ("/chat/completions", DEPLOYMENT)}

    client = defs.resources["batch_api"].client()
    assert isinstance(client, openai.AzureOpenAI) and str(client.base_url).endswith("/openai/")
    batches = list(client.batches.list(limit=100))
    assert len(batches) == 2 and {b.endpoint for b in batches} == {"/chat/completions"}
    assert {b.metadata["model"] for b in batches} == {"gpt-4o-mini"}  # the spec's model, for queue limits
    sent = {client.files.content(b.input_file_id).content for b in batches}
    assert sent == {shard.read_bytes() for shard in shards}  # as written: no byte order mark added

    results = pq.read_table(azure_env / "warehouse" / "tickets" / "results" / f"partition={DAY}").to_pylist()
    assert sorted(r["ticket"] for r in results) == ["T0", "T1", "T2"]
    assert {(r["status"], r["model"]) for r in results} == {("succeeded", "gpt-4o-mini")}  # the deployment's model
    assert all(r["cost_usd"] for r in results)
    raw = azure_env / "warehouse" / "tickets" / "raw" / f"partition={DAY}"
    assert sorted(p.stat().st_size for p in raw.glob("*.error.jsonl")) == [0, 0]  # Azure's empty error files

    materialization = instance.get_latest_materialization_event(asset_key(uc, "batches"))
    assert "as Azure OpenAI" in str(materialization.asset_materialization.metadata["provider"].value)


def test_azure_mode_against_the_served_local_api_with_a_key(azure_env, instance, monkeypatch, tmp_path):
    canary = f"sk-canary-{uuid.uuid4().hex}"
    server = launch(tmp_path / "api", tmp_path, "--pace-seconds", "0.2",
                    "--azure-deployment", f"{DEPLOYMENT}=gpt-4o-mini", api_key=canary)
    try:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.base_url.removesuffix("/v1"))
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", canary)
        run_use_case(azure_env, instance)
    finally:
        server.stop()
    results = pq.read_table(azure_env / "warehouse" / "tickets" / "results" / f"partition={DAY}")
    assert set(results["status"].to_pylist()) == {"succeeded"}
    assert "Azure OpenAI http://127.0.0.1" in event_text(instance)
    assert canary not in event_text(instance) and canary.encode() not in server.log_path.read_bytes()
    for path in (azure_env / "warehouse").rglob("*"):
        assert not path.is_file() or canary.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("OPENAI_API_VERSION", None, "OPENAI_API_VERSION"),
    ("AZURE_OPENAI_API_KEY", "sk-canary-key", "AZURE_OPENAI_ENDPOINT"),  # a real resource needs its endpoint
    ("BATCH_PIPELINE_AZURE_DEPLOYMENTS", "gpt-4o=big-batch", "no deployment for model 'gpt-4o-mini'"),
    ("BATCH_PIPELINE_PROVIDER", "azur", "BATCH_PIPELINE_PROVIDER"),
])
def test_an_incomplete_azure_setting_fails_at_run_start_naming_it(azure_env, instance, monkeypatch, variable,
                                                                  value, named):
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    uc = tickets_use_case(azure_env)
    result = submit(definitions_for([uc]), instance, submit_job(uc).name, DAY)
    assert not result.success and named in failure_message(result)  # the requests step's own message
    assert "sk-canary-key" not in event_text(instance)
    assert not (azure_env / "warehouse" / "tickets" / "requests").exists()  # nothing built, so nothing sent
    assert not list((azure_env / "local_api").glob("files/*"))


def test_requests_built_for_openai_are_not_sent_to_azure(azure_env, instance, monkeypatch):
    uc = tickets_use_case(azure_env)
    defs = definitions_for([uc])
    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", "openai")
    built = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=DAY, asset_selection=[asset_key(uc, "requests")])
    assert built.success
    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", "azure")
    sent = submit(definitions_for([uc]), instance, admit_job(uc).name, DAY)  # the batches asset alone
    assert not sent.success and "written for another provider" in failure_message(sent)
    assert not list((azure_env / "local_api").glob("files/*"))


def test_a_quota_refused_at_create_waits_green_and_is_sent_when_capacity_frees(azure_env, instance):
    """Azure's fail-fast quota (a 400 token_limit_exceeded at create): the shard is queued, the run
    is green, and the monitor sends it once the first batch released its tokens; nothing twice."""
    uc = tickets_use_case(azure_env)  # shards of 2 and 1 requests, 17 prompt tokens each
    settings = LocalBatchAPISettings(azure_quota_fail_fast=True, enqueued_token_limit=40)
    defs = definitions_for([uc], batch_api=BatchAPIResource(
        local=LocalBatchAPIResource(settings=settings), quota_backoff_seconds=0, delete_provider_files=False))
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    record = instance.get_latest_materialization_event(asset_key(uc, "batches")).asset_materialization
    assert (record.metadata["new_batches"].value, record.metadata["queued_shards"].value) == (1, 1)
    assert "token_limit_exceeded" in event_text(instance)

    executed = run_until_idle(defs, instance)
    assert any(r.tags["batch_pipeline/reason"] == "admit" for r in executed)
    results = pq.read_table(azure_env / "warehouse" / "tickets" / "results" / f"partition={DAY}").to_pylist()
    assert sorted((r["ticket"], r["status"]) for r in results) == [(f"T{i}", "succeeded") for i in range(3)]
    client = defs.resources["batch_api"].client()
    batches = list(client.batches.list(limit=100))
    assert sorted(b.metadata["shard"] for b in batches) == ["0", "1"] and {b.status for b in batches} == {"completed"}
    assert len(list(client.files.list(purpose="batch"))) == 2  # the refused shard's upload was reused


def test_azure_s_capitalised_statuses_and_iso_timestamps_run_end_to_end(azure_env, instance):
    uc = tickets_use_case(azure_env)
    local = LocalBatchAPIResource(settings=LocalBatchAPISettings(azure_legacy_forms=True))
    defs = definitions_for([uc], batch_api=BatchAPIResource(local=local))
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)  # the monitor saw them terminal: "Completed" read as "completed"
    results = pq.read_table(azure_env / "warehouse" / "tickets" / "results" / f"partition={DAY}")
    assert results["status"].to_pylist() == ["succeeded"] * 3
    raw = list(defs.resources["batch_api"].client().batches.list(limit=100))
    assert {(b.status, type(b.created_at)) for b in raw} == {("Completed", str)}  # as Azure answered
    recorded = instance.get_latest_materialization_event(asset_key(uc, "batches")).asset_materialization
    assert {s["status_at_submit"] for s in recorded.metadata["submissions"].value} == {"validating"}  # OpenAI's name
