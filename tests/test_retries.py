"""Retryable failures come back as linked follow-up batches; shards wait for queue capacity."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from batch_pipeline import (
    BatchAPIResource,
    BatchSpec,
    CsvSource,
    LocalBatchAPIResource,
    LocalBatchAPISettings,
    UseCase,
    definitions_for,
)
from batch_pipeline.dagster.jobs import asset_key, submit_job
from tests.helpers import run_until_idle, submit

PARTITION = "2026-11-20"


def make(tmp_path: Path, rows: int = 24, local_api: dict | None = None, token_limits: dict | None = None,
         batch_api_args: dict | None = None, **spec_args) -> tuple[UseCase, dg.Definitions]:
    csv = tmp_path / "notes.csv"
    lines = "".join(f"n{i:03d},{PARTITION},note {i} about a patient visit\n" for i in range(rows))
    csv.write_text("id,day,text\n" + lines)
    uc = UseCase(
        spec=BatchSpec(**{"name": "notes", "model": "gpt-4o-mini", "prompt": "Summarise: {text}",
                          "retry_backoff_seconds": 0, **spec_args}),
        source=CsvSource(path=csv, key="id", partition_column="day"),
        partitions_def=dg.DailyPartitionsDefinition(start_date=PARTITION),
    )
    settings = LocalBatchAPISettings(**{"pace_seconds": 0.1, **(local_api or {})})
    batch_api = BatchAPIResource(local=LocalBatchAPIResource(settings=settings),
                                 enqueued_token_limits=token_limits or {}, **(batch_api_args or {}))
    return uc, definitions_for([uc], batch_api=batch_api)


def results(tmp_path: Path) -> list[dict]:
    path = tmp_path / "warehouse" / "notes" / "results" / f"partition={PARTITION}" / "results.parquet"
    return pq.read_table(path).to_pylist()


def provider_batches(defs: dg.Definitions) -> list:
    return list(defs.resources["batch_api"].client().batches.list(limit=100))


def test_per_request_faults_are_retried_in_linked_follow_up_batches(instance, pipeline_env):
    faults = {"line_rate_limit_fraction": 0.25, "line_server_error_fraction": 0.15,
              "line_invalid_request_fraction": 0.1, "fault_seed": 3}
    uc, defs = make(pipeline_env, local_api=faults)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)

    rows = results(pipeline_env)
    assert len(rows) == 24 and len({r["custom_id"] for r in rows}) == 24
    bad_request = [r for r in rows if r["error_code"] == "invalid_request_error"]
    assert bad_request and all(r["status"] == "failed" for r in bad_request)  # 400s are never retried
    others = [r for r in rows if r not in bad_request]
    assert all(r["status"] == "succeeded" or r["attempts"] == 3 for r in others)
    assert any(r["attempts"] >= 2 and r["status"] == "succeeded" for r in others)

    batches = provider_batches(defs)
    keys = [(b.metadata["shard"], b.metadata["attempt"]) for b in batches]
    assert len(keys) == len(set(keys)), "one batch per (shard, attempt)"
    follow_ups = [b for b in batches if b.metadata["attempt"] != "1"]
    assert follow_ups and all(b.metadata["parent_batch_ids"] for b in follow_ups)
    first = next(b for b in batches if b.metadata["attempt"] == "1")
    assert first.id in follow_ups[-1].metadata["parent_batch_ids"].split(",")
    retried = {r["custom_id"] for r in rows if r["attempts"] >= 2}
    extra_attempts = sum(r["attempts"] - 1 for r in rows if r["custom_id"] in retried)
    assert sum(b.request_counts.total for b in batches) == 24 + extra_attempts


def test_expired_lines_are_retried_up_to_the_limit(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=6, local_api={"completion_window_seconds": 0.05, "pace_seconds": 1.0},
                    max_attempts=2)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    rows = results(pipeline_env)
    assert {(r["status"], r["error_code"], r["attempts"]) for r in rows} == {("expired", "batch_expired", 2)}
    assert sorted(b.metadata["attempt"] for b in provider_batches(defs)) == ["1", "2"]


def test_token_limit_failures_are_retried_then_reported(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=4, local_api={"enqueued_token_limit": 5})
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    rows = results(pipeline_env)
    assert {(r["status"], r["error_code"], r["attempts"]) for r in rows} == {("failed", "token_limit_exceeded", 3)}
    assert len(provider_batches(defs)) == 3


def test_admission_holds_shards_back_instead_of_hitting_the_queue_limit(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=12, max_requests_per_shard=4, token_limits={"gpt-4o-mini": 120},
                    local_api={"pace_seconds": 0.3})
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    record = instance.get_latest_materialization_event(asset_key(uc, "batches")).asset_materialization
    assert record.metadata["queued_shards"].value >= 1
    executed = run_until_idle(defs, instance)
    assert any(r.tags["batch_pipeline/reason"] == "admit" for r in executed)
    rows = results(pipeline_env)
    assert [r["status"] for r in rows] == ["succeeded"] * 12
    batches = provider_batches(defs)
    assert len(batches) == 3 and all(b.status == "completed" for b in batches)


def test_a_shard_bigger_than_the_whole_limit_goes_alone(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=8, max_requests_per_shard=4, token_limits={"gpt-4o-mini": 10})
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    assert len(provider_batches(defs)) == 1  # the first went alone, the second waits
    run_until_idle(defs, instance)
    assert [r["status"] for r in results(pipeline_env)] == ["succeeded"] * 8
    assert len(provider_batches(defs)) == 2
