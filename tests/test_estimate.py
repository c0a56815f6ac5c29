"""An estimate to trust: after one harvested partition, the next partition's estimate is within
30% of what it then costs; before any, it is the spec's stated prior. Real Definitions, the
sample use cases, the local Batch API, on OpenAI, Anthropic and Gemini (each provider's offline
token count is its own approximation, which the learned correction brings to the provider's).
"""

from __future__ import annotations

import dataclasses

import dagster as dg
import pyarrow.compute as pc
import pytest

from assets import manuscript_review, patient_education
from batch_pipeline import UseCase, definitions_for
from batch_pipeline.dagster.jobs import asset_key, submit_job
from batch_pipeline.dagster.usage_history import usage_history
from batch_pipeline.testing import failure_message, results
from tests.helpers import run_until_idle, submit

FIRST, SECOND = "2026-11-20", "2026-11-21"


def requests_metadata(instance: dg.DagsterInstance, uc: UseCase, partition: str) -> dict:
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key(uc, "requests"), asset_partitions=[partition]), limit=1).records
    assert record.asset_materialization is not None
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def submit_and_harvest(defs: dg.Definitions, instance: dg.DagsterInstance, uc: UseCase, partition: str) -> float:
    """Submit and harvest one partition; its actual cost, the results' cost_usd summed."""
    result = submit(defs, instance, submit_job(uc).name, partition)
    assert result.success, failure_message(result)
    run_until_idle(defs, instance)
    return pc.sum(results(defs, uc, partition)["cost_usd"]).as_py()


KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")
CASES = [("openai", patient_education.use_case), ("openai", manuscript_review.use_case),
         ("anthropic", patient_education.use_case), ("gemini", patient_education.use_case)]


@pytest.mark.parametrize(("provider", "uc"), CASES, ids=[f"{p}-{uc.name}" for p, uc in CASES])
def test_the_next_partition_is_estimated_from_the_last_harvest(pipeline_env, instance, monkeypatch, provider, uc):
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCH_PIPELINE_PROVIDER", provider)  # no key: the local API speaks its protocol
    defs = definitions_for([uc])
    submit_and_harvest(defs, instance, uc, FIRST)
    first = requests_metadata(instance, uc, FIRST)
    on = uc.on(provider)  # the use case with its model there: what is priced and learned
    tokens, source = on.spec.output_tokens_prior()
    assert first["estimate_basis"].startswith(f"output tokens: {tokens}/request, prior: {source}")

    actual = submit_and_harvest(defs, instance, uc, SECOND)
    second = requests_metadata(instance, uc, SECOND)
    assert "learned from 1 partition (" in second["estimate_basis"]
    assert abs(second["estimated_cost_usd"] - actual) <= 0.3 * actual, (second, actual)

    [latest, earlier] = usage_history(instance, on).records  # newest first, one record per partition
    assert latest.requests == second["requests"] and earlier.requests == first["requests"]
    other_model = dataclasses.replace(on, spec=dataclasses.replace(on.spec, model="gpt-4.1-mini"))
    assert usage_history(instance, other_model).records == ()  # learned per use case and model


def test_a_changed_prompt_does_not_learn_from_the_old_one(pipeline_env, instance):
    uc = patient_education.use_case
    submit_and_harvest(definitions_for([uc]), instance, uc, FIRST)
    reworded = dataclasses.replace(uc, spec=dataclasses.replace(uc.spec, prompt=uc.spec.prompt + " Answer in Spanish."))
    history = usage_history(instance, reworded)
    assert history.records == () and history.spec_changed
    assert submit(definitions_for([reworded]), instance, submit_job(reworded).name, SECOND).success
    basis = requests_metadata(instance, reworded, SECOND)["estimate_basis"]
    assert "prior: max_tokens 600; the spec's prompts or parameters changed since the last harvest" in basis
    assert len(usage_history(instance, uc).records) == 1  # the original spec still learns from its harvest


def test_a_budget_set_from_experience_lets_work_that_fits_through(pipeline_env, instance):
    """A cap of twice the last partition's bill refuses the first partition (estimated at the
    prior max_tokens) and admits the next (estimated from the first's harvest)."""
    uc = patient_education.use_case
    first_cost = submit_and_harvest(definitions_for([uc]), instance, uc, FIRST)
    capped = dataclasses.replace(uc, spec=dataclasses.replace(uc.spec, max_cost_usd=2 * first_cost))
    defs = definitions_for([capped])
    with dg.instance_for_test() as fresh:  # no history: the prior max_tokens is over the cap
        refused = submit(defs, fresh, submit_job(capped).name, "2026-11-22")
        assert not refused.success and "prior: max_tokens 600" in failure_message(refused)
    admitted = submit(defs, instance, submit_job(capped).name, "2026-11-22")
    assert admitted.success, failure_message(admitted)


def test_harvests_recorded_before_fingerprints_still_count(instance):
    uc = patient_education.use_case
    legacy = {"usage/model": uc.spec.model, "usage/answered_requests": 10, "usage/output_tokens": 900,
              "usage/input_tokens": 1_000, "usage/counted_input_tokens": 1_000}  # no usage/spec_fingerprint
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key(uc, "results"), partition=FIRST, metadata=legacy))
    history = usage_history(instance, uc)
    assert [r.output_tokens for r in history.records] == [900] and not history.spec_changed
