"""What a team meets when its table changes between runs: a rejected row keeps its custom_id when
rows are inserted before it, the same row of a repeated key wins whatever order a SQL database
returns the rows in, and a spreadsheet export's blank header cells do not refuse the table."""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from batch_pipeline import BatchSpec, CsvSource, SqlSource
from batch_pipeline.requests.lines import PartitionRequests, build_requests
from batch_pipeline.sources.partitions import Selection

DAY = "2026-11-20"
SPEC = BatchSpec(name="rows", model="gpt-4o-mini", prompt="{name}: {notes}")
# Rejected rows of every kind: a repeated key, a blank key, a malformed line (one field too many).
REJECTED = f"a1,{DAY},n,m\na1,{DAY},again,m\n,{DAY},no key,m\nb1,{DAY},x,y,extra\n"


def _built(source: CsvSource | SqlSource) -> PartitionRequests:
    return build_requests(pa.Table.from_batches(list(source.read(Selection(), ["id", "name", "notes"]))), source, SPEC)


def _index(source: CsvSource | SqlSource) -> list[dict]:
    return _built(source).index.to_pylist()


def _csv(path: Path, body: str) -> CsvSource:
    path.write_text("id,day,name,notes\n" + body)
    return CsvSource(path, key="id", partition_column="day")


def test_a_rejected_rows_id_does_not_move_when_rows_are_inserted_before_it(tmp_path: Path):
    before = _index(_csv(tmp_path / "before.csv", REJECTED))
    inserted = "".join(f"new{i},{DAY},n{i},m\n,{DAY},blank {i},m\n" for i in range(3))  # also rejected rows
    after = _index(_csv(tmp_path / "after.csv", inserted + REJECTED))
    rejected = [(r["error_code"], r["custom_id"]) for r in before if r["status"] == "rejected"]
    assert [code for code, _ in rejected] == ["duplicate_key", "missing_value", "malformed_row"]
    assert set(rejected) <= {(r["error_code"], r["custom_id"]) for r in after if r["status"] == "rejected"}
    # two rejected rows with the same cells still get two ids
    twice = _index(_csv(tmp_path / "twice.csv", f",{DAY},same,m\n,{DAY},same,m\n"))
    assert len({r["custom_id"] for r in twice}) == 2


def test_the_same_row_of_a_repeated_sql_key_wins_whatever_order_the_rows_were_stored_in(tmp_path: Path):
    rows = [("o-1", DAY, "first version", "m"), ("o-1", DAY, "another version", "m"), ("o-2", DAY, "x", "y")]
    winners = set()
    for name, stored in (("forward", rows), ("backward", rows[::-1])):
        path = tmp_path / f"{name}.duckdb"
        with duckdb.connect(str(path)) as db:
            db.execute("create table orders (id text, day text, name text, notes text)")
            db.executemany("insert into orders values (?, ?, ?, ?)", stored)
        built = _built(SqlSource("select * from orders", key="id", partition_column="day", duckdb=path))
        sent = [orjson.loads(line)["body"]["messages"][-1]["content"] for shard in built.shards
                for line in shard.splitlines()]
        assert sorted(r["error_code"] or "" for r in built.index.to_pylist()) == ["", "", "duplicate_key"]
        winners.add(tuple(sorted(sent)))
    # ordered by the columns read, the key then the prompt's cells: "another version" sorts first
    assert winners == {("another version: m", "x: y")}


def test_blank_header_cells_no_template_uses_do_not_refuse_the_table(tmp_path: Path):
    path = tmp_path / "export.csv"
    path.write_text(f"id,day,,name,notes,,\n1,{DAY},,n,m,,\n2,{DAY},stray,n2,m2,,\n")
    source = CsvSource(path, key="id", partition_column="day")
    assert source.schema().names[:7] == ["id", "day", "(blank column 3)", "name", "notes", "(blank column 6)",
                                         "(blank column 7)"]
    index = _index(source)
    assert [(r["id"], r["status"]) for r in index] == [("1", "pending"), ("2", "pending")]
