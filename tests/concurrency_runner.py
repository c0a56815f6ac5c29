"""One of two processes submitting the same work at the same moment, round after round.

Usage: python -m tests.concurrency_runner ROOT ROUNDS ME OTHER [PARTITIONS]
Each round submits use case `notes_r<round>` (its own table, so its own idempotency keys) for
PARTITIONS (`2026-11-20` or a range `2026-11-20...2026-11-21`), after a file barrier with the
OTHER process, so both submissions start together. The provider comes from the environment
(BATCH_PIPELINE_PROVIDER, its key and base URL: a served local Batch API with slow uploads); the
Dagster instance from DAGSTER_HOME, shared by both processes. Prints one JSON line per round.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dagster as dg

from batch_pipeline import BatchSpec, CsvSource, UseCase, WarehouseResource, definitions_for
from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.testing import failure_message

DAYS = ("2026-11-20", "2026-11-21")
MODELS = {"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the instance keeps every event


def use_case(root: Path, round_number: int) -> UseCase:
    """6 rows a day in 2 shards a day; the round number is in every row and its key, so idempotency
    keys and custom ids differ per round (a provider without metadata is counted by custom id)."""
    csv = root / f"notes_r{round_number}.csv"
    if not csv.exists():
        rows = "".join(f"r{round_number}n{d}{i},{day},round {round_number} note {i}\n"
                       for d, day in enumerate(DAYS) for i in range(6))
        csv.write_text("id,day,text\n" + rows)
    return UseCase(
        spec=BatchSpec(name=f"notes_r{round_number}", model="gpt-4o-mini", prompt="Summarise: {text}", models=MODELS,
                       max_requests_per_shard=3),
        source=CsvSource(path=csv, key="id", partition_column="day"),
        partitions_def=dg.DailyPartitionsDefinition(start_date=DAYS[0], end_date="2026-11-22"),
    )


def barrier(root: Path, round_number: int, me: str, other: str, timeout: float = 900) -> None:
    (root / f"ready-{round_number}-{me}").touch()
    deadline = time.monotonic() + timeout
    while not (root / f"ready-{round_number}-{other}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"round {round_number}: {other} never became ready")
        time.sleep(0.01)


def main(root: str, rounds: str, me: str, other: str, partitions: str = DAYS[0]) -> None:
    folder = Path(root)
    cases = [use_case(folder, r) for r in range(int(rounds))]
    defs = definitions_for(cases, warehouse=WarehouseResource(root=str(folder / "warehouse")))
    instance = dg.DagsterInstance.get()
    first, _, last = partitions.partition("...")
    for uc in cases:
        round_number = int(uc.name.removeprefix("notes_r"))
        barrier(folder, round_number, me, other)
        job = defs.resolve_job_def(submit_job(uc).name)
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last or first}
        result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET, raise_on_error=False)
        message = None if result.success else failure_message(result)
        print(json.dumps({"round": round_number, "success": result.success, "error": message}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
