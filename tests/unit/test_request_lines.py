import numpy as np
import orjson
import pyarrow as pa
import pytest
import xxhash

from batch_pipeline.requests.lines import build_requests
from batch_pipeline.sources.csv_source import CsvSource
from batch_pipeline.spec import BatchSpec, SpecError

SOURCE = CsvSource(path="/t.csv", key="id", partition_column="day")
SPEC = BatchSpec(name="leaflets", model="gpt-4o-mini", system_prompt="Be kind.", prompt="About {name}: {notes}",
                 parameters={"max_tokens": 50}, max_prompt_chars=200)


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in ("id", "day", "name", "notes")]))


def lines(built) -> list[dict]:
    return [orjson.loads(line) for shard in built.shards for line in shard.splitlines()]


def test_each_row_becomes_one_request_line():
    built = build_requests(table([{"id": "a", "day": "d", "name": "Aspirin", "notes": "{not a field}"}]), SOURCE, SPEC)
    [line] = lines(built)
    assert line == {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "Be kind."},
                         {"role": "user", "content": "About Aspirin: {not a field}"}],
            "max_tokens": 50,
        },
    }
    assert built.index.to_pylist() == [
        {"id": "a", "custom_id": "a", "shard": 0, "status": "pending", "error_code": None, "error_message": None,
         "estimated_input_tokens": 21, "request_hash": xxhash.xxh3_128_digest(built.shards[0])}
    ]


def test_unusable_rows_are_rejected_naming_the_column_and_the_rest_flow():
    rows = [
        {"id": "ok", "day": "d", "name": "Aspirin", "notes": "daily"},
        {"id": "no-name", "day": "d", "name": None, "notes": "daily"},
        {"id": "blank", "day": "d", "name": "X", "notes": "   "},
        {"id": None, "day": "d", "name": "X", "notes": "n"},
        {"id": "ok", "day": "d", "name": "Again", "notes": "dup"},
        {"id": "long", "day": "d", "name": "X", "notes": "y" * 500},
        {"id": "emoji 🎉", "day": "d", "name": "Ünïcode 💊", "notes": "fine"},
    ]
    built = build_requests(table(rows), SOURCE, SPEC)
    index = built.index.to_pylist()
    assert [r["status"] for r in index] == ["pending"] + ["rejected"] * 5 + ["pending"]
    reasons = [r["error_message"] for r in index]
    assert "column 'name' is empty" in reasons[1]
    assert "column 'notes' is empty" in reasons[2]
    assert "column 'id'" in reasons[3]
    assert "column 'id' repeats a key" in reasons[4]
    assert "column 'notes'" in reasons[5] and "limit of 200" in reasons[5]
    assert len({r["custom_id"] for r in index}) == len(rows)
    assert [line["custom_id"] for line in lines(built)] == [index[0]["custom_id"], index[6]["custom_id"]]
    assert lines(built)[1]["body"]["messages"][1]["content"] == "About Ünïcode 💊: fine"


def test_missing_column_fails_naming_the_column_and_the_spec():
    bad = BatchSpec(name="leaflets", model="m", prompt="{nmae}")
    with pytest.raises(SpecError, match="spec 'leaflets': column 'nmae' .* did you mean 'name'"):
        build_requests(table([{"id": "a", "day": "d", "name": "x", "notes": "y"}]), SOURCE, bad)


def test_shards_respect_line_and_byte_limits():
    rows = [{"id": f"r{i}", "day": "d", "name": "n" * 20, "notes": "x"} for i in range(10)]
    by_count = build_requests(table(rows), SOURCE,
                              BatchSpec(name="s", model="m", prompt="{name}", max_requests_per_shard=3))
    assert [s.count(b"\n") for s in by_count.shards] == [3, 3, 3, 1]
    line_bytes = len(by_count.shards[0].splitlines(keepends=True)[0])
    by_bytes = build_requests(table(rows), SOURCE,
                              BatchSpec(name="s", model="m", prompt="{name}", max_shard_bytes=2 * line_bytes + 1))
    assert all(len(s) <= 2 * line_bytes + 1 for s in by_bytes.shards)
    assert sum(s.count(b"\n") for s in by_bytes.shards) == 10
    assert by_bytes.index["shard"].to_pylist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_empty_partition_builds_nothing():
    built = build_requests(table([]), SOURCE, SPEC)
    assert built.shards == [] and built.index.num_rows == 0


def test_line_custom_id_reads_the_id_without_parsing():
    from batch_pipeline.requests.lines import line_custom_id

    keys = ["plain-1", "with space", "ünï 💊", "x" * 80]
    built = build_requests(table([{"id": k, "day": "d", "name": "n", "notes": "m"} for k in keys]), SOURCE, SPEC)
    lines = [line for shard in built.shards for line in shard.splitlines()]
    assert [line_custom_id(line) for line in lines] == [orjson.loads(line)["custom_id"] for line in lines]
    assert len(lines) == 4


def test_lines_are_what_orjson_writes_whatever_the_cells_hold():
    cells = ["plain", 'quote " and backslash \\', "tab\tnew\nline\r", "ctrl \x00\x01\x1f\x7f", "ünï 💊 \u2028", "{x}"]
    rows = [{"id": f"r{i}", "day": "d", "name": v, "notes": cells[-1 - i]} for i, v in enumerate(cells)]
    built = build_requests(table(rows), SOURCE, SPEC)
    raw = [line + b"\n" for shard in built.shards for line in shard.splitlines()]
    assert [orjson.dumps(orjson.loads(line), option=orjson.OPT_APPEND_NEWLINE) for line in raw] == raw
    assert [orjson.loads(line)["body"]["messages"][1]["content"] for line in raw] == [
        f"About {name}: {notes}" for name, notes in zip(cells, reversed(cells), strict=True)]


def test_a_key_repeated_in_a_later_chunk_is_rejected_with_its_own_custom_id():
    from batch_pipeline.requests.lines import stream_requests

    rows = [{"id": f"k{i}", "day": "d", "name": "n", "notes": "m"} for i in range(6)]
    rows += [{"id": "k1", "day": "d", "name": "again", "notes": "m"},
             {"id": "k7", "day": "d", "name": "n", "notes": "m"}]
    streamed = pa.concat_tables([index for index, _ in stream_requests(table(rows).to_batches(max_chunksize=3),
                                                                       SOURCE, SPEC)])
    whole = build_requests(table(rows), SOURCE, SPEC).index
    assert streamed.drop_columns(["shard"]).equals(whole.drop_columns(["shard"]))
    assert streamed["status"].to_pylist() == ["pending"] * 6 + ["rejected", "pending"]
    assert streamed["error_code"][6].as_py() == "duplicate_key" and len(set(streamed["custom_id"].to_pylist())) == 8


@pytest.mark.parametrize("buckets", [1, 3, None])  # every key one hash, three hashes, DuckDB's own
def test_duplicate_keys_are_found_exactly_whatever_their_hashes(monkeypatch, buckets):
    """The key ledger keeps 64-bit hashes and compares keys only when hashes meet: keys that share
    a hash are still different keys, and a repeated key is rejected however far back the first."""
    from batch_pipeline.requests import lines as request_lines
    from batch_pipeline.requests.custom_ids import custom_id_for
    from batch_pipeline.requests.lines import stream_requests

    if buckets is not None:
        monkeypatch.setattr(request_lines._KeyLedger, "hashes",
                            lambda self, keys: np.array([xxhash.xxh3_64_intdigest(k.encode()) % buckets
                                                         for k in keys.to_pylist()], np.uint64))
    keys = [f"k{(i * 7919) % 53}" if i % 5 else f"k{i}" for i in range(400)] + ["", "k1 ", "k1"]
    rows = [{"id": key, "day": "d", "name": "n", "notes": "m"} for key in keys]
    index = pa.concat_tables([i for i, _ in stream_requests(table(rows).to_batches(max_chunksize=7), SOURCE, SPEC)])
    seen: set[str] = set()
    expected = []
    for key in keys:
        expected.append("missing_value" if not key.strip() else "duplicate_key" if key in seen else None)
        seen.add(key)
    assert index["error_code"].to_pylist() == expected
    ids = index["custom_id"].to_pylist()
    assert len(set(ids)) == len(ids)
    assert [i for i, e in zip(ids, expected, strict=True) if e is None] == [
        custom_id_for(k) for k, e in zip(keys, expected, strict=True) if e is None]
