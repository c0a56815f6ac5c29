"""Crashes and provider faults at every point of the flow, each followed by a rerun.

For each fault point: the provider holds exactly one batch per (partition, shard, attempt), the
Parquet equals that of a fault-free run, and no row is lost or doubled. Kills are real: the step
runs in a subprocess that SIGKILLs itself at a named failpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from batch_pipeline.dagster.jobs import submit_job
from tests.conftest import PROJECT_ROOT
from tests.fault_runner import PARTITION, ROWS, build
from tests.helpers import run_until_idle, submit, tick

COMPARED = ["id", "custom_id", "status", "output", "error_code"]
PAID: dict[str, tuple[int, int]] = {}


def killed_at(root: Path, step: str, point: str) -> None:
    env = {**os.environ, "BATCH_PIPELINE_FAILPOINT": point}
    done = subprocess.run([sys.executable, "-m", "tests.fault_runner", str(root), step], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]


def finish(root: Path, instance: dg.DagsterInstance, delete_provider_files: bool = True) -> None:
    """The rerun: submit the partition again and let the monitor bring it to Parquet."""
    uc, defs = build(root, delete_provider_files)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)


def outcome(root: Path) -> tuple[list[dict], list]:
    uc, defs = build(root)
    path = root / "warehouse" / "notes" / "results" / f"partition={PARTITION}" / "results.parquet"
    rows = pq.read_table(path, columns=COMPARED).to_pylist()
    batches = list(defs.resources["batch_api"].client().batches.list(limit=100))
    return rows, batches


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("fault_free")
    with dg.instance_for_test() as instance:
        finish(root, instance)
    rows, batches = outcome(root)
    assert len(batches) == 3 and all(r["status"] == "succeeded" for r in rows)
    return rows


def with_faults(root: Path, **settings) -> None:
    (root / "local_api.json").write_text(json.dumps(settings))


def submitted(root: Path, instance) -> None:
    uc, defs = build(root)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success


MATRIX = {
    # submission
    "killed after writing shards, before the index": lambda r, i: killed_at(r, "submit", "requests.shards_written"),
    "killed after requests, before Dagster records them": lambda r, i: killed_at(r, "submit", "requests.done"),
    "killed after upload, before batch create": lambda r, i: killed_at(r, "submit", "submission.uploaded"),
    "killed after the first batch create": lambda r, i: killed_at(r, "submit", "submission.created"),
    "killed after all creates, before Dagster records them": lambda r, i: killed_at(r, "submit", "batches.done"),
    "HTTP 429/500 on a third of API calls while submitting": lambda r, i: (
        with_faults(r, api_rate_limit_fraction=0.15, api_server_error_fraction=0.15, fault_seed=5),
        submitted(r, i), with_faults(r)),
    # sensor
    "sensor killed after listing, before its cursor is saved": lambda r, i: (
        submitted(r, i), killed_at(r, "tick", "monitor.listed")),
    "provider down for a sensor tick": lambda r, i: (
        submitted(r, i), with_faults(r, api_server_error_fraction=1.0), _down_tick(r, i), with_faults(r)),
    # harvest
    "killed after downloading raw files, before parsing": lambda r, i: (
        submitted(r, i), killed_at(r, "harvest", "harvest.downloaded")),
    "killed after writing Parquet, before Dagster records it": lambda r, i: (
        submitted(r, i), killed_at(r, "harvest", "results.written")),
    "per-request 429/500, retried in follow-up batches": lambda r, i: with_faults(
        r, line_rate_limit_fraction=0.3, line_server_error_fraction=0.2, fault_seed=11),
    "killed after a follow-up round and its Parquet, before Dagster recorded them": lambda r, i: (
        with_faults(r, line_rate_limit_fraction=0.4, fault_seed=2), submitted(r, i),
        killed_at(r, "harvest", "results.written")),
    "killed while creating a follow-up batch": lambda r, i: (
        with_faults(r, line_rate_limit_fraction=0.4, fault_seed=2), submitted(r, i),
        killed_at(r, "harvest", "submission.created")),
}


def _down_tick(root: Path, instance) -> None:
    uc, defs = build(root)
    data = tick(defs, instance, None)
    assert not data.run_requests and data.skip_message.startswith("provider unavailable")


@pytest.mark.parametrize("fault", list(MATRIX))
def test_fault_point(fault, reference, tmp_path):
    with dg.instance_for_test() as instance:
        MATRIX[fault](tmp_path, instance)
        finish(tmp_path, instance)
    rows, batches = outcome(tmp_path)

    assert rows == reference, fault
    # Every batch's files are deleted at the provider, even those of a results run killed after its
    # Parquet when the rerun's resubmission carried every answer from that Parquet (no results run
    # harvests those batches again: the killed run's note of them is what gets them deleted).
    assert list(build(tmp_path)[1].resources["batch_api"].client().files.list()) == [], fault
    keys = Counter((b.metadata["partition"], b.metadata["shard"], b.metadata["attempt"]) for b in batches)
    assert all(n == 1 for n in keys.values()), keys
    first_round = {k for k in keys if k[2] == "1"}
    assert len(first_round) == 3
    PAID[fault] = (sum(b.request_counts.completed for b in batches), ROWS)


def test_matrix_summary():
    """Paid requests per unique row over the whole matrix (goal 1.00); printed for the notes."""
    if not PAID:
        pytest.skip("runs after the matrix")
    paid, rows = sum(p for p, _ in PAID.values()), sum(r for _, r in PAID.values())
    print(f"\nfault matrix: {len(PAID)} points, paid requests / unique rows = {paid}/{rows} = {paid / rows:.2f}")
    assert paid == rows


def test_an_upload_orphaned_by_a_crash_is_reused_not_uploaded_again(tmp_path):
    """Killed between upload and batch create: the rerun creates the batch from that very upload.

    Counted at the local Batch API itself (its batch input files, kept there after the harvest
    for the count), so an implementation that uploads again passes every other check of the
    matrix but not this one.
    """
    with dg.instance_for_test() as instance:
        killed_at(tmp_path, "submit", "submission.uploaded")
        client = build(tmp_path)[1].resources["batch_api"].client()
        [orphan] = client.files.list(purpose="batch")
        assert list(client.batches.list()) == []
        finish(tmp_path, instance, delete_provider_files=False)
    uploads = [f.id for f in client.files.list(purpose="batch")]
    batches = list(client.batches.list(limit=100))
    assert len(batches) == 3 and all(b.status == "completed" for b in batches)
    assert orphan.id in {b.input_file_id for b in batches}, "the orphaned upload became a batch"
    assert sorted(uploads) == sorted(b.input_file_id for b in batches), "one upload per batch, none sent twice"
