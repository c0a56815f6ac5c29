"""Nothing paid twice in a busy organisation: the lookup by idempotency key is bounded by time
(the partition's recorded submission intent), not by a number of batches, and fails closed."""

from __future__ import annotations

from collections import Counter

import dagster as dg

from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.provider.contract import PIPELINE
from benchmarks.bench_monitor import seed_foreign_batches
from tests.fault_runner import PARTITION, build
from tests.helpers import submit
from tests.test_fault_matrix import finish, killed_at, with_faults

FOREIGN = 10_000


def our_pieces(root) -> Counter:
    client = build(root)[1].resources["batch_api"].client()
    return Counter(
        (b.metadata["partition"], b.metadata["shard"], b.metadata["attempt"])
        for b in client.batches.list(limit=100)
        if (b.metadata or {}).get("pipeline") == PIPELINE
    )


def test_a_batch_created_before_a_crash_is_reused_under_10000_newer_batches(tmp_path):
    with dg.instance_for_test() as instance:
        killed_at(tmp_path, "submit", "submission.created")
        assert sum(our_pieces(tmp_path).values()) == 1
        seed_foreign_batches(tmp_path / "api", FOREIGN)
        finish(tmp_path, instance)
    pieces = our_pieces(tmp_path)
    assert len(pieces) == 3 and set(pieces.values()) == {1}, pieces


def test_a_lookup_that_cannot_finish_creates_nothing(tmp_path):
    with dg.instance_for_test() as instance:
        killed_at(tmp_path, "submit", "submission.created")
        with_faults(tmp_path, api_server_error_fraction=1.0)
        uc, defs = build(tmp_path)
        assert not submit(defs, instance, submit_job(uc).name, PARTITION).success
        with_faults(tmp_path)
        assert sum(our_pieces(tmp_path).values()) == 1
        finish(tmp_path, instance)
    pieces = our_pieces(tmp_path)
    assert len(pieces) == 3 and set(pieces.values()) == {1}, pieces
