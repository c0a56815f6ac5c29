"""A registered provider that keeps no idempotency key (the contract suite's in-memory fake),
through the real Definitions: a partition runs end to end on it, and a submission interrupted
between its paid create and recording the batch id blocks the partition, naming the candidate
batch, until an operator resolves the intent; never a second batch."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq
import pytest

from batch_pipeline import BatchAPIResource, definitions_for
from batch_pipeline.cli import main as cli
from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.provider import registry
from batch_pipeline.provider.submission import Shard, batch_metadata
from batch_pipeline.state.intent import intents_of
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse
from tests.fake_provider import FakeProvider, fake
from tests.helpers import run_until_idle, submit
from tests.test_azure import DAY, tickets_use_case


@pytest.fixture
def provider(pipeline_env, monkeypatch) -> FakeProvider:
    held = fake()
    monkeypatch.setitem(registry.REGISTERED, "fake", lambda: held)
    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", "fake")
    return held


def results(root) -> list[dict]:
    return pq.read_table(root / "warehouse" / "tickets" / "results" / f"partition={DAY}").to_pylist()


def test_a_registered_provider_runs_a_partition_end_to_end(provider, pipeline_env, instance):
    uc = tickets_use_case(pipeline_env)
    defs = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)
    assert sorted(r["status"] for r in results(pipeline_env)) == ["succeeded"] * 3
    assert len(provider.client_state.batches) == 2  # two shards of at most two requests
    assert provider.client_state.files == set()  # cleaned up once kept in the warehouse


def test_an_interrupted_submission_blocks_until_resolved_and_never_pays_twice(provider, pipeline_env, instance):
    uc = tickets_use_case(pipeline_env)
    defs = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    first = dg.materialize([a for a in defs.assets if isinstance(a, dg.AssetsDefinition)
                            and a.key.path[-1] == "requests"], instance=instance, partition_key=DAY,
                           resources=defs.resources)
    assert first.success
    wh = Warehouse(str(pipeline_env / "warehouse"))
    folder = wh.partition_dir("tickets", layout.REQUESTS, DAY)
    [path, *_] = sorted(folder.glob(layout.SHARD_GLOB))
    shard = Shard(0, wh.relative(path), path.read_bytes())  # a run sent shard 0, then died
    meta = batch_metadata("tickets", DAY, uc.spec.model, shard)
    key = meta.pop("idempotency_key")
    intents_of(wh, "tickets", DAY).record([key])
    api = provider.connect()
    created = api.submit(shard.data, provider.encoding(uc.spec), key, meta, False, lambda text: None)

    blocked = submit(defs, instance, submit_job(uc).name, DAY)
    assert not blocked.success
    message = "".join(e.step_failure_data.error.message for e in blocked.all_events
                      if e.is_step_failure and e.step_failure_data and e.step_failure_data.error)
    assert "blocked" in message and created.id in message and "batch-pipeline intents resolve" in message
    assert list(provider.client_state.batches) == [created.id]  # nothing sent

    assert cli(["intents", "resolve", "--warehouse", str(pipeline_env / "warehouse"), "tickets", DAY, key,
                created.id]) == 0
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)
    assert sorted(r["status"] for r in results(pipeline_env)) == ["succeeded"] * 3
    assert created.id in {r["batch_id"] for r in results(pipeline_env)}
    assert len(provider.client_state.batches) == 2  # shard 0's batch reused, shard 1's sent once
