"""Provider file hygiene: a harvested partition leaves no files at the provider, only raw copies
in the warehouse; a results rerun after that reads the copies and creates no batch."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from batch_pipeline import UseCase
from batch_pipeline.dagster.jobs import asset_key, results_job, submit_job
from batch_pipeline.testing import results
from tests.helpers import run_until_idle, submit
from tests.test_retries import PARTITION
from tests.test_retries import make as notes

# Per-request 400s (never retried) give the batches error files as well as output files.
FAULTS = {"line_invalid_request_fraction": 0.3, "fault_seed": 7}


def make(tmp_path: Path, delete_provider_files: bool) -> tuple[UseCase, dg.Definitions]:
    """Eight notes in three shards, on the embedded local Batch API."""
    return notes(tmp_path, rows=8, local_api=FAULTS, max_requests_per_shard=3,
                 batch_api_args={"delete_provider_files": delete_provider_files})


def harvested(uc: UseCase, defs: dg.Definitions, instance: dg.DagsterInstance) -> tuple[list, set[str]]:
    """Submit and harvest the partition; the provider's batches and the ids of their files."""
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    batches = list(defs.resources["batch_api"].client().batches.list(limit=100))
    assert len(batches) == 3 and all(b.status == "completed" for b in batches)
    assert any(b.error_file_id for b in batches) and any(b.output_file_id for b in batches)
    return batches, {f for b in batches for f in (b.input_file_id, b.output_file_id, b.error_file_id) if f}


def raw_copies(pipeline_env: Path, batches: list) -> dict[str, bytes]:
    """Every output and error file of `batches` as kept in the warehouse (KeyError if one is not)."""
    raw = pipeline_env / "warehouse" / "notes" / "raw" / f"partition={PARTITION}"
    kept = {p.name: p.read_bytes() for p in raw.iterdir()}
    names = [f"{b.id}.{kind}.jsonl" for b in batches for kind, file_id in
             (("output", b.output_file_id), ("error", b.error_file_id)) if file_id]
    return {name: kept[name] for name in names}


def files_deleted(instance: dg.DagsterInstance, uc: UseCase) -> int:
    event = instance.get_latest_materialization_event(asset_key(uc, "results"))
    return event.asset_materialization.metadata["provider_files_deleted"].value


def test_a_harvested_partition_leaves_no_files_at_the_provider(instance, pipeline_env):
    uc, defs = make(pipeline_env, delete_provider_files=True)
    batches, file_ids = harvested(uc, defs, instance)
    client = defs.resources["batch_api"].client()
    assert list(client.files.list()) == []
    assert files_deleted(instance, uc) == len(file_ids)
    kept = raw_copies(pipeline_env, batches)
    before = results(defs, uc, PARTITION)
    assert sorted(set(before["status"].to_pylist())) == ["failed", "succeeded"]

    # A results rerun reads the raw copies (the provider's are gone): it works and creates no batch.
    rerun = defs.resolve_job_def(results_job(uc).name).execute_in_process(instance=instance, partition_key=PARTITION)
    assert rerun.success
    assert [b.id for b in client.batches.list(limit=100)] == [b.id for b in batches]
    assert results(defs, uc, PARTITION) == before
    assert raw_copies(pipeline_env, batches) == kept
    assert files_deleted(instance, uc) == 0


def test_with_the_setting_off_the_files_stay_at_the_provider(instance, pipeline_env):
    uc, defs = make(pipeline_env, delete_provider_files=False)
    batches, file_ids = harvested(uc, defs, instance)
    assert {f.id for f in defs.resources["batch_api"].client().files.list()} == file_ids
    assert files_deleted(instance, uc) == 0
    assert raw_copies(pipeline_env, batches)
