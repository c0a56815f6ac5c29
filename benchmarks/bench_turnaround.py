"""Click to Parquet for one small partition, beside one no-op asset run, on one `dagster dev`.

`dagster dev` (webserver and daemon, tests/dagster_dev.py) serves tests/ui_location.py: the
`notes` use case (3 rows a day) on the embedded local Batch API at its default pace, and `noop`,
an asset that does nothing. Each is launched through the GraphQL API the UI uses, and timed from
the launch until, for `noop`, its run has succeeded and, for a partition, its results
materialization (the Parquet written) is recorded: through the submit job (requests and batches;
the batch monitor then asks for the results run) and through "Materialize all" on the group (the
results step harvests in the same run when the batches are done by then, else the monitor does).
Each repetition takes turns, the no-op first; the median of the repetitions is reported.
Run alone: ``.venv/bin/python -m benchmarks.bench_turnaround``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from tests.dagster_dev import DagsterDev, running
from tests.ui_location import DAYS, NOOP

PACE_SECONDS = 0.3  # the local Batch API's default
REPEAT = 3
STAGES = ("requests", "batches", "results")
# (label, tests.ui_location.build options): the defaults, then one lever changed at a time.
SETUPS = [
    ("defaults: one process per run, results step waits up to 5 s, monitor every 30 s",
     {"monitor_interval_seconds": 30}),
    ("monitor every 5 s", {"monitor_interval_seconds": 5}),
    ("monitor every 5 s, results step never waits", {"monitor_interval_seconds": 5, "harvest_wait_seconds": 0}),
]


def results_written(dev: DagsterDev, day: str) -> bool:
    """A results materialization of `day` that wrote Parquet (not one that recorded a wait)."""
    return any("parquet" in m["labels"] for m in dev.materializations(["notes", "results"], day))


def _noop(dev: DagsterDev) -> float:
    start = time.monotonic()
    run = dev.finished(dev.materialize([[NOOP]]))
    assert run["status"] == "SUCCESS", dev.failure(run["runId"])
    return time.monotonic() - start


def _to_parquet(dev: DagsterDev, day: str, job: str | None) -> float:
    """From the launch (the submit job, or Materialize all when `job` is None) to the Parquet."""
    start = time.monotonic()
    if job is None:
        dev.materialize([["notes", stage] for stage in STAGES], day)
    else:
        dev.materialize([["notes", "requests"], ["notes", "batches"]], day, job=job)
    dev.wait_for(f"results of {day}", lambda: results_written(dev, day))
    return time.monotonic() - start


def measure_setup(options: dict, repeat: int, root: Path) -> dict[str, float]:
    """Median seconds of the no-op run, the submit job to Parquet and Materialize all to Parquet."""
    days = iter(DAYS)
    timings: dict[str, list[float]] = {"noop": [], "submit": [], "materialize_all": []}
    with running(root, pace_seconds=PACE_SECONDS, **options) as dev:
        _noop(dev)  # the first run of a fresh instance also creates its storage: not counted
        for _ in range(repeat):
            timings["noop"].append(_noop(dev))
            timings["submit"].append(_to_parquet(dev, next(days), "notes_submit"))
            timings["materialize_all"].append(_to_parquet(dev, next(days), None))
    return {name: statistics.median(values) for name, values in timings.items()}


def measure(workdir: Path, repeat: int = REPEAT) -> list[dict]:
    rows = []
    for i, (label, options) in enumerate(SETUPS):
        print(f"turnaround: {label}", flush=True)
        rows.append({"setup": label, **measure_setup(options, repeat, workdir / f"setup-{i}")})
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="batch-pipeline-turnaround-") as tmp:
        print(json.dumps(measure(Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
