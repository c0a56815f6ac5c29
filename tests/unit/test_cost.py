"""Batch prices (genai-prices' batch variant, cached input, long-context tiers), the estimate from
counts and sums per price band, and what it learns from earlier harvests."""

from __future__ import annotations

import dataclasses

import orjson
import pyarrow as pa
import pytest

from batch_pipeline.cost import (
    Band,
    Basis,
    BatchPrice,
    History,
    Rate,
    UsageRecord,
    bands,
    batch_price,
    estimate,
)
from batch_pipeline.harvest.lines import BatchOutcome, assemble, batch_lines
from batch_pipeline.provider.openai_results import parse_lines, parse_results
from batch_pipeline.spec import BatchSpec

M = 1_000_000
TIERED = BatchPrice(Rate(1 / M, ((100, 2 / M),)), Rate(0.1 / M, ((100, 0.2 / M),)), Rate(4 / M, ((100, 6 / M),)))


def test_batch_prices_come_from_genai_prices_batch_variant_or_half_the_synchronous_price():
    mini = batch_price("gpt-4o-mini")
    assert mini is not None
    assert (mini.input.base * M, mini.output.base * M) == pytest.approx((0.075, 0.3))
    assert mini.cached_input.base <= mini.input.base
    embedding = batch_price("text-embedding-3-small")  # no batch variant: half of $0.02
    assert embedding is not None and embedding.input.base * M == pytest.approx(0.01)
    assert batch_price("no-such-model-anywhere") is None


def test_long_context_tiers_apply_to_every_token_of_a_request_over_the_start():
    tiered = batch_price("gpt-5.4")
    assert tiered is not None and tiered.thresholds() == [272_000]
    assert tiered.input.at(272_000) * 2 == pytest.approx(tiered.input.at(272_001))
    assert tiered.output.at(272_001) > tiered.output.at(10)


def test_bands_count_and_sum_with_pyarrow():
    tokens = pa.chunked_array([[50, 100, 150, None], [300]], pa.int64())
    assert bands(tokens, []) == [Band(0, 4, 600)]
    assert bands(tokens, [100, 200]) == [Band(0, 2, 150), Band(100, 1, 150), Band(200, 1, 300)]
    assert bands(tokens, [100], scale=2.0) == [Band(0, 1, 100), Band(100, 3, 1100)]  # scaled, then banded


def test_the_estimate_prices_each_band_at_its_tier():
    basis = Basis(10.0, "prior: test")
    cost = estimate(TIERED, [Band(0, 2, 150), Band(100, 1, 150)], basis)
    assert (cost.requests, cost.input_tokens, cost.output_tokens) == (3, 300, 30)
    assert cost.cost_usd == pytest.approx((150 * 1 + 20 * 4 + 150 * 2 + 10 * 6) / M)


def test_the_actual_cost_counts_cached_input_and_tiers():
    def line(cid: str, prompt: int, cached: int | None, completion: int) -> dict:
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 **({"prompt_tokens_details": {"cached_tokens": cached}} if cached is not None else {})}
        return {"custom_id": cid, "error": None, "response": {"status_code": 200, "body": {
            "model": "m", "choices": [{"message": {"content": "hi"}}], "usage": usage}}}

    data = b"".join(orjson.dumps(x) + b"\n" for x in (line("a", 80, 40, 10), line("b", 200, None, 10)))
    assert parse_lines(data)["cached_input_tokens"].to_pylist() == [40, None]
    odd = data + b'{"custom_id": "c", "response": {"status_code": 200, "body": {"usage": 7}}}\n'
    assert parse_lines(odd)["cached_input_tokens"].to_pylist()[:2] == [40, None]  # the line-by-line path
    index = pa.table({"custom_id": ["a", "b"], "shard": pa.array([0, 0], pa.int32()), "status": ["pending"] * 2,
                      "error_code": pa.nulls(2, pa.string()), "error_message": pa.nulls(2, pa.string())})
    lines = batch_lines(BatchOutcome("batch_1", "completed"), 1, ["a", "b"], parse_results([data]))
    costs = assemble(index, [], lines, {"m": TIERED})["cost_usd"].to_pylist()
    assert costs == pytest.approx([(40 * 1 + 40 * 0.1 + 10 * 4) / M, (200 * 2 + 10 * 6) / M])


def test_the_basis_learns_a_weighted_mean_and_says_so():
    prior = Basis.learned((600, "max_tokens 600"), History())
    assert prior.output_tokens_per_request == 600 and prior.input_scale == 1.0
    assert prior.describe() == "output tokens: 600/request, prior: max_tokens 600; cached input: none assumed"
    changed = Basis.learned((600, "max_tokens 600"), History(spec_changed=True))
    assert changed.source == "prior: max_tokens 600; the spec's prompts or parameters changed since the last harvest"
    learned = Basis.learned((600, "max_tokens 600"), History((UsageRecord(10, 1_000, 1_100, 1_000),
                                                              UsageRecord(30, 6_000, 3_300, 3_000), UsageRecord())))
    assert learned.output_tokens_per_request == 175 and learned.input_scale == pytest.approx(1.1)
    assert learned.describe().startswith("output tokens: 175/request, learned from 2 partitions (40 requests); "
                                         "input tokens: 1.10 x the offline count")


@pytest.mark.parametrize("kwargs, prior", [
    ({"parameters": {"max_tokens": 600}}, (600, "max_tokens 600")),
    ({"parameters": {"max_tokens": 600}, "expected_output_tokens": 90}, (90, "expected_output_tokens 90")),
    ({}, (512, "no max_tokens set, 512 assumed")),
    ({"endpoint": "/v1/embeddings", "parameters": {"dimensions": 8}}, (0, "embeddings have no output tokens")),
])
def test_the_prior_names_where_it_comes_from(kwargs, prior):
    assert BatchSpec(name="s", model="m", prompt="{a}", **kwargs).output_tokens_prior() == prior


def test_the_fingerprint_changes_with_what_the_model_is_asked_only():
    spec = BatchSpec(name="s", model="m", prompt="Summarise {a}", parameters={"max_tokens": 600})
    same = dataclasses.replace(spec, description="reworded", max_cost_usd=5.0, model="m2")
    assert spec.fingerprint() == same.fingerprint()  # the model is keyed on its own
    for changed in ({"prompt": "Summarise {a} briefly"}, {"system_prompt": "Be terse."},
                    {"parameters": {"max_tokens": 200}}, {"endpoint": "/v1/responses"}):
        assert dataclasses.replace(spec, **changed).fingerprint() != spec.fingerprint(), changed
