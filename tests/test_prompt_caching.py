"""Cached input billed at the cached rate: a use case whose requests share a long system prompt
is harvested from the local Batch API, which reports the prefix as cached after the first request
(OpenAI's prompt caching), and each row's cost uses the cache-read rate for those tokens."""

from __future__ import annotations

import dagster as dg
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_pipeline import BatchSpec, CsvSource, UseCase, definitions_for
from batch_pipeline.cost import batch_price
from batch_pipeline.dagster.jobs import submit_job
from tests.helpers import run_until_idle, submit

DAY = "2026-11-20"
GUIDE = "You write patient leaflets: plain words, short sentences, no jargon, a friendly tone. " * 60


def test_harvested_cost_bills_cached_input_at_the_cached_rate(instance, pipeline_env):
    csv = pipeline_env / "drugs.csv"
    csv.write_text("drug,day\n" + "".join(f"drug{i},{DAY}\n" for i in range(4)))
    uc = UseCase(BatchSpec(name="leaflets", model="gpt-4.1-mini", prompt="A leaflet for {drug}.", system_prompt=GUIDE),
                 CsvSource(csv, key="drug", partition_column="day"),
                 dg.DailyPartitionsDefinition(start_date=DAY))
    defs = definitions_for([uc])
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)

    usage = {}  # custom_id -> the usage the provider reported, from the raw copies
    for path in (pipeline_env / "warehouse" / "leaflets" / "raw" / f"partition={DAY}").glob("*.output.jsonl"):
        for line in path.read_bytes().splitlines():
            answer = orjson.loads(line)
            usage[answer["custom_id"]] = answer["response"]["body"]["usage"]
    cached = {c: u["prompt_tokens_details"]["cached_tokens"] for c, u in usage.items()}
    assert sorted(cached.values())[0] == 0 and all(n >= 1024 for n in sorted(cached.values())[1:])

    price = batch_price("gpt-4.1-mini")  # its batch price has a cache-read rate
    assert price is not None and price.cached_input.base < price.input.base
    rows = pq.read_table(pipeline_env / "warehouse" / "leaflets" / "results" / f"partition={DAY}").to_pylist()
    for row in rows:
        tokens = usage[row["custom_id"]]
        expected = price.row_costs(*(pa.chunked_array([[n]]) for n in (
            tokens["prompt_tokens"], cached[row["custom_id"]], tokens["completion_tokens"])))[0].as_py()
        uncached = (row["input_tokens"] * price.input.base + row["output_tokens"] * price.output.base)
        assert row["cost_usd"] == pytest.approx(expected)
        assert (row["cost_usd"] < uncached * (1 - 1e-9)) == (cached[row["custom_id"]] > 0)
