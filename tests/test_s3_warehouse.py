"""The warehouse on object storage: `s3://` end to end against an S3-compatible server process.

The server is moto's (`python -m moto.server`, the `s3_server` fixture in conftest), reached over
HTTP like real S3: s3fs/botocore find it through AWS_ENDPOINT_URL, as a deployment pointing at
MinIO or another S3-compatible store would. Nothing patches the client library.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.dataset as ds
import pytest

from batch_pipeline.dagster.jobs import asset_key, submit_job
from batch_pipeline.state.lease import PartitionBusy, partition_lease
from batch_pipeline.testing import run_until_idle
from batch_pipeline.warehouse.storage import Warehouse
from tests.conftest import PROJECT_ROOT
from tests.helpers import submit
from tests.test_retries import make  # the same 10-to-30-row notes use case

s3fs = pytest.importorskip("s3fs")

PARTITION = "2026-11-20"


def run_all(defs: dg.Definitions, instance: dg.DagsterInstance) -> list:
    """Tick the real monitor and run what it asks for until nothing is in flight; all must succeed."""
    executed = run_until_idle(defs, instance, timeout=180)
    for request, result in executed:
        assert result.success, request
    return executed


def every_row_once(executed) -> list[bool]:
    return [e.passed for _, result in executed for e in result.get_asset_check_evaluations()
            if e.check_name == "every_row_once"]


def s3_keys(root: str, area: str) -> list[str]:
    """The object keys under `<root>/notes/<area>/partition=…`, relative to that folder, read
    with a fresh client (nothing cached from the pipeline's own writes)."""
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    folder = f"{root.removeprefix('s3://')}/notes/{area}/partition={PARTITION}"
    return sorted(p.removeprefix(folder + "/") for p in fs.find(folder))


def results_from_s3(root: str) -> list[dict]:
    """The use case's whole history as DuckDB reads it from S3 (through the fsspec filesystem:
    DuckDB's httpfs extension would be a download), checked against pyarrow's own read."""
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    con = duckdb.connect()
    con.register_filesystem(fs)
    rows = con.sql(
        f"select * from read_parquet('{root}/notes/results/**/*.parquet', hive_partitioning=true) order by custom_id"
    ).to_arrow_table()
    dataset = ds.dataset(f"{root.removeprefix('s3://')}/notes/results", filesystem=fs, format="parquet",
                         partitioning="hive")
    assert dataset.to_table().num_rows == rows.num_rows
    return rows.to_pylist()


def test_use_case_end_to_end_on_s3(instance, s3_warehouse, pipeline_env):
    uc, defs = make(pipeline_env, rows=25, max_requests_per_shard=10)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    assert not (pipeline_env / "warehouse").exists() and not (Path.cwd() / "s3:").exists(), "stayed on S3"
    requests = s3_keys(s3_warehouse, "requests")
    assert {"rows.parquet", "shard-00000.jsonl", "shard-00001.jsonl", "shard-00002.jsonl"} <= set(requests)

    executed = run_all(defs, instance)
    assert every_row_once(executed) == [True]

    rows = results_from_s3(s3_warehouse)
    assert [r["id"] for r in rows] == [f"n{i:03d}" for i in range(25)]  # every source row, once
    assert len({r["custom_id"] for r in rows}) == 25
    assert {r["status"] for r in rows} == {"succeeded"} and {str(r["partition"]) for r in rows} == {PARTITION}
    assert all(r["output"] and r["cost_usd"] > 0 and r["batch_id"] for r in rows)
    batch_ids = {r["batch_id"] for r in rows}
    assert len(batch_ids) == 3
    assert s3_keys(s3_warehouse, "raw") == sorted(f"{b}.output.jsonl" for b in batch_ids)
    assert s3_keys(s3_warehouse, "results") == ["results.parquet"]

    # A rerun of the same partition on S3 reuses every batch and keeps every answer.
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    latest = instance.get_latest_materialization_event(asset_key(uc, "batches")).asset_materialization
    assert latest.metadata["new_batches"].value == 0


def test_retry_round_lands_on_s3(instance, s3_warehouse, pipeline_env):
    faults = {"line_server_error_fraction": 0.3, "fault_seed": 5}
    uc, defs = make(pipeline_env, rows=20, local_api=faults, max_attempts=3)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    executed = run_all(defs, instance)
    assert every_row_once(executed)[-1] is True

    rows = results_from_s3(s3_warehouse)
    assert sorted(r["id"] for r in rows) == [f"n{i:03d}" for i in range(20)]
    retried = [r for r in rows if r["attempts"] >= 2]
    assert retried, "the injected 500s were retried"
    assert all(r["status"] == "succeeded" or r["error_code"] == "server_error" for r in rows)
    assert any(r["status"] == "succeeded" for r in retried)

    requests = s3_keys(s3_warehouse, "requests")
    assert any(k.startswith("retry-a2-") for k in requests), requests
    raw = s3_keys(s3_warehouse, "raw")
    assert len({k.split(".")[0] for k in raw}) >= 2  # the first batch and a follow-up kept raw
    assert any(k.endswith(".error.jsonl") for k in raw), raw


def test_a_rebuild_on_s3_keeps_the_request_file_as_sent(instance, s3_warehouse, pipeline_env):
    """The file a batch was sent from is moved (a server-side copy) beside its output when a
    rebuild replaces it, byte for byte."""
    uc, defs = make(pipeline_env, rows=6)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    shard = f"{s3_warehouse.removeprefix('s3://')}/notes/requests/partition={PARTITION}/shard-00000.jsonl"
    as_sent = fs.cat_file(shard)
    run_all(defs, instance)
    [first] = list(defs.resources["batch_api"].client().batches.list())
    uc.source.path.write_text(uc.source.path.read_text().replace("note 3 about", "note 3 (amended) about"))
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    assert f"{first.id}.input.jsonl" in s3_keys(s3_warehouse, "raw")
    kept = f"{s3_warehouse.removeprefix('s3://')}/notes/raw/partition={PARTITION}/{first.id}.input.jsonl"
    assert fs.cat_file(kept) == as_sent and fs.cat_file(shard).count(b"\n") == 1


def test_files_another_process_wrote_are_seen_after_a_listing(s3_warehouse):
    """fsspec caches listings per process; a warehouse must not: another run's intents written
    after this process listed the folder would otherwise look absent, and be overwritten."""
    wh = Warehouse(s3_warehouse)
    folder = wh.partition_dir("notes", "requests", PARTITION)
    wh.write_bytes(folder / "shard-00000.jsonl", b"{}\n")
    assert [p.name for p in folder.glob("*.jsonl")] == ["shard-00000.jsonl"]  # a listing, as a run makes
    another_process = s3fs.S3FileSystem(skip_instance_cache=True)
    another_process.pipe_file((folder / "intents.json").path, b"{}")
    assert (folder / "intents.json").exists()
    assert sorted(p.name for p in folder.glob("*")) == ["intents.json", "shard-00000.jsonl"]


def test_partition_lease_on_s3_is_exclusive_and_released(s3_warehouse):
    wh = Warehouse(s3_warehouse)
    with partition_lease(wh, "notes", PARTITION, wait_seconds=5):
        with pytest.raises(PartitionBusy), partition_lease(wh, "notes", PARTITION, wait_seconds=1):
            pass
    with partition_lease(wh, "notes", PARTITION, wait_seconds=1):  # released: taken at once
        pass
    assert s3_keys(s3_warehouse, "requests") == []  # every claim deleted on release

    claims = wh.partition_dir("notes", "requests", PARTITION) / ".claims"
    wh.write_bytes(claims / "claim-000000000001.json", b'{"owner": "dead", "expires_at": 0}')
    with partition_lease(wh, "notes", PARTITION, wait_seconds=1):  # an expired claim does not block
        assert s3_keys(s3_warehouse, "requests") == [".claims/claim-000000000001.json",
                                                     ".claims/claim-000000000002.json"]


@pytest.mark.timeout(900)  # every sample use case, every partition: minutes on a loaded 2-core host
def test_demo_accepts_an_s3_warehouse(tmp_path, s3_bucket, s3_env):
    root = f"s3://{s3_bucket}/demo"
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCH_PIPELINE_"))}
    env |= s3_env | {"DAGSTER_HOME": str(home), "BATCH_PIPELINE_LOCAL_API_DIR": str(tmp_path / "local_api")}
    started = time.monotonic()
    # one use case and one partition: the whole demo on the local disk is covered elsewhere
    demo = subprocess.run([sys.executable, "-m", "batch_pipeline.cli", "demo", "--warehouse", root,
                           "--use-case", "patient_education", "--partition", "2026-11-20"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert f"warehouse:  {root}" in demo.stdout
    assert f"{root}/patient_education/results/partition=" in demo.stdout  # the summary read it there
    assert not (PROJECT_ROOT / "s3:").exists()
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    assert fs.glob(f"{s3_bucket}/demo/*/results/partition=*/results.parquet")
    print(f"demo on S3: {time.monotonic() - started:.1f} s")
