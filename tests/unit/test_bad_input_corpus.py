"""Bad input, case by case: a clear error naming the row, column or field; every other row flows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from batch_pipeline import BatchSpec, CsvSource, SpecError, UseCase
from batch_pipeline.requests.custom_ids import PORTABLE
from batch_pipeline.requests.lines import build_requests
from batch_pipeline.sources.csv_source import read_partition

DAY = "2026-11-20"
GOOD = "g1,2026-11-20,Aspirin,daily\ng2,2026-11-20,Ibuprofen,with food\n"


def build(tmp_path: Path, body: str, header: str = "id,day,name,notes", **spec: Any):
    path = tmp_path / "t.csv"
    path.write_bytes((header + "\n" + body).encode("utf-8") if isinstance(body, str) else body)
    source = CsvSource(path=path, key="id", partition_column="day")
    spec = BatchSpec(**{"name": "corpus", "model": "gpt-4o-mini", "prompt": "{name}: {notes}", **spec})
    built = build_requests(read_partition(source, DAY), source, spec)
    rows = {r["id"]: r for r in built.index.to_pylist()}
    lines = [orjson.loads(line) for shard in built.shards for line in shard.splitlines()]
    return rows, lines


def flows(rows: dict, lines: list) -> bool:
    """The good rows became requests."""
    sent = {line["custom_id"] for line in lines}
    return rows["g1"]["status"] == rows["g2"]["status"] == "pending" and {"g1", "g2"} <= sent


@pytest.mark.parametrize(
    "case, row, column",
    [
        ("null cell", "b1,2026-11-20,,daily\n", "name"),
        ("empty quoted cell", 'b1,2026-11-20,"",daily\n', "name"),
        ("whitespace-only cell", "b1,2026-11-20,Aspirin,   \n", "notes"),
        ("tab and newline only", 'b1,2026-11-20,Aspirin,"\t\n"\n', "notes"),
        ("missing key", ",2026-11-20,Aspirin,daily\n", "id"),
    ],
)
def test_missing_values_reject_the_row_naming_the_column(tmp_path, case, row, column):
    rows, lines = build(tmp_path, GOOD + row)
    bad = next(r for r in rows.values() if r["status"] == "rejected")
    assert bad["error_code"] == "missing_value" and f"column '{column}'" in bad["error_message"], case
    assert flows(rows, lines)


def test_a_5_mb_cell_is_rejected_naming_the_column(tmp_path):
    rows, lines = build(tmp_path, GOOD + "big,2026-11-20,Aspirin," + "x" * 5_000_000 + "\n")
    assert rows["big"]["error_code"] == "input_too_long"
    assert "column 'notes' (5,000,000 characters)" in rows["big"]["error_message"]
    assert flows(rows, lines)


def test_a_row_over_the_prompt_budget_is_rejected(tmp_path):
    rows, lines = build(tmp_path, GOOD + "long,2026-11-20,Aspirin," + "word " * 400 + "\n", max_prompt_chars=1000)
    assert rows["long"]["error_code"] == "input_too_long" and "limit of 1,000" in rows["long"]["error_message"]
    assert flows(rows, lines)


def test_duplicate_keys_keep_the_first_row_and_name_the_column(tmp_path):
    rows_csv = GOOD + "g1,2026-11-20,Other,dup\n"
    path = tmp_path / "t.csv"
    path.write_text("id,day,name,notes\n" + rows_csv)
    source = CsvSource(path=path, key="id", partition_column="day")
    built = build_requests(read_partition(source, DAY), source,
                           BatchSpec(name="corpus", model="gpt-4o-mini", prompt="{name}: {notes}"))
    index = built.index.to_pylist()
    assert [r["status"] for r in index] == ["pending", "pending", "rejected"]
    assert "column 'id' repeats a key" in index[2]["error_message"]
    assert len({r["custom_id"] for r in index}) == 3


@pytest.mark.parametrize(
    "value",
    ["{notes}", "{{doubled}}", "}{", "{0}", "%s %(x)s", "${HOME}", "{{ jinja }}", "<script>alert(1)</script>"],
)
def test_template_syntax_in_data_is_sent_verbatim(tmp_path, value):
    rows, lines = build(tmp_path, GOOD + f'odd,2026-11-20,"{value}",daily\n')
    line = next(x for x in lines if x["custom_id"] == "odd")
    assert line["body"]["messages"][0]["content"] == f"{value}: daily"
    assert flows(rows, lines)


def test_unicode_emoji_control_characters_and_numbers_flow(tmp_path):
    body = GOOD + 'u1,2026-11-20,Ünïcödé 💊 药,"zero\x00width\u200b, RTL \u202e"\n' + "n1,2026-11-20,42,3.5e10\n"
    rows, lines = build(tmp_path, body)
    contents = {x["custom_id"]: x["body"]["messages"][0]["content"] for x in lines}
    assert contents["u1"].startswith("Ünïcödé 💊 药: zero\x00width") and contents["n1"] == "42: 3.5e10"
    assert flows(rows, lines)


def test_keys_that_are_not_portable_get_hashed_custom_ids(tmp_path):
    body = GOOD + "a key with spaces/and:colons,2026-11-20,X,y\n" + "k" * 100 + ",2026-11-20,X,y\n"
    rows, lines = build(tmp_path, body)
    assert all(PORTABLE.fullmatch(line["custom_id"]) for line in lines) and len(lines) == 4


def test_a_malformed_csv_line_is_rejected_naming_the_line(tmp_path):
    rows, lines = build(tmp_path, GOOD + "bad,2026-11-20,too,many,fields,here\n")
    assert rows["bad"]["error_code"] == "malformed_row"
    assert "malformed CSV line 'bad,2026-11-20,too,many" in rows["bad"]["error_message"]
    assert "expected 4 fields, got 6" in rows["bad"]["error_message"]
    assert flows(rows, lines)


def test_a_byte_order_mark_does_not_hide_the_key_column(tmp_path):
    rows, lines = build(tmp_path, GOOD, header="\ufeffid,day,name,notes")
    assert flows(rows, lines)


def test_an_empty_table_gives_no_requests_and_no_error(tmp_path):
    rows, lines = build(tmp_path, "")
    assert rows == {} and lines == []


def test_an_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("")
    with pytest.raises(ValueError, match="is empty: it has no header line"):
        read_partition(CsvSource(path=path, key="id", partition_column="day"), DAY)


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,day,name,notes\n" + "x,2026-11-20,caf\xe9,y\n".encode("latin-1"))
    with pytest.raises(ValueError, match="t.csv"):
        source = CsvSource(path=path, key="id", partition_column="day")
        build_requests(read_partition(source, DAY), source,
                       BatchSpec(name="corpus", model="gpt-4o-mini", prompt="{name}: {notes}"))


@pytest.mark.parametrize(
    "header, prompt, match",
    [
        ("id,day,name,notes", "{nmae}: {notes}", "column 'nmae' is not in CSV file '.*t.csv'.*did you mean 'name'"),
        ("key,day,name,notes", "{name}", "column 'id' is not in CSV file "),
    ],
)
def test_spec_columns_missing_from_the_table_fail_naming_them(tmp_path, header, prompt, match):
    with pytest.raises(SpecError, match=match):
        build(tmp_path, "g1,2026-11-20,A,b\n", header=header, prompt=prompt)


def test_a_missing_partition_column_fails_naming_it(tmp_path):
    with pytest.raises(ValueError, match="no partition column 'day'"):
        build(tmp_path, "g1,A,b\n", header="id,name,notes")


class Clashing(BaseModel):
    status: str


class Unusable(BaseModel):
    anything: dict[str, Any] | int


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"endpoint": "/v1/images/edits"}, "endpoint '/v1/images/edits' is not supported"),
        ({"response_model": Clashing}, r"fields \['status'\] clash with result columns"),
        ({"response_model": Unusable}, "cannot be used as a strict response schema"),
        ({"prompt": "{drug name}"}, "must be a bare column name"),
        ({"parameters": {"stream": True}}, "may not set \\['stream'\\]"),
        ({"endpoint": "/v1/embeddings", "parameters": {"dimensions": 8}, "response_model": Clashing},
         "embeddings take no response_model"),
        ({"endpoint": "/v1/embeddings"}, "embeddings need parameters"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
    ],
)
def test_bad_specs_fail_when_the_use_case_is_declared(spec, match):
    with pytest.raises(SpecError, match=match):
        BatchSpec(**{"name": "corpus", "model": "gpt-4o-mini", "prompt": "{name}", **spec})


def test_a_key_column_named_like_a_result_column_is_refused(tmp_path):
    import dagster as dg

    with pytest.raises(SpecError, match="key column 'status' clashes with a result column"):
        UseCase(spec=BatchSpec(name="corpus", model="gpt-4o-mini", prompt="{name}"),
                source=CsvSource(path=tmp_path / "t.csv", key="status", partition_column="day"),
                partitions_def=dg.DailyPartitionsDefinition(start_date=DAY))


@pytest.mark.parametrize("header", ["id,name\n", "id,day\n"])
def test_missing_partition_or_template_column_is_named(tmp_path, header):
    csv = tmp_path / "t.csv"
    csv.write_text(header + "a,b\n")
    source = CsvSource(path=csv, key="id", partition_column="day")
    spec = BatchSpec(name="s", model="m", prompt="{name}")
    with pytest.raises((ValueError, SpecError), match="'(day|name)'"):
        build_requests(read_partition(source, "b"), source, spec)
