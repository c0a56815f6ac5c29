"""Operated as a user operates it: real `dagster dev` (webserver and daemon), driven through the
GraphQL API the UI uses (tests/dagster_dev.py), on a local Batch API slowed so that batches sit in
validating and in_progress while the runs that submitted them end.

One `dagster dev` serves every flow in turn (start-up is most of the cost): Materialize all on a
group, a partition-range backfill, reruns of a harvested partition, a budget refusal, an empty
partition; then what the UI shows of them: each check's per-partition status, no partition stale
after its green run, the estimate a rerun records. Every wait polls for the set of states that
satisfies it, with a timeout of minutes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batch_pipeline.dagster.resources import LocalBatchAPIResource, LocalBatchAPISettings
from tests.dagster_dev import DagsterDev, running
from tests.ui_location import DAYS, EMPTY_DAY, ROWS_PER_DAY

# Per stage: a batch is terminal ~18 s after it is created, long after a results step in the run
# that created it stops waiting for it (`harvest_wait_seconds`, 5 s).
PACE_SECONDS = 6.0
STAGES = ("requests", "batches", "results")
RESULT_CHECKS = ("every_row_once", "invalid_output_rate", "refusal_rate")

pytestmark = pytest.mark.slow


def group(use_case: str) -> list[list[str]]:
    """What "Materialize all" selects in the use case's group (the source is not materializable)."""
    return [[use_case, stage] for stage in STAGES]


def sensor_harvested(dev: DagsterDev, day: str) -> dict | None:
    """The successful results run the batch monitor asked for, for `day`, if any."""
    runs = dev.runs(pipelineName="notes_results", tags=[{"key": "dagster/partition", "value": day}])
    return next((r for r in runs if r["status"] == "SUCCESS" and r["tags"].get("dagster/sensor_name")), None)


def checks_passed(dev: DagsterDev, days: list[str]) -> bool:
    """Every results check has a successful evaluation for each of `days`."""
    for name in RESULT_CHECKS:
        passed = {e["partition"] for e in dev.check_executions(["notes", "results"], name)
                  if e["status"] == "SUCCEEDED"}
        if not set(days) <= passed:
            return False
    return True


def parquet_rows(root: Path, day: str) -> list[dict]:
    folder = root / "warehouse" / "notes" / "results" / f"partition={day}"
    return [row for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def provider_batches(root: Path) -> list:
    """The batches the local Batch API holds (a list call also advances them)."""
    local = LocalBatchAPIResource(data_dir=str(root / "local_api"),
                                  settings=LocalBatchAPISettings(pace_seconds=PACE_SECONDS))
    return list(local.client().batches.list(limit=100))


def materialize_all_waits_green(dev: DagsterDev, day: str) -> None:
    """(a) Materialize all while the batch validates: the run ends green, the monitor harvests."""
    run = dev.finished(dev.materialize(group("notes"), day))
    assert run["status"] == "SUCCESS", dev.failure(run["runId"])
    [recorded] = [m for m in dev.materializations(["notes", "results"], day) if m["runId"] == run["runId"]]
    assert "waiting" in recorded["labels"] and "parquet" not in recorded["labels"], recorded
    dev.wait_for(f"the monitor's results run for {day}", lambda: sensor_harvested(dev, day))


def backfill_lands(dev: DagsterDev, days: list[str]) -> None:
    """(b) A backfill of a partition range: one run submits them all, the monitor harvests each."""
    dev.backfill(group("notes"), days)
    for day in days:
        dev.wait_for(f"the monitor's results run for {day}", lambda day=day: sensor_harvested(dev, day))


def rerun_pays_nothing(dev: DagsterDev, day: str) -> None:
    """(c) Materialize all again on a harvested partition: green, no new batch, nothing stale, and
    the results record keeps the harvest's usage, naming its run; twice, the learned basis holds."""
    harvest_run = sensor_harvested(dev, day)["runId"]
    before = len(provider_batches(dev.root))
    bases = []
    for _ in range(2):
        run = dev.finished(dev.materialize(group("notes"), day))
        assert run["status"] == "SUCCESS", dev.failure(run["runId"])
        assert len(provider_batches(dev.root)) == before
        assert_fresh(dev, day)
        [requests] = [r for r in dev.records(["notes", "requests"], day) if r["runId"] == run["runId"]]
        [results] = [r for r in dev.records(["notes", "results"], day) if r["runId"] == run["runId"]]
        usage = {k: v for k, v in results["metadata"].items() if k.startswith("usage/")}
        assert usage["usage/harvest_run_id"] == harvest_run and usage["usage/answered_requests"] == ROWS_PER_DAY, usage
        assert usage["usage/output_tokens"] > 0, usage
        assert "learned from" in requests["metadata"]["estimate_basis"], requests["metadata"]
        bases.append(requests["metadata"]["estimate_basis"])
    assert bases[0] == bases[1], bases  # the re-run replaced no partition's record with zeros


def empty_partition_fresh(dev: DagsterDev, day: str) -> None:
    """(e) Materialize all on a partition with no rows: green, results written in that run, fresh."""
    run = dev.finished(dev.materialize(group("notes"), day))
    assert run["status"] == "SUCCESS", dev.failure(run["runId"])
    assert [r for r in dev.records(["notes", "results"], day) if r["runId"] == run["runId"]]
    assert_fresh(dev, day)


def assert_fresh(dev: DagsterDev, day: str) -> None:
    """No stage of the partition is stale ("Unsynced") after the run that materialized it."""
    stale = dev.stale(group("notes"), day)
    assert all(status != "STALE" for status, _ in stale.values()), stale


def check_statuses(dev: DagsterDev) -> dict[str, dict[str, str]]:
    """Each results check's status per partition, from its `partitionStatuses` ranges."""
    statuses: dict[str, dict[str, str]] = {}
    for name, check in dev.check_partitions(["notes", "results"]).items():
        days = statuses.setdefault(name, {})
        for r in check["ranges"]:
            start, end = dt.date.fromisoformat(r["startKey"]), dt.date.fromisoformat(r["endKey"])
            for offset in range((end - start).days + 1):
                days[(start + dt.timedelta(days=offset)).isoformat()] = r["status"]
    return statuses


def refusal_is_not_retried(dev: DagsterDev, day: str) -> None:
    """(d) Over budget: a red run saying why, nothing uploaded, and the daemon does not retry it."""
    run = dev.finished(dev.materialize(group("pricey"), day))
    assert run["status"] == "FAILURE"
    assert "over the spec's max_cost_usd" in dev.failure(run["runId"])
    retry = dev.wait_for("the daemon's retry decision", lambda: dev.runs(runIds=[run["runId"]])[0]["tags"].get(
        "dagster/will_retry"))
    assert retry == "false"
    assert not [b for b in provider_batches(dev.root) if b.metadata["use_case"] == "pricey"]


@pytest.mark.timeout(900)  # about 3 minutes here; each wait inside has a timeout of its own
def test_operating_through_the_ui(tmp_path: Path) -> None:
    first, backfilled = DAYS[0], list(DAYS[1:3])
    with running(tmp_path, pace_seconds=PACE_SECONDS) as dev:
        materialize_all_waits_green(dev, first)
        backfill_lands(dev, backfilled)
        rerun_pays_nothing(dev, first)
        refusal_is_not_retried(dev, first)
        empty_partition_fresh(dev, EMPTY_DAY)
        dev.wait_for("every check per partition", lambda: checks_passed(dev, [first, *backfilled, EMPTY_DAY]))
        for day in backfilled:
            assert_fresh(dev, day)
        statuses = check_statuses(dev)
        blocking = {name: check["blocking"] for name, check in dev.check_partitions(["notes", "results"]).items()}
        runs = dev.runs()
        stats = dev.partition_stats([["notes", "results"]])["notes/results"]
        executions = [e for name in RESULT_CHECKS for e in dev.check_executions(["notes", "results"], name)]

    failed = [(r["jobName"], r["tags"].get("dagster/partition")) for r in runs if r["status"] != "SUCCESS"]
    assert failed == [("__ASSET_JOB", first)], failed  # the refusal, and nothing else
    assert not [r for r in runs if "dagster/parent_run_id" in r["tags"]], "a run was retried"
    assert stats["numMaterialized"] == 4 and stats["numFailed"] == 0, stats
    assert all(e["partition"] in (*DAYS, EMPTY_DAY) for e in executions), executions  # none without its partition
    # the check's Partitions tab: each evaluated partition passed, whichever run evaluated it
    for name in RESULT_CHECKS:
        assert {day: statuses[name].get(day) for day in [first, *backfilled, EMPTY_DAY]} == dict.fromkeys(
            [first, *backfilled, EMPTY_DAY], "SUCCEEDED"), (name, statuses[name])
    assert blocking == {"every_row_once": True, "invalid_output_rate": False, "refusal_rate": False}, blocking
    for day in [first, *backfilled]:
        rows = parquet_rows(tmp_path, day)
        assert len(rows) == len({r["custom_id"] for r in rows}) == ROWS_PER_DAY
        assert {r["status"] for r in rows} == {"succeeded"} and all(r["output"] for r in rows)
