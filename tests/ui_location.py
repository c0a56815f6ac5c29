"""A small code location for `dagster dev` in tests and the turnaround benchmark.

`build(folder, pace_seconds)` writes two tiny CSV sources into `folder` and returns their
`Definitions` through the public `definitions_for`: `notes` (daily partitions, a few rows a day
of `DAYS`, none on `EMPTY_DAY`),
`pricey` (the same rows, a budget no partition fits) and `noop`, an asset that does nothing, the
baseline a run's own cost is measured against. The local Batch API is slowed to `pace_seconds`
per stage so a batch sits in validating and in_progress for a while.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from batch_pipeline import BatchAPIResource, BatchSpec, CsvSource, UseCase, definitions_for
from batch_pipeline.dagster.resources import LocalBatchAPIResource, LocalBatchAPISettings

DAYS = tuple(f"2026-11-{day}" for day in range(20, 30))
EMPTY_DAY = "2026-11-30"  # a partition with no source rows
ROWS_PER_DAY = 3
NOOP = "noop"


def _use_case(folder: Path, name: str, max_cost_usd: float | None) -> UseCase:
    csv = folder / f"{name}.csv"
    csv.write_text("id,day,text\n" + "".join(
        f"{day}-{i},{day},note {i} of {day}\n" for day in DAYS for i in range(ROWS_PER_DAY)))
    return UseCase(
        spec=BatchSpec(name=name, model="gpt-4o-mini", prompt="Summarise: {text}", max_cost_usd=max_cost_usd),
        source=CsvSource(path=csv, key="id", partition_column="day"),
        partitions_def=dg.DailyPartitionsDefinition(start_date=DAYS[0], end_date="2026-12-01"),
    )


@dg.asset(name=NOOP, group_name=NOOP, description="Does nothing: the cost of a run itself.")
def noop() -> None:
    """The baseline run: launched the same way, on the same instance, with no work in it."""


def use_cases(folder: Path) -> list[UseCase]:
    return [_use_case(folder, "notes", None), _use_case(folder, "pricey", 1e-9)]


def build(folder: Path, pace_seconds: float, monitor_interval_seconds: int = 1, in_process: bool = True,
          webhooks: bool = False, **batch_api: Any) -> dg.Definitions:
    """The location's `Definitions`; sources are (re)written into `folder`. `in_process=False`
    runs "Materialize all" with Dagster's default executor, a process per step; `webhooks` puts
    the monitor in webhook mode; `batch_api` sets `BatchAPIResource` fields (`harvest_wait_seconds`)."""
    folder.mkdir(parents=True, exist_ok=True)
    local = LocalBatchAPIResource(settings=LocalBatchAPISettings(pace_seconds=pace_seconds))
    return dg.Definitions.merge(
        definitions_for(use_cases(folder), batch_api=BatchAPIResource(local=local, **batch_api),
                        monitor_interval_seconds=monitor_interval_seconds, webhooks=webhooks),
        dg.Definitions(assets=[noop], executor=dg.in_process_executor if in_process else None),
    )
