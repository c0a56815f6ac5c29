"""Two runs of the same work at the same moment pay for it once.

Two processes, one Dagster instance, one served local Batch API whose uploads take long enough
that the two submissions overlap; each round is a fresh use case (fresh idempotency keys), both
processes start it together after a barrier. At the provider, counted through its official SDK
(`tests/provider_batches.py`): exactly one batch per (use case, partition, shard, attempt), every
round, on OpenAI, Anthropic (no metadata: the lease and the intent log keep the second run from
sending) and Gemini. Both runs end green: the later one waits on the partition's lease, then finds
the batches and reuses them. The lease is the same code on every provider, so Anthropic and Gemini
run fewer rounds; the range run and the Postgres instance run on OpenAI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anthropic
import dagster as dg
import openai
import pytest
from google import genai
from google.genai import types

from tests import provider_batches
from tests.conftest import PROJECT_ROOT
from tests.local_api.conftest import launch

KEY = "sk-test-concurrency"


@pytest.fixture
def served(tmp_path: Path):
    server = launch(tmp_path / "api", tmp_path, "--pace-seconds", "0.2", "--upload-seconds", "0.3", api_key=KEY)
    yield server
    server.stop()


def provider_env(provider: str, base_url: str) -> dict[str, str]:
    """The variables that point `provider`'s official client at the served local Batch API."""
    origin = base_url.removesuffix("/v1")
    return {"openai": {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": base_url},
            "anthropic": {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": origin},
            "gemini": {"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": origin}}[provider] | {
        "BATCH_PIPELINE_PROVIDER": provider}


def client_of(provider: str, base_url: str) -> Any:
    origin = base_url.removesuffix("/v1")
    if provider == "anthropic":
        return anthropic.Anthropic(api_key=KEY, base_url=origin)
    if provider == "gemini":
        return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=origin))
    return openai.OpenAI(api_key=KEY, base_url=base_url)


def run_pair(
    root: Path, base_url: str, rounds: int, partitions: tuple[str, str], home: Path | None = None,
    provider: str = "openai",
) -> list[dict]:
    """Start both processes, wait for both, return every round's outcome of both. The Dagster
    instance is `home` (a Postgres one) or a new SQLite one."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "BATCH_PIPELINE_", "ANTHROPIC_", "GEMINI_", "GOOGLE_"))}
    if home is None:
        home = root / "home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        # create the SQLite storages once: two processes creating them at the same moment can
        # both stamp their schema version (Dagster's own race, not the one under test)
        with dg.DagsterInstance.from_config(str(home)):
            pass
    env |= provider_env(provider, base_url) | {"DAGSTER_HOME": str(home)}
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


def batches_per_piece(base_url: str, provider: str = "openai") -> Counter:
    return provider_batches.pieces(client_of(provider, base_url))


ROUNDS = {"openai": 20, "anthropic": 3, "gemini": 3}


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("provider", list(ROUNDS))
def test_two_submissions_of_one_partition_at_once_create_one_batch_per_shard(tmp_path, served, provider):
    rounds = ROUNDS[provider]
    outcomes = run_pair(tmp_path, served.base_url, rounds, ("2026-11-20", "2026-11-20"), provider=provider)
    assert len(outcomes) == 2 * rounds and all(o["success"] for o in outcomes), outcomes
    pieces = batches_per_piece(served.base_url, provider)
    assert len(pieces) == rounds * 2  # 6 rows in shards of 3
    assert [piece for piece, n in pieces.items() if n > 1] == []
    print(f"\n{provider}: {rounds} rounds, {sum(pieces.values())} batches for {len(pieces)} shards")


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
