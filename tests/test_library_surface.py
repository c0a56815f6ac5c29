"""The library as a platform team meets it: a failed run says the library's own message naming
the source by its kind, and a use case is passed to `batch_pipeline.testing` as declared, under
whatever key prefix and resource keys `definitions_for` was given."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
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
    as_defined,
    asset_key,
    definitions_for,
    submit_job,
)
from batch_pipeline.testing import failure_message, results, run_until_idle, submit

DAY = "2026-11-20"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01")


def _spec(name: str, prompt: str = "Summarize: {text}") -> BatchSpec:
    return BatchSpec(name=name, model="gpt-4o-mini", prompt=prompt, parameters={"max_tokens": 20})


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    table = pa.table({"order_id": [1, 2], "day": [DAY, DAY], "text": ["a", "b"]})
    (tmp_path / "orders.csv").write_text(f"order_id,day,text\n1,{DAY},a\n2,{DAY},b\n")
    pq.write_table(table, tmp_path / "orders.parquet")
    with duckdb.connect(str(tmp_path / "shop.duckdb")) as db:
        db.register("source_table", table)
        db.execute("create table orders as select * from source_table")
    return tmp_path


def _failures(tables: Path) -> dict[str, tuple[UseCase, str]]:
    """Use cases that fail, each with what its message must say."""
    t = tables
    return {
        "csv": (UseCase(spec=_spec("csv_missing"), source=CsvSource(t / "gone.csv", key="order_id",
                partition_column="day"), partitions_def=DAILY),
                f"SourceError: CSV file '{t / 'gone.csv'}' does not exist"),
        "parquet": (UseCase(spec=_spec("parquet_missing"), source=FileSource(str(t / "gone.parquet"), key="order_id",
                    partition_column="day"), partitions_def=DAILY),
                    f"SourceError: Parquet source '{t / 'gone.parquet'}'"),
        "jsonl": (UseCase(spec=_spec("jsonl_missing"), source=FileSource(str(t / "gone.jsonl"), key="order_id",
                  partition_column="day", format="jsonl"), partitions_def=DAILY), "SourceError: JSON Lines source '"),
        "sql": (UseCase(spec=_spec("sql_failing"), source=SqlSource("select * from nowhere", key="order_id",
                partition_column="day", duckdb=t / "shop.duckdb"), partitions_def=DAILY),
                "SourceError: SQL query 'select * from nowhere' on DuckDB"),
        # a misspelt template column and a misspelt partition column: the suggestion is the table's
        "template": (UseCase(spec=_spec("template_typo", "{txet}"), source=FileSource(str(t / "orders.parquet"),
                     key="order_id", partition_column="day"), partitions_def=DAILY),
                     "SpecError: spec 'template_typo': column 'txet' is not in Parquet source"),
        "partition": (UseCase(spec=_spec("partition_typo"), source=SqlSource("select * from orders", key="order_id",
                      partition_column="dya", duckdb=t / "shop.duckdb"), partitions_def=DAILY),
                      "(columns: order_id, day, text); did you mean 'day'?"),
    }


def test_a_failed_run_says_the_librarys_own_message_naming_the_source_kind(tables: Path, instance):
    failing = _failures(tables)
    defs = definitions_for([uc for uc, _ in failing.values()])
    for kind, (uc, expected) in failing.items():
        result = submit(defs, instance, uc, DAY)
        message = failure_message(result)
        assert not result.success and expected in message, (kind, message)
        assert "DagsterExecutionStepExecutionError" not in message, message


def test_an_upstream_assets_error_names_the_asset(instance):
    @dg.asset(partitions_def=DAILY)
    def raw_orders() -> str:
        return "not a table"

    uc = UseCase(spec=_spec("from_asset"), source=AssetSource(raw_orders.key, key="order_id"), partitions_def=DAILY)
    defs = dg.Definitions.merge(dg.Definitions(assets=[raw_orders]), definitions_for([uc]))
    assert dg.materialize([raw_orders], instance=instance, partition_key=DAY).success
    message = failure_message(submit(defs, instance, uc, DAY))
    assert message.startswith("SourceError: upstream asset raw_orders: its IO manager loaded a str"), message


def test_the_testing_helpers_take_the_use_case_as_declared(tables: Path, instance):
    declared = UseCase(spec=_spec("orders"), source=FileSource(str(tables / "orders.parquet"), key="order_id",
                       partition_column="day"), partitions_def=DAILY)
    defs = dg.Definitions.merge(
        dg.Definitions(),
        definitions_for([declared], key_prefix="llm", resource_keys=ResourceKeys(warehouse="llm_warehouse")),
    )
    defined = as_defined(defs, declared)
    assert asset_key(defined, "results") == dg.AssetKey(["llm", "orders", "results"])
    assert submit_job(defined).name == "llm__orders_submit" and defined.name == "llm__orders"
    assert defined.resource_keys.warehouse == "llm_warehouse" and as_defined(defs, defined) == defined

    submitted = submit(defs, instance, declared, DAY)
    assert submitted.success, failure_message(submitted)
    for request, result in run_until_idle(defs, instance):
        assert result.success, (request.job_name, failure_message(result))
    table = results(defs, declared, DAY)
    # key columns are the text custom_ids are made from, whatever the source's type (README, "Keys")
    assert sorted(table["order_id"].to_pylist()) == ["1", "2"] and set(table["status"].to_pylist()) == {"succeeded"}


def test_a_use_case_the_definitions_do_not_hold_is_named():
    uc = UseCase(spec=_spec("elsewhere"), source=CsvSource("/data/x.csv", key="order_id"))
    with pytest.raises(ValueError, match="use case 'elsewhere' not found in these Definitions"):
        as_defined(definitions_for([]), uc)
