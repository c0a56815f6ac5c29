"""Estimated against actual cost: harvest one partition of a sample use case, then estimate the next.

Per use case (patient education, manuscript review), through the real Definitions on the local
Batch API: partition 2026-11-20 is submitted and harvested; then 2026-11-21's requests asset
estimates it (learned from the first harvest) and it is submitted and harvested too. Beside
that estimate, the baseline from the same index: the spec's prior (`max_tokens` or
`expected_output_tokens` per request, the input tokens as counted), which is what the estimate
was before it learned. Actual: the sum of the second partition's `cost_usd` in its results.
Run alone: ``.venv/bin/python -m benchmarks.bench_estimate``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
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

FIRST, SECOND = "2026-11-20", "2026-11-21"
USE_CASES = (patient_education.use_case, manuscript_review.use_case)
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@contextmanager
def _environment(workdir: Path) -> Iterator[None]:
    """A warehouse and local Batch API of the run's own, and no key; the environment restored after."""
    names = ("BATCH_PIPELINE_WAREHOUSE", "BATCH_PIPELINE_LOCAL_API_DIR", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ["BATCH_PIPELINE_WAREHOUSE"] = str(workdir / "warehouse")
    os.environ["BATCH_PIPELINE_LOCAL_API_DIR"] = str(workdir / "local_api")
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


def measure_one(uc: UseCase, workdir: Path) -> dict:
    """The second partition's prior and learned estimates and its actual cost, in USD."""
    defs = definitions_for([uc])
    with _environment(workdir), dg.instance_for_test() as instance:
        _submit_and_harvest(defs, instance, uc, FIRST)
        _submit_and_harvest(defs, instance, uc, SECOND)
        [record] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key(uc, "requests"), asset_partitions=[SECOND]), limit=1).records
        assert record.asset_materialization is not None
        meta = record.asset_materialization.metadata
        wh = Warehouse(workdir / "warehouse")
        prior = uc.estimate(wh.read_parquet(wh.partition_dir(uc.name, layout.REQUESTS, SECOND) / layout.INDEX_FILE))
        return {
            "use_case": uc.name, "requests": meta["requests"].value,
            "prior": prior.cost_usd, "prior_basis": prior.basis.describe(),
            "learned": meta["estimated_cost_usd"].value, "learned_basis": meta["estimate_basis"].value,
            "actual": pc.sum(results(defs, uc, SECOND)["cost_usd"]).as_py(),
        }


def measure(workdir: Path) -> list[dict]:
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensor's progress lines, as in the demo
    return [measure_one(uc, workdir / uc.name) for uc in USE_CASES]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
