"""Two runs of the same work at the same moment pay for it once.

Two processes, one Dagster instance, one served local Batch API whose uploads take long enough
that the two submissions overlap; each round is a fresh use case (fresh idempotency keys), both
processes start it together after a barrier. At the provider: exactly one batch per
(use case, partition, shard, attempt), every round. Both runs end green: the later one waits on
the partition's lease, then finds the batches and reuses them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import openai
import pytest

from tests.conftest import PROJECT_ROOT
from tests.local_api.conftest import launch

KEY = "sk-test-concurrency"


@pytest.fixture
def served(tmp_path: Path):
    server = launch(tmp_path / "api", tmp_path, "--pace-seconds", "0.2", "--upload-seconds", "0.3", api_key=KEY)
    yield server
    server.stop()


def run_pair(
    root: Path, base_url: str, rounds: int, partitions: tuple[str, str], home: Path | None = None
) -> list[dict]:
    """Start both processes, wait for both, return every round's outcome of both. The Dagster
    instance is `home` (a Postgres one) or a new SQLite one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCH_PIPELINE_"))}
    if home is None:
        home = root / "home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        # create the SQLite storages once: two processes creating them at the same moment can
        # both stamp their schema version (Dagster's own race, not the one under test)
        with dg.DagsterInstance.from_config(str(home)):
            pass
    env |= {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": base_url, "DAGSTER_HOME": str(home)}
    # output goes to files: a pipe nobody reads while the other process is awaited fills up
    # and blocks its writer
    logs = {me: (root / f"{me}.out", root / f"{me}.err") for me in "ab"}
    processes = {}
    for me, other, part in (("a", "b", partitions[0]), ("b", "a", partitions[1])):
        with open(logs[me][0], "wb") as out, open(logs[me][1], "wb") as err:
            processes[me] = subprocess.Popen(
                [sys.executable, "-m", "tests.concurrency_runner", str(root), str(rounds), me, other, part],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=err)
    failures = []
    for me, process in processes.items():
        if process.wait(timeout=1200) != 0:
            failures.append(f"--- process {me} exited {process.returncode}:\n{logs[me][1].read_text()[-4000:]}")
    assert not failures, "\n".join(failures)
    return [json.loads(line) for me in "ab" for line in logs[me][0].read_text().splitlines() if line.startswith("{")]


def batches_per_piece(base_url: str) -> Counter:
    client = openai.OpenAI(api_key=KEY, base_url=base_url)
    return Counter(
        (b.metadata["use_case"], b.metadata["partition"], b.metadata["shard"], b.metadata["attempt"])
        for b in client.batches.list(limit=100)  # the client pages through them all
    )


@pytest.mark.timeout(1500)
def test_two_submissions_of_one_partition_at_once_create_one_batch_per_shard(tmp_path, served):
    rounds = 20
    outcomes = run_pair(tmp_path, served.base_url, rounds, ("2026-11-20", "2026-11-20"))
    assert len(outcomes) == 2 * rounds and all(o["success"] for o in outcomes), outcomes
    pieces = batches_per_piece(served.base_url)
    assert len(pieces) == rounds * 2  # 6 rows in shards of 3
    assert [piece for piece, n in pieces.items() if n > 1] == []


@pytest.mark.timeout(900)
def test_a_range_run_beside_a_single_partition_run_pays_once(tmp_path, served):
    rounds = 3
    outcomes = run_pair(tmp_path, served.base_url, rounds, ("2026-11-20...2026-11-21", "2026-11-21"))
    assert all(o["success"] for o in outcomes), outcomes
    pieces = batches_per_piece(served.base_url)
    assert len(pieces) == rounds * 2 * 2
    assert [piece for piece, n in pieces.items() if n > 1] == []


@pytest.mark.timeout(900)
def test_two_submissions_at_once_on_a_postgres_instance(tmp_path, served, postgres_home):
    rounds = 5
    outcomes = run_pair(tmp_path, served.base_url, rounds, ("2026-11-20", "2026-11-20"), home=postgres_home)
    assert len(outcomes) == 2 * rounds and all(o["success"] for o in outcomes), outcomes
    pieces = batches_per_piece(served.base_url)
    assert len(pieces) == rounds * 2
    assert [piece for piece, n in pieces.items() if n > 1] == []
