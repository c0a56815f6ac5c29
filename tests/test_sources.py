"""Every source kind and every partitioning selects exactly the partition's rows, renders cells one
documented way, and names itself when it cannot be read.

Parquet (a file, a folder, a Hive dataset), JSON Lines, DuckDB and PostgreSQL queries are read
from real files and a real server; the same rows come back from each.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batch_pipeline import BatchSpec, CsvSource, FileSource, SpecError, SqlSource, UseCase
from batch_pipeline.requests.lines import build_requests
from batch_pipeline.requests.partition import check_columns
from batch_pipeline.sources.base import SourceError
from batch_pipeline.sources.cells import as_text
from batch_pipeline.sources.unassigned import unassigned_rows

UTC = dt.UTC
SPEC = BatchSpec(name="orders", model="gpt-4o-mini", prompt="Describe order {order_id}: {note}")


def orders() -> pa.Table:
    """Twelve orders over four weeks and two customers, with typed columns."""
    start = dt.datetime(2026, 11, 2, 9, 30, tzinfo=UTC)  # a Monday
    when = [start + dt.timedelta(days=2 * i, hours=i) for i in range(12)]
    return pa.table({
        "order_id": pa.array(range(100, 112), pa.int64()),
        "customer": pa.array(["acme", "globex"] * 6),
        "placed_at": pa.array(when, pa.timestamp("us", "UTC")),
        "placed_on": pa.array([w.date() for w in when], pa.date32()),
        "note": pa.array([f"note {i}" for i in range(12)]),
    })


def ids_in(uc: UseCase, partition: str | None) -> list[int]:
    return sorted(int(v) for v in uc.read_table(partition)["order_id"].to_pylist())


def expected_week(table: pa.Table, monday: dt.date) -> list[int]:
    sunday = monday + dt.timedelta(days=7)
    return sorted(r["order_id"] for r in table.to_pylist()
                  if monday <= r["placed_at"].date() < sunday)


WEEKLY = dg.WeeklyPartitionsDefinition(start_date="2026-11-02", day_offset=1, timezone="UTC")  # Mondays


@pytest.fixture
def parquet_file(tmp_path: Path) -> Path:
    path = tmp_path / "orders.parquet"
    pq.write_table(orders(), path, row_group_size=3)
    return path


@pytest.mark.parametrize("column", ["placed_at", "placed_on"])
def test_a_weekly_partition_reads_the_rows_inside_its_window(parquet_file, column):
    uc = UseCase(SPEC, FileSource(str(parquet_file), key="order_id", partition_column=column), WEEKLY)
    mondays = ("2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23")
    for monday in mondays:
        assert ids_in(uc, monday) == expected_week(orders(), dt.date.fromisoformat(monday))
    assert sum(len(ids_in(uc, k)) for k in mondays) == 12


@pytest.mark.parametrize("definition, key, expected", [
    (dg.HourlyPartitionsDefinition(start_date="2026-11-02-00:00", timezone="UTC"), "2026-11-04-10:00", [101]),
    (dg.MonthlyPartitionsDefinition(start_date="2026-11-01", timezone="UTC"), "2026-11-01", list(range(100, 112))),
    # a zone of its own: Tokyo's 4 November is 15:00 UTC on the 3rd to 15:00 UTC on the 4th
    (dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="Asia/Tokyo"), "2026-11-04", [101]),
])
def test_any_cadence_and_zone_selects_by_instant(parquet_file, definition, key, expected):
    for column in ("placed_at", "placed_on"):
        uc = UseCase(SPEC, FileSource(str(parquet_file), key="order_id", partition_column=column), definition)
        instants = {r["order_id"]: r for r in orders().to_pylist()}
        if column == "placed_on":  # a date is its midnight in the definition's zone
            window = definition.time_window_for_partition_key(key)
            zone = window.start.tzinfo
            expected = sorted(i for i, r in instants.items() if window.start <= dt.datetime.combine(
                r["placed_on"], dt.time(), zone) < window.end)
        assert ids_in(uc, key) == expected, (column, key)


def test_text_timestamps_in_a_csv_are_read_as_instants_in_the_definitions_zone(tmp_path):
    csv = tmp_path / "events.csv"
    csv.write_text("id,at,note\n"
                   "a,2026-11-02,midnight\n"
                   "b,2026-11-08T23:59:59,last second of the week\n"
                   "c,2026-11-09 00:00:00,next week\n"
                   "d,2026-11-09T00:30:00+01:00,an offset: 23:30 UTC on the 8th\n"
                   "e,11/03/2026,not ISO 8601\n")
    spec = BatchSpec(name="events", model="gpt-4o-mini", prompt="{note}")
    uc = UseCase(spec, CsvSource(csv, key="id", partition_column="at"), WEEKLY)
    assert uc.read_table("2026-11-02")["id"].to_pylist() == ["a", "b", "d"]
    assert uc.read_table("2026-11-09")["id"].to_pylist() == ["c"]
    lost = unassigned_rows(uc.source, uc.partitions_def)
    assert lost.select(["key", "line", "reason"]).to_pylist() == [
        {"key": "e", "line": 6, "reason": "not_a_partition"}]
    assert "is not a date or time" in lost["message"][0].as_py()


def test_hive_partitioned_parquet_and_static_partitions(tmp_path):
    root = tmp_path / "orders"
    ds.write_dataset(orders(), root, format="parquet", partitioning=["customer"], partitioning_flavor="hive")
    source = FileSource(str(root), key="order_id", partition_column="customer")
    uc = UseCase(SPEC, source, dg.StaticPartitionsDefinition(["acme", "globex"]))
    assert ids_in(uc, "acme") == list(range(100, 112, 2))
    assert ids_in(uc, "globex") == list(range(101, 112, 2))
    assert "customer" in source.columns()


def test_multi_partitions_select_on_every_dimension(parquet_file):
    customers = dg.StaticPartitionsDefinition(["acme", "globex"])
    multi = dg.MultiPartitionsDefinition({"week": WEEKLY, "customer": customers})
    source = FileSource(str(parquet_file), key="order_id",
                        partition_column={"week": "placed_at", "customer": "customer"})
    uc = UseCase(SPEC, source, multi)
    key = dg.MultiPartitionKey({"week": "2026-11-09", "customer": "globex"})
    expected = [i for i in expected_week(orders(), dt.date(2026, 11, 9)) if i % 2 == 1]
    assert ids_in(uc, key) == expected and expected


def test_unpartitioned_and_dynamic_partitions(parquet_file):
    whole = UseCase(SPEC, FileSource(str(parquet_file), key="order_id"))
    assert ids_in(whole, None) == list(range(100, 112))
    dynamic = UseCase(SPEC, FileSource(str(parquet_file), key="order_id", partition_column="customer"),
                      dg.DynamicPartitionsDefinition(name="customers"))
    assert ids_in(dynamic, "acme") == list(range(100, 112, 2))
    lost = unassigned_rows(dynamic.source, dynamic.partitions_def, dynamic_keys={"customers": ["acme"]})
    assert lost["key"].to_pylist() == [str(i) for i in range(101, 112, 2)]
    assert set(lost["reason"].to_pylist()) == {"not_a_partition"}


def test_a_relative_path_is_refused_naming_it():
    with pytest.raises(ValueError, match="'data/orders.parquet' is a relative path"):
        FileSource("data/orders.parquet", key="order_id")
    with pytest.raises(ValueError, match="relative path"):
        CsvSource("orders.csv", key="order_id")
    with pytest.raises(ValueError, match="relative path"):
        SqlSource("select 1", key="x", duckdb="shop.duckdb")


def test_a_partition_column_is_required_where_the_partitions_need_it(parquet_file):
    with pytest.raises(SpecError, match="partition_column must name"):
        UseCase(SPEC, FileSource(str(parquet_file), key="order_id"), WEEKLY)
    with pytest.raises(SpecError, match="no partitions"):
        UseCase(SPEC, FileSource(str(parquet_file), key="order_id", partition_column="placed_at"))


def test_json_lines_read_like_parquet(tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_text("".join(f'{{"order_id": {100 + i}, "customer": "{c}", "note": "n {i}"}}\n'
                            for i, c in enumerate(["acme", "globex", "acme"])))
    uc = UseCase(SPEC, FileSource(str(path), key="order_id", partition_column="customer", format="jsonl"),
                 dg.StaticPartitionsDefinition(["acme", "globex"]))
    assert ids_in(uc, "acme") == [100, 102]


def test_a_source_that_cannot_be_opened_names_itself(tmp_path):
    source = FileSource(str(tmp_path / "missing.parquet"), key="order_id")
    with pytest.raises(SourceError, match="missing.parquet"):
        source.columns()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match="broken.parquet"):
        list(UseCase(SPEC, FileSource(str(broken), key="order_id")).read(None))


def test_a_missing_column_names_the_column_the_spec_and_the_columns_there_are(parquet_file):
    uc = UseCase(BatchSpec(name="orders", model="gpt-4o-mini", prompt="{nte}"),
                 FileSource(str(parquet_file), key="order_id"))
    with pytest.raises(SpecError, match=r"spec 'orders': column 'nte' is not in Parquet .*orders.parquet.*columns: "
                                        r"order_id, customer, placed_at, placed_on, note.*did you mean 'note'"):
        check_columns(uc.source.schema(), uc.source, uc.spec)


# --- cells ---

def test_every_cell_type_renders_one_documented_way():
    cases = [
        (pa.array([42, -7], pa.int32()), ["42", "-7"]),
        (pa.array([0.1, 3.0]), ["0.1", "3"]),
        (pa.array([decimal.Decimal("1.50"), None]), ["1.50", None]),
        (pa.array([True, False]), ["true", "false"]),
        (pa.array([dt.date(2026, 11, 20)] * 2), ["2026-11-20"] * 2),
        (pa.array([dt.datetime(2026, 11, 20, 10), dt.datetime(2026, 11, 20, 10, 0, 0, 123)], pa.timestamp("us")),
         ["2026-11-20T10:00:00", "2026-11-20T10:00:00.000123"]),
        (pa.array([dt.datetime(2026, 11, 20, 11, tzinfo=dt.timezone(dt.timedelta(hours=1)))],
                  pa.timestamp("s", "Europe/Paris")), ["2026-11-20T10:00:00Z"]),
        (pa.array([["a", "b"], None, []]), ['["a","b"]', None, "[]"]),
        (pa.array(["x", None]).dictionary_encode(), ["x", None]),
    ]
    for values, expected in cases:
        text, problem = as_text(values)
        assert problem is None and text.to_pylist() == expected, values.type


def test_a_cell_no_rule_renders_rejects_its_row_naming_the_column():
    table = pa.table({"id": ["a", "b"], "blob": pa.array([b"\x00\x01", None], pa.binary()),
                      "meta": pa.array([{"x": 1}, {"x": 2}])})
    spec = BatchSpec(name="t", model="gpt-4o-mini", prompt="{blob} {meta}")
    index = build_requests(table, FileSource("/unused.parquet", key="id"), spec).index
    assert index["status"].to_pylist() == ["rejected", "rejected"]
    assert index["error_code"].to_pylist() == ["unrenderable_value"] * 2
    assert "column 'blob' holds binary values" in index["error_message"][0].as_py()
    assert "column 'meta' holds struct" in index["error_message"][1].as_py()


# --- keys ---

def test_composite_keys_give_stable_portable_unique_ids():
    table = pa.table({"a": ["x", "x y", "x", "p.q", "p,q"], "b": ["y z", "z", "y z", "1", "1"],
                      "note": ["n"] * 5})
    spec = BatchSpec(name="t", model="gpt-4o-mini", prompt="{note}")
    index = build_requests(table, FileSource("/unused.parquet", key=["a", "b"]), spec).index
    ids = index["custom_id"].to_pylist()
    assert index["status"].to_pylist() == ["pending", "pending", "rejected", "pending", "pending"]
    assert index["error_code"][2].as_py() == "duplicate_key"
    assert "columns 'a', 'b' repeat a key" in index["error_message"][2].as_py()
    sent = [ids[i] for i in (0, 1, 3, 4)]
    assert len(set(sent)) == 4 and all(pc.match_substring_regex(pa.array(sent), r"^k_[0-9a-f]{32}$").to_pylist())
    again = build_requests(table, FileSource("/unused.parquet", key=["a", "b"]), spec).index
    assert again["custom_id"].to_pylist() == ids
    assert index.column_names[:2] == ["a", "b"]


def test_integer_keys_are_their_digits():
    table = pa.table({"id": pa.array([7, 8], pa.int64()), "note": ["a", "b"]})
    spec = BatchSpec(name="t", model="gpt-4o-mini", prompt="{note}")
    assert build_requests(table, FileSource("/unused.parquet", key="id"), spec).index["custom_id"].to_pylist() == [
        "7", "8"]


# --- SQL ---

@pytest.fixture
def duckdb_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("new_orders", orders())
        con.execute("CREATE TABLE orders AS SELECT * FROM new_orders")
    return path


def test_a_duckdb_query_binds_the_partition_and_reads_its_rows(duckdb_file):
    source = SqlSource("SELECT order_id, customer, placed_at, note FROM orders", key="order_id",
                       partition_column="placed_at", duckdb=duckdb_file)
    uc = UseCase(SPEC, source, WEEKLY)
    assert ids_in(uc, "2026-11-09") == expected_week(orders(), dt.date(2026, 11, 9))
    static = UseCase(SPEC, SqlSource("SELECT * FROM orders;", key="order_id", partition_column="customer",
                                     duckdb=duckdb_file), dg.StaticPartitionsDefinition(["acme", "globex"]))
    assert ids_in(static, "globex") == list(range(101, 112, 2))
    assert ids_in(static, "x' OR '1'='1") == []  # a bound value, never SQL text


def test_a_failing_query_names_the_source_and_the_databases_message(duckdb_file):
    source = SqlSource("SELECT order_id, nope FROM orders", key="order_id", duckdb=duckdb_file)
    with pytest.raises(SourceError, match=r"SQL query 'SELECT order_id, nope FROM orders' on DuckDB .*failed: .*nope"):
        source.columns()
    with pytest.raises(SourceError, match="does not exist"):
        SqlSource("SELECT 1", key="x", duckdb=duckdb_file.with_name("none.duckdb")).columns()


def test_a_postgres_query_streams_arrow_batches_and_hides_the_password(postgres_server, monkeypatch):
    adbc = pytest.importorskip("adbc_driver_postgresql.dbapi")
    url = postgres_server.create_database("shop_sources")
    try:
        with adbc.connect(url) as connection, connection.cursor() as cursor:
            cursor.adbc_ingest("orders", orders(), mode="create")
            connection.commit()
        secret_url = url.replace("postgres@", "postgres:s3cret-pw@")
        monkeypatch.setenv("SHOP_DB_URL", secret_url)
        source = SqlSource("SELECT * FROM orders", key="order_id", partition_column="placed_at",
                           postgres_url_env="SHOP_DB_URL")
        uc = UseCase(SPEC, source, WEEKLY)
        assert ids_in(uc, "2026-11-16") == expected_week(orders(), dt.date(2026, 11, 16))
        customers = UseCase(SPEC, SqlSource("SELECT * FROM orders", key="order_id", partition_column="customer",
                                            postgres_url_env="SHOP_DB_URL"),
                            dg.StaticPartitionsDefinition(["acme", "globex"]))
        assert ids_in(customers, "acme") == list(range(100, 112, 2))
        with pytest.raises(SourceError) as failed:
            SqlSource("SELECT nope FROM orders", key="order_id", postgres_url_env="SHOP_DB_URL").columns()
        assert "nope" in str(failed.value) and "s3cret-pw" not in str(failed.value)
        monkeypatch.setenv("SHOP_DB_URL", secret_url.replace(str(postgres_server.port), "1"))
        with pytest.raises(SourceError) as refused:
            source.columns()
        assert "cannot connect" in str(refused.value) and "s3cret-pw" not in str(refused.value)
    finally:
        postgres_server.drop_database("shop_sources")


def test_a_time_window_column_of_another_type_is_refused_before_reading(tmp_path, parquet_file):
    from batch_pipeline.requests.partition import build_partition
    from batch_pipeline.warehouse.storage import Warehouse

    uc = UseCase(SPEC, FileSource(str(parquet_file), key="order_id", partition_column="order_id"), WEEKLY)
    with pytest.raises(SpecError, match="partition column 'order_id' holds int64 values; a time-window"):
        build_partition(Warehouse(str(tmp_path / "wh")), uc, "2026-11-02")


def test_files_on_object_storage_read_as_local_ones(s3_bucket, tmp_path):
    """A Hive Parquet dataset and a CSV at `s3://` URLs (a real S3-compatible server), through fsspec."""
    import s3fs

    fs = s3fs.S3FileSystem()
    local = tmp_path / "orders"
    ds.write_dataset(orders(), local, format="parquet", partitioning=["customer"], partitioning_flavor="hive")
    fs.put(str(local), f"{s3_bucket}/orders", recursive=True)
    csv = tmp_path / "orders.csv"
    csv.write_text("order_id,customer,note\n" + "".join(f"{100 + i},{['acme', 'globex'][i % 2]},n{i}\n"
                                                      for i in range(12)))
    fs.put(str(csv), f"{s3_bucket}/orders.csv")
    customers = dg.StaticPartitionsDefinition(["acme", "globex"])
    for source in (FileSource(f"s3://{s3_bucket}/orders", key="order_id", partition_column="customer"),
                   CsvSource(f"s3://{s3_bucket}/orders.csv", key="order_id", partition_column="customer")):
        assert ids_in(UseCase(SPEC, source, customers), "globex") == list(range(101, 112, 2)), source
    with pytest.raises(SourceError, match=f"s3://{s3_bucket}/nothing-here"):
        FileSource(f"s3://{s3_bucket}/nothing-here", key="order_id").columns()


def test_padded_partition_cells_are_read_wherever_the_condition_is_pushed_down(tmp_path):
    """The storage's filter is a superset of the partition: a cell padded with a tab or spaces
    (which the partition's match trims) is never filtered out by SQL or by the Parquet scanner."""
    table = pa.table({"id": ["a", "b", "c"], "customer": ["acme\t", " acme", "globex"],
                      "day": [" 2026-11-20", "2026-11-20\t", "2026-11-21"]})
    pq.write_table(table, tmp_path / "t.parquet")
    with duckdb.connect(str(tmp_path / "t.duckdb")) as con:
        con.register("t", table)
        con.execute("CREATE TABLE t2 AS SELECT * FROM t")
    customers = dg.StaticPartitionsDefinition(["acme", "globex"])
    daily = dg.DailyPartitionsDefinition(start_date="2026-11-20", timezone="UTC")
    for column, definition, key in (("customer", customers, "acme"), ("day", daily, "2026-11-20")):
        for source in (FileSource(str(tmp_path / "t.parquet"), key="id", partition_column=column),
                       SqlSource("SELECT * FROM t2", key="id", partition_column=column, duckdb=tmp_path / "t.duckdb")):
            spec = BatchSpec(name="t", model="gpt-4o-mini", prompt="{id}")
            assert UseCase(spec, source, definition).read_table(key)["id"].to_pylist() == ["a", "b"], (source, column)
