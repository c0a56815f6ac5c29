"""Switching providers while batches are in flight: each submission records the provider that
holds its batch, so the batch monitor watches it there and the results run harvests it there,
whichever provider is configured now; nothing is sent again."""

from __future__ import annotations

import pyarrow.parquet as pq

from batch_pipeline import BatchAPIResource, definitions_for
from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.dagster.state_store import latest_state
from tests.helpers import run_until_idle, submit
from tests.test_azure import AZURE_VARIABLES, DAY, DEPLOYMENT, event_text, tickets_use_case


def test_batches_sent_to_openai_are_harvested_from_it_after_switching_to_azure(pipeline_env, instance, monkeypatch):
    for name in AZURE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    uc = tickets_use_case(pipeline_env)
    sent_on_openai = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    assert submit(sent_on_openai, instance, submit_job(uc).name, DAY).success, event_text(instance)[-3000:]
    state = latest_state(instance, uc, DAY)
    assert state is not None and {s.provider for s in state.unharvested} == {"openai"}
    client = sent_on_openai.resources["batch_api"].client()
    batches = {b.id for b in client.batches.list(limit=100)}

    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", "azure")  # the setting changes while they run
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    monkeypatch.setenv("BATCH_PIPELINE_AZURE_DEPLOYMENTS", f"gpt-4o-mini={DEPLOYMENT}")
    now_on_azure = definitions_for([uc], batch_api=BatchAPIResource())
    run_until_idle(now_on_azure, instance)

    harvested = latest_state(instance, uc, DAY)
    assert harvested is not None and harvested.results_written and not harvested.unharvested
    assert set(harvested.harvested) == {s.batch_id for s in state.submissions} <= batches
    results = pq.read_table(pipeline_env / "warehouse" / "tickets" / "results" / f"partition={DAY}").to_pylist()
    assert sorted(r["status"] for r in results) == ["succeeded"] * 3
    assert {b.id for b in client.batches.list(limit=100)} == batches  # nothing sent again


def test_a_provider_that_cannot_serve_the_use_case_still_lets_its_batches_be_harvested(pipeline_env, instance,
                                                                                       monkeypatch):
    for name in (*AZURE_VARIABLES, "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    uc = tickets_use_case(pipeline_env)  # names no model for anthropic
    sent_on_openai = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    assert submit(sent_on_openai, instance, submit_job(uc).name, DAY).success

    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", "anthropic")
    now_on_anthropic = definitions_for([uc], batch_api=BatchAPIResource())
    run_until_idle(now_on_anthropic, instance)  # the results run harvests from OpenAI, green
    harvested = latest_state(instance, uc, DAY)
    assert harvested is not None and harvested.results_written and not harvested.unharvested
    assert not submit(now_on_anthropic, instance, submit_job(uc).name, DAY).success  # sending is refused there
