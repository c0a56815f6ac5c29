"""Use cases over any table and any partitioning, run end to end through the real Definitions on
the local Batch API: an upstream Dagster asset (pandas, Polars, Arrow; identity and time-window
mappings), a Hive-partitioned Parquet dataset with weekly partitions and a composite key, an
unpartitioned DuckDB query, multi-partitions; and two sets of use cases in one project.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batch_pipeline import (
    AssetSource,
    BatchSpec,
    CsvSource,
    FileSource,
    ResourceKeys,
    SqlSource,
    UseCase,
    WarehouseResource,
    definitions_for,
)
from batch_pipeline.dagster.jobs import asset_key, results_job, submit_job
from batch_pipeline.testing import failure_message
from tests.helpers import run_until_idle, submit

DAY = "2026-11-20"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-16", timezone="UTC")
WEEKLY = dg.WeeklyPartitionsDefinition(start_date="2026-11-16", day_offset=1, timezone="UTC")  # Mondays
SPEC = BatchSpec(name="tickets", model="gpt-4o-mini", prompt="Triage ticket {ticket}: {text}")


def tickets(day: str, n: int = 3) -> list[dict]:
    return [{"ticket": f"{day}-{i}", "day": day, "text": f"printer {i} is on fire"} for i in range(n)]


def results_of(pipeline_env: Path, uc: UseCase, partition: str) -> pa.Table:
    return pq.read_table(pipeline_env / "warehouse" / uc.name / "results" / f"partition={partition}")


def upstream_asset(flavour: str, partitions_def: dg.PartitionsDefinition = DAILY) -> dg.AssetsDefinition:
    """A team's ingestion asset: a day's tickets as a pandas or Polars DataFrame or Arrow table."""

    @dg.asset(key=["support", "raw_tickets"], partitions_def=partitions_def)
    def raw_tickets(context):
        rows = tickets(context.partition_key)
        if flavour == "pandas":
            import pandas as pd

            return pd.DataFrame(rows)
        if flavour == "polars":
            import polars as pl

            return pl.DataFrame(rows)
        return pa.Table.from_pylist(rows)

    return raw_tickets


@pytest.mark.parametrize("flavour", ["pandas", "polars", "arrow"])
def test_an_upstream_asset_feeds_the_requests_through_its_io_manager(pipeline_env, instance, flavour):
    raw = upstream_asset(flavour)
    uc = UseCase(SPEC, AssetSource(["support", "raw_tickets"], key="ticket"), DAILY)
    defs = dg.Definitions.merge(dg.Definitions(assets=[raw]), definitions_for([uc]))
    graph = defs.resolve_asset_graph()
    assert graph.get(asset_key(uc, "requests")).parent_keys == {raw.key}  # the lineage shows the team's asset
    assert dg.materialize([raw], instance=instance, partition_key=DAY).success
    result = submit(defs, instance, submit_job(uc).name, DAY)
    assert result.success, failure_message(result)
    if flavour != "pandas":
        return  # the harvest does not depend on how the rows were loaded
    run_until_idle(defs, instance)
    results = results_of(pipeline_env, uc, DAY)
    assert sorted(results["ticket"].to_pylist()) == [r["ticket"] for r in tickets(DAY)]
    assert set(results["status"].to_pylist()) == {"succeeded"}


def test_a_weekly_use_case_over_a_daily_asset_reads_the_weeks_days(pipeline_env, instance):
    raw = upstream_asset("arrow")
    uc = UseCase(SPEC, AssetSource(["support", "raw_tickets"], key="ticket"), WEEKLY)
    defs = dg.Definitions.merge(dg.Definitions(assets=[raw]), definitions_for([uc]))
    days = [f"2026-11-{d}" for d in range(16, 23)]
    for day in days:
        assert dg.materialize([raw], instance=instance, partition_key=day).success
    assert submit(defs, instance, submit_job(uc).name, "2026-11-16").success
    index = pq.read_table(pipeline_env / "warehouse" / "tickets" / "requests" / "partition=2026-11-16" / "rows.parquet")
    assert sorted(index["ticket"].to_pylist()) == sorted(r["ticket"] for d in days for r in tickets(d))


def test_an_explicit_partition_mapping_reads_the_days_it_maps(pipeline_env, instance):
    """`partition_mapping=` (here: the day before and the day) decides which upstream partitions
    a partition loads."""
    raw = upstream_asset("arrow")
    mapping = dg.TimeWindowPartitionMapping(start_offset=-1)
    uc = UseCase(SPEC, AssetSource(["support", "raw_tickets"], key="ticket", partition_mapping=mapping), DAILY)
    defs = dg.Definitions.merge(dg.Definitions(assets=[raw]), definitions_for([uc]))
    for day in ("2026-11-19", DAY):
        assert dg.materialize([raw], instance=instance, partition_key=day).success
    result = submit(defs, instance, submit_job(uc).name, DAY)
    assert result.success, failure_message(result)
    index = pq.read_table(pipeline_env / "warehouse" / "tickets" / "requests" / f"partition={DAY}" / "rows.parquet")
    assert sorted(index["ticket"].to_pylist()) == sorted(r["ticket"] for d in ("2026-11-19", DAY) for r in tickets(d))


def test_weekly_parquet_with_a_composite_key_end_to_end(pipeline_env, instance):
    root = pipeline_env / "tickets"
    when = [dt.datetime(2026, 11, 16, 8, tzinfo=dt.UTC) + dt.timedelta(hours=13 * i) for i in range(20)]
    table = pa.table({"site": ["lyon", "oslo"] * 10, "ticket": [str(i // 2) for i in range(20)],
                      "opened_at": pa.array(when, pa.timestamp("ms", "UTC")), "text": [f"t{i}" for i in range(20)],
                      "region": ["eu"] * 20})
    ds.write_dataset(table, root, format="parquet", partitioning=["region"], partitioning_flavor="hive")
    uc = UseCase(SPEC, FileSource(str(root), key=["site", "ticket"], partition_column="opened_at"), WEEKLY)
    defs = definitions_for([uc])
    assert [s.name for s in defs.schedules or ()] == ["tickets_submit_schedule"]
    assert submit(defs, instance, submit_job(uc).name, "2026-11-16").success
    run_until_idle(defs, instance)
    results = results_of(pipeline_env, uc, "2026-11-16")
    in_week = [r for r in table.to_pylist() if r["opened_at"] < dt.datetime(2026, 11, 23, tzinfo=dt.UTC)]
    assert sorted(zip(results["site"].to_pylist(), results["ticket"].to_pylist(), strict=True)) == sorted(
        (r["site"], r["ticket"]) for r in in_week)
    assert results.num_rows == len(in_week) < 20 and set(results["status"].to_pylist()) == {"succeeded"}


def test_an_unpartitioned_duckdb_query_end_to_end(pipeline_env, instance):
    database = pipeline_env / "support.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE tickets AS SELECT 'T' || i AS ticket, 'text ' || i AS text, i AS n "
                    "FROM range(7) t(i)")
    uc = UseCase(SPEC, SqlSource("SELECT ticket, text FROM tickets WHERE n < 5", key="ticket", duckdb=database))
    defs = definitions_for([uc])
    assert not defs.schedules  # no partitions, no schedule
    assert submit(defs, instance, submit_job(uc).name, None).success
    run_until_idle(defs, instance)
    results = results_of(pipeline_env, uc, "all")
    assert sorted(results["ticket"].to_pylist()) == [f"T{i}" for i in range(5)]
    assert set(results["status"].to_pylist()) == {"succeeded"}


def test_multi_partitions_end_to_end(pipeline_env, instance):
    csv = pipeline_env / "tickets.csv"
    csv.write_text("ticket,day,site,text\n" + "".join(
        f"{day}-{site}-{i},{day},{site},text {i}\n" for day in (DAY, "2026-11-21") for site in ("lyon", "oslo")
        for i in range(2)))
    multi = dg.MultiPartitionsDefinition({"day": DAILY, "site": dg.StaticPartitionsDefinition(["lyon", "oslo"])})
    uc = UseCase(SPEC, CsvSource(csv, key="ticket", partition_column={"day": "day", "site": "site"}), multi)
    defs = definitions_for([uc])
    assert not defs.schedules
    key = dg.MultiPartitionKey({"day": DAY, "site": "oslo"})
    assert submit(defs, instance, submit_job(uc).name, key).success
    run_until_idle(defs, instance)
    results = results_of(pipeline_env, uc, key)
    assert sorted(results["ticket"].to_pylist()) == [f"{DAY}-oslo-0", f"{DAY}-oslo-1"]
    for name in ("every_row_once", "invalid_output_rate", "refusal_rate"):  # recorded under the two-part key
        [record] = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(asset_key(uc, "results"), name), limit=5)
        assert (record.partition, record.status.value) == (key, "SUCCEEDED")


def test_two_sets_of_use_cases_and_the_teams_own_warehouse_never_clash(pipeline_env, instance):
    csv = pipeline_env / "tickets.csv"
    csv.write_text("ticket,day,text\n" + "".join(f"{r['ticket']},{r['day']},{r['text']}\n" for r in tickets(DAY)))
    uc = UseCase(SPEC, CsvSource(csv, key="ticket", partition_column="day"), DAILY)
    keys = ResourceKeys(warehouse="llm_warehouse", batch_api="llm_batch_api")
    team_a = definitions_for([uc], key_prefix="team_a", resource_keys=keys)
    team_b = definitions_for([uc], key_prefix="team_b", resource_keys=ResourceKeys("b_warehouse", "b_batch_api"))

    @dg.asset
    def own() -> None:
        """The team's asset, with its own `warehouse` resource of another kind."""

    theirs = dg.Definitions(assets=[own], resources={"warehouse": dg.ResourceDefinition.none_resource()})
    defs = dg.Definitions.merge(theirs, team_a, team_b)
    dg.Definitions.validate_loadable(defs)
    assert {s.name for s in defs.sensors or ()} == {"team_a_batch_monitor", "team_b_batch_monitor"}
    assert dg.AssetKey(["team_a", "tickets", "results"]) in defs.resolve_asset_graph().get_all_asset_keys()
    result = submit(defs, instance, "team_a__tickets_submit", DAY)
    assert result.success, failure_message(result)
    assert (pipeline_env / "warehouse" / "team_a__tickets" / "requests" / f"partition={DAY}").is_dir()
    assert isinstance(defs.resources["llm_warehouse"], WarehouseResource)


def test_a_partition_with_no_rows_is_an_empty_result_with_a_note(pipeline_env, instance):
    """Nothing is sent; the batch monitor asks for the partition's results run at once (the submit
    run records only its own assets), which lands it visibly empty: the results asset
    materialized for the partition with 0 rows, its checks passed."""
    path = pipeline_env / "tickets.parquet"
    opened = pa.array([dt.datetime(2026, 11, 17, tzinfo=dt.UTC)], pa.timestamp("us", "UTC"))
    pq.write_table(pa.table({"ticket": ["a"], "text": ["x"], "opened_at": opened}), path)
    uc = UseCase(SPEC, FileSource(str(path), key="ticket", partition_column="opened_at"), WEEKLY)
    defs = definitions_for([uc])
    submitted = submit(defs, instance, submit_job(uc).name, "2026-11-23")
    assert submitted.success
    note = "partition 2026-11-23 has no source rows"
    [record] = instance.fetch_materializations(asset_key(uc, "requests"), limit=1).records
    assert record.asset_materialization.metadata["note"].value == note
    [asked] = run_until_idle(defs, instance)  # one results run, and none after it
    assert asked.job_name == results_job(uc).name and asked.partition_key == "2026-11-23"
    [record] = instance.fetch_materializations(asset_key(uc, "results"), limit=1).records
    results = record.asset_materialization
    assert results.partition == "2026-11-23" and record.run_id != submitted.run_id
    assert results.metadata["dagster/row_count"].value == 0 and results.metadata["note"].value == note
    evaluations = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(asset_key(uc, "results"), "every_row_once"), limit=1)
    assert evaluations and evaluations[0].status.value == "SUCCEEDED"
    results = results_of(pipeline_env, uc, "2026-11-23")
    assert results.num_rows == 0 and {"ticket", "custom_id", "status", "output", "error_code", "error_message",
                                      "attempts", "model", "input_tokens", "output_tokens", "cost_usd",
                                      "batch_id"} <= set(results.column_names)