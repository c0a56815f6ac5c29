"""Every row, exactly as written: each source row lands once in some partition or is reported
with its key and line; every cell is sent as written or its row is rejected naming the column."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import dagster as dg
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from batch_pipeline import BatchSpec, CsvSource, UseCase
from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.requests.custom_ids import PORTABLE, custom_id_for, custom_ids
from batch_pipeline.requests.lines import build_requests, stream_requests
from batch_pipeline.sources.csv_source import (
    SOURCE_ERROR,
    SOURCE_LINE,
    SourceError,
    read_batches,
    read_partition,
    read_partition_batches,
)
from batch_pipeline.sources.unassigned import unassigned_rows
from batch_pipeline.spec import SpecError

DAY = "2026-11-20"
DAILY = dg.DailyPartitionsDefinition(start_date=DAY, timezone="UTC")
SPEC = BatchSpec(name="rows", model="gpt-4o-mini", prompt="{name}: {notes}")


def table_at(tmp_path: Path, text: str | bytes, **options) -> CsvSource:
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return CsvSource(path=path, key="id", partition_column="day", **options)


def rows_of(source: CsvSource, block_size: int = 8 << 20) -> list[dict]:
    return [row for table in read_batches(source, block_size) for row in table.to_pylist()]


def sent(source: CsvSource, spec: BatchSpec = SPEC) -> tuple[dict, dict]:
    """(index rows by key, request line by custom_id) for the DAY partition."""
    built = build_requests(read_partition(source, DAY), source, spec)
    lines = [orjson.loads(line) for shard in built.shards for line in shard.splitlines()]
    return {r["id"]: r for r in built.index.to_pylist()}, {
        line["custom_id"]: line for line in lines
    }


def content(line: dict) -> str:
    return line["body"]["messages"][-1]["content"]


def written(
    rows: list[list[str]], terminator: str = "\n", quoting: int = csv.QUOTE_MINIMAL
) -> tuple[str, list[int]]:
    """A CSV of `rows` (header first) as a careful writer makes it, and each data row's line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=terminator, quoting=quoting)
    writer.writerow(rows[0])
    lines = []
    for row in rows[1:]:
        text = out.getvalue()
        lines.append(1 + text.count("\n") + text.count("\r") - text.count("\r\n"))
        writer.writerow(row)
    return out.getvalue(), lines


# -- cells as written, whatever the block boundaries -----------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_any_well_formed_table_reads_back_cell_for_cell_at_any_block_size(tmp_path, seed):
    rng = random.Random(seed)
    terminator = rng.choice(["\n", "\r\n"])
    alphabet = rng.choice(['ab ,"\n\r', "ab", 'a"b ', "ab\n,", 'ü💊"\n,x'])
    if terminator == "\n":
        alphabet = alphabet.replace("\r", "")  # csv.writer leaves a lone \r unquoted then
    rows = [["id", "day", "name"]]
    for i in range(rng.randint(1, 300)):
        cell = (
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
            if rng.random() < 0.5
            else f"v{i}"
        )
        rows.append([f"k{i}", DAY, cell])
    text, lines = written(rows, terminator, rng.choice([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    source = table_at(tmp_path, text)
    for block_size in (5, 64, 1000, 8 << 20):
        got = rows_of(source, block_size)
        assert [(r["id"], r["day"], r["name"], r[SOURCE_LINE]) for r in got] == [
            (key, day, cell, line) for (key, day, cell), line in zip(rows[1:], lines, strict=True)
        ], block_size
        assert all(r[SOURCE_ERROR] is None for r in got)


def test_a_quoted_multiline_cell_across_the_8_mib_block_boundary_is_sent_whole(tmp_path):
    line = f"f,{DAY},filler,{'x' * 80}\n"
    filler = line * (((8 << 20) - 3000) // len(line))
    cell = "first line\n" + "y" * 5000 + "\nlast line"
    text = f'id,day,name,notes\n{filler}cut,{DAY},Aspirin,"{cell}"\nafter,{DAY},A,b\n'
    assert text.index("first line") < 8 << 20 < text.index("last line")
    source = table_at(tmp_path, text)
    index, lines = sent(
        source,
        BatchSpec(
            name="rows", model="gpt-4o-mini", prompt="{name}: {notes}", max_prompt_chars=100_000
        ),
    )
    assert content(lines["cut"]) == f"Aspirin: {cell}"
    assert index["after"]["status"] == "pending" and content(lines["after"]) == "A: b"


def test_a_20_mb_cell_is_read_whole_and_its_row_rejected_naming_the_column(tmp_path):
    source = table_at(
        tmp_path, f'id,day,name,notes\nbig,{DAY},Aspirin,"{"z" * 20_000_000}"\nok,{DAY},A,b\n'
    )
    [big] = [r for r in rows_of(source) if r["id"] == "big"]
    assert len(big["notes"]) == 20_000_000 and big[SOURCE_ERROR] is None
    index, lines = sent(source)
    assert index["big"]["error_code"] == "input_too_long"
    assert "column 'notes' (20,000,000 characters)" in index["big"]["error_message"]
    assert set(lines) == {"ok"}


def test_a_big_table_streams_in_blocks_of_whole_records(tmp_path):
    body = "".join(f'r{i},{DAY},"name {i}\nsecond line",n\n' for i in range(3000))
    source = table_at(tmp_path, "id,day,name,notes\n" + body)
    batches = list(read_partition_batches(source, DAY, block_size=4096))
    assert len(batches) > 20 and max(b.num_rows for b in batches) < 200
    names = pa.concat_arrays([b.column("name") for b in batches]).to_pylist()
    assert names == [f"name {i}\nsecond line" for i in range(3000)]
    assert pa.concat_arrays([b.column(SOURCE_LINE) for b in batches]).to_pylist() == list(
        range(2, 6002, 2)
    )


def test_blank_lines_are_no_rows_and_lines_are_counted_through_them(tmp_path):
    for quoted in ('"two\nlines"', "one line"):
        source = table_at(tmp_path, f"id,day,name\r\n\r\na,{DAY},{quoted}\r\n\r\n\nb,{DAY},x\r\n")
        got = [(r["id"], r[SOURCE_LINE], r[SOURCE_ERROR]) for r in rows_of(source)]
        assert got == [("a", 3, None), ("b", 7 if "\n" in quoted else 6, None)], quoted


# -- a stray quote swallows nothing ----------------------------------------------------------


@pytest.mark.parametrize(
    "stray, problem",
    [
        (f'q1,{DAY},"Unclosed,notes here', "column 'name' opens a quote that is never closed"),
        (f'q1,{DAY},Aspirin,"never closed', "column 'notes' opens a quote that is never closed"),
    ],
)
def test_an_unterminated_quote_rejects_its_line_and_the_next_lines_are_rows(
    tmp_path, stray, problem
):
    body = f"g1,{DAY},Aspirin,daily\n{stray}\ng2,{DAY},Ibuprofen,with food\ng3,{DAY},X,y\n"
    source = table_at(tmp_path, "id,day,name,notes\n" + body)
    index, lines = sent(source)
    assert index["q1"]["error_code"] == "malformed_row"
    assert "(line 3)" in index["q1"]["error_message"] and problem in index["q1"]["error_message"]
    assert set(lines) == {"g1", "g2", "g3"} and content(lines["g3"]) == "X: y"


def test_a_quote_closed_lines_later_by_another_cell_swallows_nothing(tmp_path):
    # The quote opened on line 3 closes at g3's opening quote; the field counts even match.
    body = (
        f'g1,{DAY},Aspirin,daily\nq1,{DAY},"Unclosed,notes here\ng2,{DAY},Ibuprofen,with food\n'
        f'g3,{DAY},X,"with, comma"\n'
    )
    index, lines = sent(table_at(tmp_path, "id,day,name,notes\n" + body))
    assert (
        index["q1"]["status"] == "rejected"
        and "text after its closing quote" in index["q1"]["error_message"]
    )
    assert (
        content(lines["g2"]) == "Ibuprofen: with food" and content(lines["g3"]) == "X: with, comma"
    )


@pytest.mark.parametrize("cell", ['"ab"cd', '"The "best" offer"', '""Best"" offer'])
def test_text_after_a_closing_quote_rejects_the_row_naming_the_column(tmp_path, cell):
    index, lines = sent(
        table_at(tmp_path, f"id,day,name,notes\ng1,{DAY},A,b\nodd,{DAY},{cell},x\n")
    )
    assert index["odd"]["error_code"] == "malformed_row"
    assert "column 'name' has text after its closing quote" in index["odd"]["error_message"]
    assert set(lines) == {"g1"}


def test_quotes_inside_unquoted_text_are_sent_as_written(tmp_path):
    _, lines = sent(table_at(tmp_path, f'id,day,name,notes\ntv,{DAY},55" TV,O"Neil says ""hi""\n'))
    assert content(lines["tv"]) == '55" TV: O"Neil says ""hi""'


# -- text that looks like a null -------------------------------------------------------------


def test_only_an_empty_cell_is_null(tmp_path):
    words = ["NA", "null", "NULL", "nan", "N/A", "None", "#N/A", "-"]
    body = "".join(f"w{i},{DAY},{word},{word}\n" for i, word in enumerate(words)) + f'e,{DAY},,""\n'
    index, lines = sent(table_at(tmp_path, "id,day,name,notes\n" + body))
    assert [content(lines[f"w{i}"]) for i in range(len(words))] == [f"{w}: {w}" for w in words]
    assert index["e"]["error_code"] == "missing_value"


def test_a_table_may_declare_its_own_null_markers(tmp_path):
    source = table_at(
        tmp_path, f"id,day,name,notes\na,{DAY},N/A,x\nb,{DAY},NA,y\n", null_values=["N/A"]
    )
    index, lines = sent(source)
    assert index["a"]["error_code"] == "missing_value" and content(lines["b"]) == "NA: y"


# -- column names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, match",
    [
        ("id,day,name,name", "two columns named 'name' \\(columns 3 and 4\\)"),
        (
            "id,day,name,notes,_source_error",
            "column named '_source_error', a name the pipeline adds",
        ),
        ("id,day,name,notes,_source_line", "column named '_source_line'"),
    ],
)
def test_clashing_column_names_fail_naming_the_use_case_and_the_column(tmp_path, header, match):
    source = table_at(tmp_path, f"{header}\ng1,{DAY},A,b,c\n")
    with pytest.raises(SourceError, match=f"spec 'rows': CSV file 't.csv' .*{match}"):
        list(stream_requests(read_partition_batches(source, DAY), source, SPEC))


def test_a_key_named_like_an_index_column_fails_naming_the_use_case(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(f"shard,day,name,notes\ng1,{DAY},A,b\n")
    source = CsvSource(path=path, key="shard", partition_column="day")
    with pytest.raises(
        SpecError, match="spec 'rows': key column 'shard' .* a column the pipeline adds"
    ):
        build_requests(read_partition(source, DAY), source, SPEC)


# -- custom ids: unique by construction ------------------------------------------------------


def test_ordinary_keys_keep_their_ids_and_hashed_ids_are_stable():
    assert custom_id_for("MED-0001") == "MED-0001"
    assert custom_id_for("name with spaces") == "k_cae0c67dc0af95c1c1e3cb75c6b670ca"
    assert custom_id_for("x" * 65) == "k_e7d347aafb04b4783db0f88621284c94"


def test_keys_spelled_like_derived_ids_are_hashed_so_nothing_collides():
    hashed = custom_id_for("name with spaces")
    keys = ["name with spaces", hashed, "nokey-0", "dup-1", "bad-2", "k_" + "A" * 32, "k_123"]
    ids = custom_ids(pa.array(keys)).to_pylist()
    assert ids == [custom_id_for(k) for k in keys] and len(set(ids)) == len(keys)
    assert ids[1] != hashed and ids[2] != "nokey-0" and ids[3] != "dup-1" and ids[4] != "bad-2"
    assert ids[5:] == keys[5:]  # not the derived shape: kept as written
    assert all(PORTABLE.fullmatch(i) for i in ids)


def test_rejected_rows_never_share_an_id_with_a_sent_row(tmp_path):
    hashed = custom_id_for("a b")
    body = "".join(
        f"{key},{DAY},n,m\n" for key in ["a b", hashed, "nokey-2", "dup-4", "", "a b", "bad-7"]
    )
    source = table_at(tmp_path, f"id,day,name,notes\n{body}a b,{DAY},n,m,one field too many\n")
    built = build_requests(read_partition(source, DAY), source, SPEC)
    index = built.index.to_pylist()
    ids = [r["custom_id"] for r in index]
    assert len(set(ids)) == len(ids) == 8
    sent_ids = {
        orjson.loads(line)["custom_id"] for shard in built.shards for line in shard.splitlines()
    }
    assert sent_ids == {r["custom_id"] for r in index if r["status"] == "pending"}
    assert [r["error_code"] for r in index if r["status"] == "rejected"] == [
        "missing_value",
        "duplicate_key",
        "malformed_row",
    ]
    assert not sent_ids & {r["custom_id"] for r in index if r["status"] == "rejected"}


# -- every row lands once, or is reported with its key and line ------------------------------


HOSTILE = (
    "id,day,name,notes\n"
    f"g1,{DAY},A,b\n"
    "f1,2026/11/20,A,b\n"
    "z1,2026-11-20T10:00:00+02:00,A,b\n"
    "old,2026-11-19,A,b\n"
    "blank,,A,b\n"
    "ws,   ,A,b\n"
    "padded, 2026-11-21 ,A,b\n"
    "future,2099-01-01,A,b\n"
    f"wide,{DAY},A,b,c\n"
    "junk,nowhere,A,b,c\n"
    f'q1,{DAY},"never closed\n'
    "g2,2026-11-21,A,b\n"
)


def test_rows_outside_every_partition_are_reported_with_key_line_and_reason(tmp_path):
    report = unassigned_rows(table_at(tmp_path, HOSTILE), DAILY).to_pylist()
    assert [(r["key"], r["line"], r["reason"]) for r in report] == [
        ("f1", 3, "not_a_partition"),
        ("old", 5, "not_a_partition"),
        ("blank", 6, "missing_partition_value"),
        ("ws", 7, "missing_partition_value"),
        ("future", 9, "future_partition"),
        ("junk", 11, "malformed_row"),
    ]
    assert "'2026/11/20' in column 'day' is not a date or time" in report[0]["message"]
    assert "'2026-11-19' in column 'day' is in no partition (windows from 2026-11-20" in report[1]["message"]
    assert "expected 4 fields, got 5" in report[-1]["message"]


def test_every_line_lands_in_exactly_one_partition_or_the_report(tmp_path):
    """A timestamp with a zone (`z1`, 08:00 UTC) is read by the day it falls in."""
    source = table_at(tmp_path, HOSTILE)
    uc = UseCase(SPEC, source, DAILY)
    landed = []
    for partition in ("2026-11-20", "2026-11-21"):
        built = build_requests(uc.read_table(partition), source, SPEC)
        landed += [(r["id"], r["status"]) for r in built.index.to_pylist()]
    report = unassigned_rows(source, DAILY)
    lines = [r[SOURCE_LINE] for r in rows_of(source)]
    assert lines == list(range(2, 14))
    in_partitions = [
        line
        for p in ("2026-11-20", "2026-11-21")
        for line in pc.cast(uc.read_table(p)[SOURCE_LINE], pa.int64()).to_pylist()
    ]
    assert sorted(in_partitions + report["line"].to_pylist()) == lines
    assert (
        ("wide", "rejected") in landed
        and ("q1", "rejected") in landed
        and ("g2", "pending") in landed
        and ("z1", "pending") in landed
    )


def test_static_and_dynamic_partitions_are_checked_by_their_keys(tmp_path):
    source = table_at(tmp_path, HOSTILE)
    static = unassigned_rows(source, dg.StaticPartitionsDefinition([DAY]))
    assert "g2" in static["key"].to_pylist() and "g1" not in static["key"].to_pylist()
    dynamic = unassigned_rows(
        source, dg.DynamicPartitionsDefinition(name="days"), dynamic_keys={"days": [DAY]}
    )
    assert dynamic["key"].to_pylist() == static["key"].to_pylist()
    assert unassigned_rows(source, None).num_rows == 0


# -- unreadable tables -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, match",
    [
        (None, "does not exist"),
        (b"", "is empty: it has no header line"),
        (b"\n\n", "is empty: it has no header line"),
        (
            b"id,day,name,notes\n" + f"x,{DAY},caf".encode() + b"\xe9,y\n",
            "is not UTF-8 text: line 2",
        ),
        (b"id,name,notes\nx,A,b\n", "has no partition column 'day'"),
    ],
)
def test_an_unreadable_table_is_a_clear_error(tmp_path, data, match):
    path = tmp_path / "t.csv"
    if data is not None:
        path.write_bytes(data)
    source = CsvSource(path=path, key="id", partition_column="day")
    with pytest.raises((SourceError, SpecError), match=match):
        read_partition(source, DAY)


def test_a_header_without_a_newline_is_a_table_without_rows(tmp_path):
    index, lines = sent(table_at(tmp_path, "id,day,name,notes"))
    assert index == {} and lines == {}


def test_one_broken_use_case_does_not_stop_the_demo(tmp_path, monkeypatch, capsys, pipeline_env):
    from assets.demo import run_demo

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    good = tmp_path / "good.csv"
    good.write_text(
        f"id,day,name,notes\ng1,{DAY},Aspirin,daily\ng2,{DAY},NA,with food\nlost,20/11/2026,x,y\n"
    )
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,day,name,notes\n" + f"x,{DAY},caf".encode() + b"\xe9,y\n")
    nodate = tmp_path / "nodate.csv"
    nodate.write_text("id,name,notes\nx,A,b\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    tables = {
        "good": good,
        "latin": latin,
        "nodate": nodate,
        "empty": empty,
        "missing": tmp_path / "no.csv",
    }
    cases = [
        UseCase(
            spec=BatchSpec(name=name, model="gpt-4o-mini", prompt="{name}: {notes}"),
            source=CsvSource(path=path, key="id", partition_column="day"),
            partitions_def=DAILY,
        )
        for name, path in tables.items()
    ]
    cases.append(
        UseCase(
            spec=BatchSpec(name="typo", model="gpt-4o-mini", prompt="{nmae}"),
            source=CsvSource(path=good, key="id", partition_column="day"),
            partitions_def=DAILY,
        )
    )
    assert run_demo(str(tmp_path / "warehouse"), None, cases) == 1
    out = capsys.readouterr().out
    assert f"good {DAY}: results written" in out
    assert "line 4 key 'lost': '20/11/2026' in column 'day' is not a date or time" in out
    for name, cause in [
        ("latin", "is not UTF-8 text: line 2"),
        ("nodate", "has no partition column 'day'"),
        ("empty", "is empty"),
        ("missing", "does not exist"),
    ]:
        assert f"{name}: FAILED" in out and cause in out, name
    assert f"typo {DAY}: FAILED spec 'typo': column 'nmae' is not in CSV file '" in out and "good.csv' (columns" in out
    assert "Traceback" not in out and "DagsterExecution" not in out and "Error occurred" not in out


def test_colliding_keys_through_the_pipeline_each_row_once_and_no_answer_on_a_rejected_row(
    instance, pipeline_env, tmp_path
):
    import pyarrow.parquet as pq

    from batch_pipeline import definitions_for
    from tests.helpers import execute, submit, tick_until_requested

    hashed = custom_id_for("a b")
    keys = ["a b", hashed, "nokey-2", "dup-5", "", "a b", "bad-6", "NA"]
    body = "".join(f"{key},{DAY},n{i},m\n" for i, key in enumerate(keys)) + f"a b,{DAY},x,y,extra\n"
    uc = UseCase(
        spec=SPEC, source=table_at(tmp_path, "id,day,name,notes\n" + body), partitions_def=DAILY
    )
    defs = definitions_for([uc])
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    [request], _, _ = tick_until_requested(defs, instance)
    execute(defs, instance, request)
    results = pq.read_table(
        pipeline_env / "warehouse" / "rows" / "results" / f"partition={DAY}" / "results.parquet"
    )
    rows = results.to_pylist()
    assert len(rows) == len(keys) + 1 and len({r["custom_id"] for r in rows}) == len(rows)
    assert [r["status"] for r in rows].count("succeeded") == 6
    for row in rows:
        if row["status"] == "rejected":
            assert row["output"] is None and not row["cost_usd"] and row["batch_id"] is None, row
    assert sorted(r["error_code"] for r in rows if r["status"] == "rejected") == [
        "duplicate_key",
        "malformed_row",
        "missing_value",
    ]
