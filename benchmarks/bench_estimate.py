"""Estimated against actual cost, partition after partition, on each provider.

Per provider (OpenAI, Anthropic, Gemini: the embedded local Batch API answering in each one's
protocol to its official SDK) and per sample use case (patient education, manuscript review),
through the real Definitions: partitions 2026-11-20 onwards are submitted and harvested one after
another. Each partition's requests asset estimates it before anything is sent (the first from the
spec's prior, each next one learned from the harvests before it); actual is the sum of its
results' `cost_usd`. Beside each estimate, the baseline from the same index: the spec's prior
(`max_tokens` or `expected_output_tokens` per request, the input tokens as counted), which is what
the estimate is before it learns.
Run alone: ``.venv/bin/python -m benchmarks.bench_estimate``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc

from assets import manuscript_review, patient_education
from batch_pipeline import UseCase, definitions_for
from batch_pipeline.dagster.jobs import asset_key, submit_job
from batch_pipeline.testing import failure_message, results, run_until_idle, submit
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse

PARTITIONS = ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23")
FIRST, SECOND = PARTITIONS[:2]
PROVIDERS = ("openai", "anthropic", "gemini")
USE_CASES = (patient_education.use_case, manuscript_review.use_case)
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GEMINI_API_KEY",
         "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")


@contextmanager
def _environment(workdir: Path, provider: str) -> Iterator[None]:
    """A warehouse and local Batch API of the run's own, the provider named and no key (so the
    embedded local Batch API speaks its protocol); the environment restored after."""
    names = ("BATCH_PIPELINE_WAREHOUSE", "BATCH_PIPELINE_LOCAL_API_DIR", "BATCH_PIPELINE_PROVIDER", *_KEYS)
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ["BATCH_PIPELINE_WAREHOUSE"] = str(workdir / "warehouse")
    os.environ["BATCH_PIPELINE_LOCAL_API_DIR"] = str(workdir / "local_api")
    os.environ["BATCH_PIPELINE_PROVIDER"] = provider
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _submit_and_harvest(defs: dg.Definitions, instance: dg.DagsterInstance, uc: UseCase, partition: str) -> None:
    result = submit(defs, instance, submit_job(uc).name, partition, run_config=_QUIET)
    if not result.success:
        raise RuntimeError(f"{uc.name} {partition}: {failure_message(result)}")
    run_until_idle(defs, instance, run_config=_QUIET)


def _partition_row(defs: dg.Definitions, instance: dg.DagsterInstance, uc: UseCase, provider: str,
                   wh: Warehouse, partition: str) -> dict:
    """One harvested partition: its requests asset's estimate, the prior from its index, its actual cost."""
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key(uc, "requests"), asset_partitions=[partition]), limit=1).records
    assert record.asset_materialization is not None
    meta = record.asset_materialization.metadata
    index = wh.read_parquet(wh.partition_dir(uc.name, layout.REQUESTS, partition) / layout.INDEX_FILE)
    prior = uc.on(provider).estimate(index)
    return {
        "partition": partition, "requests": meta["requests"].value,
        "prior": prior.cost_usd, "prior_basis": prior.basis.describe(),
        "estimate": meta["estimated_cost_usd"].value, "basis": meta["estimate_basis"].value,
        "actual": pc.sum(results(defs, uc, partition)["cost_usd"]).as_py(),
    }


def measure_one(provider: str, uc: UseCase, workdir: Path, partitions: Sequence[str] = PARTITIONS) -> list[dict]:
    """Every partition of `uc` on `provider`, in order: estimate, prior and actual of each."""
    defs = definitions_for([uc])
    rows = []
    with _environment(workdir, provider), dg.instance_for_test() as instance:
        wh = Warehouse(workdir / "warehouse")
        for partition in partitions:
            _submit_and_harvest(defs, instance, uc, partition)
            rows.append({"provider": provider, "use_case": uc.name, "model": uc.spec.model_for(provider),
                         **_partition_row(defs, instance, uc, provider, wh, partition)})
    return rows


def measure(workdir: Path, providers: Sequence[str] = PROVIDERS, partitions: Sequence[str] = PARTITIONS) -> list[dict]:
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensor's progress lines, as in the demo
    return [row for provider in providers for uc in USE_CASES
            for row in measure_one(provider, uc, workdir / provider / uc.name, partitions)]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
