"""Anthropic's Message Batches and Gemini's Batch Mode through the real Definitions, with no key:
the embedded local Batch API answers in each provider's protocol to its official SDK. A chat use
case with a response model lands typed columns; a rerun pays nothing; an endpoint the provider
has not fails before anything is built, naming the use case, the endpoint and the provider."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from batch_pipeline import BatchAPIResource, BatchSpec, CsvSource, UseCase, definitions_for
from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.dagster.state_store import latest_state
from batch_pipeline.testing import failure_message
from tests.helpers import run_until_idle, submit

DAY = "2026-11-20"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-16", timezone="UTC")
MODELS = {"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")


class Triage(BaseModel):
    priority: int
    team: str


@pytest.fixture(params=["anthropic", "gemini"])
def provider(request: pytest.FixtureRequest, pipeline_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", request.param)
    return request.param


def use_case(root: Path, **spec: object) -> UseCase:
    path = root / "tickets.csv"
    path.write_text("ticket,day,text\n" + "".join(f"T{i},{DAY},printer {i} is on fire\n" for i in range(5)))
    fields = {"name": "tickets", "model": "gpt-4o-mini", "models": MODELS, "system_prompt": "Triage tickets.",
              "prompt": "Ticket {ticket}: {text}", "response_model": Triage, "max_requests_per_shard": 2, **spec}
    return UseCase(BatchSpec(**fields), CsvSource(path, key="ticket", partition_column="day"), DAILY)  # type: ignore[arg-type]


def test_a_partition_lands_typed_results_and_a_rerun_pays_nothing(provider, pipeline_env, instance):
    uc = use_case(pipeline_env)
    defs = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)
    rows = pq.read_table(pipeline_env / "warehouse" / "tickets" / "results" / f"partition={DAY}").to_pylist()
    assert sorted(r["ticket"] for r in rows) == [f"T{i}" for i in range(5)]
    assert {r["status"] for r in rows} == {"succeeded"}
    assert all(isinstance(r["priority"], int) and r["team"] for r in rows)
    assert all(r["input_tokens"] and r["output_tokens"] and r["cost_usd"] for r in rows)  # priced as its model
    assert {r["model"] for r in rows} <= {MODELS[provider], f"models/{MODELS[provider]}"}
    state = latest_state(instance, uc, DAY)
    assert state is not None and {s.provider for s in state.batches} == {provider} and len(state.batches) == 3

    assert submit(defs, instance, submit_job(uc).name, DAY).success  # every row kept its answer
    run_until_idle(defs, instance)
    again = latest_state(instance, uc, DAY)
    assert again is not None and not again.submissions and {s.batch_id for s in again.kept} == {
        s.batch_id for s in state.batches}


@pytest.mark.parametrize("endpoint, model", [("/v1/moderations", "omni-moderation-latest"),
                                             ("/v1/images/generations", "gpt-image-1-mini")])
def test_an_endpoint_the_provider_has_not_fails_before_anything_is_built(provider, pipeline_env, instance, endpoint,
                                                                         model):
    uc = use_case(pipeline_env, name="screening", endpoint=endpoint, response_model=None, system_prompt=None,
                  model=model, parameters={})
    defs = definitions_for([uc], batch_api=BatchAPIResource())
    result = submit(defs, instance, submit_job(uc).name, DAY)
    assert not result.success
    message = failure_message(result)
    assert "'screening'" in message and endpoint in message and provider in message
    assert not (pipeline_env / "warehouse" / "screening" / "requests").exists()


def test_gemini_batch_embeddings_land_vectors_of_the_asked_size(pipeline_env, instance, monkeypatch):
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", "gemini")
    uc = use_case(pipeline_env, name="vectors", endpoint="/v1/embeddings", response_model=None, system_prompt=None,
                  model="text-embedding-3-small", models={"gemini": "gemini-embedding-001"},
                  parameters={"dimensions": 8})
    defs = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)
    rows = pq.read_table(pipeline_env / "warehouse" / "vectors" / "results" / f"partition={DAY}").to_pylist()
    assert sorted(r["ticket"] for r in rows) == [f"T{i}" for i in range(5)]
    assert {r["status"] for r in rows} == {"succeeded"} and {len(r["embedding"]) for r in rows} == {8}
    assert all(r["input_tokens"] for r in rows)  # each embed response's tokenCount
    # an embed response names no model: the row is priced as the model its request asked for
    assert {r["model"] for r in rows} == {"gemini-embedding-001"} and all(r["cost_usd"] > 0 for r in rows)
