"""The benchmark code at tiny sizes, so it keeps working; no timing is asserted anywhere."""

from __future__ import annotations

import importlib.util

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_pipeline.requests.lines import build_requests, shard_bytes, stream_requests
from batch_pipeline.sources.csv_source import read_partition, read_partition_batches
from batch_pipeline.warehouse.storage import Warehouse
from benchmarks import bench_harvest, bench_monitor, bench_requests, bench_sources, run
from benchmarks.workload import PARTITION, SPEC, row_batches, rows, source_for, write_source

HAS_PANDAS = importlib.util.find_spec("pandas") is not None


def test_streaming_build_equals_build_requests(tmp_path):
    source = source_for(write_source(tmp_path / "s.csv", 2_500))
    whole = build_requests(read_partition(source, PARTITION), source, SPEC)
    small = type(SPEC)(**{**SPEC.__dict__, "max_requests_per_shard": 700})
    parts = list(stream_requests(read_partition_batches(source, PARTITION, block_size=64 << 10), source, small))
    streamed = pa.concat_tables([index for index, _ in parts])
    estimated = ["shard", "estimated_input_tokens"]  # small chunks are counted, a big one sampled
    assert streamed.drop_columns(estimated).equals(whole.index.drop_columns(estimated))
    counted, sampled = (pc.sum(t["estimated_input_tokens"]).as_py() for t in (streamed, whole.index))
    assert abs(sampled - counted) / counted < 0.01
    shards = [shard_bytes(lines) for _, lines in parts if lines is not None]
    assert b"".join(shards) == b"".join(whole.shards)
    assert whole.rejected == 3 and [s.count(b"\n") for s in shards] == [700, 700, 700, 397]


def test_benchmarks_run_at_tiny_sizes(tmp_path):
    requests = bench_requests.measure(300, tmp_path / "r", with_naive=HAS_PANDAS)
    harvest = bench_harvest.measure(300, tmp_path / "h", with_naive=HAS_PANDAS)
    assert requests["ours"] > 0 and harvest["ours"] > 0
    folder = tmp_path / "h" / "harvest-300"
    whole = pq.read_table(tmp_path / "h" / "ours.parquet")
    assert whole.num_rows == 300 and set(whole["status"].to_pylist()) == {"succeeded", "failed", "rejected"}
    assert (folder / "requests" / "rows.parquet").exists()

    monitor = bench_monitor.measure([3], tmp_path / "m")
    assert (monitor[3]["tick"], monitor[3]["per_batch"]) == (1, 3)
    # organisation scale: 3 of ours under 300 newer batches of other teams
    monitor["foreign"] = foreign = bench_monitor.measure_foreign(300, 3, tmp_path / "m")
    assert foreign["tick"] <= 1 + 3 and foreign["pages"] == 4

    if HAS_PANDAS:
        memory = {"build": {100: 1.0, 300: 1.5}, "harvest": {100: 1.0, 300: 1.2}}
        text = run.render([300], [requests], [harvest], memory,
                          monitor, None, "smoke")
        assert "| 300 |" in text and "Monitoring cost" in text


def test_source_builders_at_tiny_sizes(tmp_path):
    """Parquet and DuckDB (and the CSV they are compared with) build the partition's requests:
    one index row per partition row, none of the next day's, and the same request lines."""
    generated = pa.Table.from_batches(list(row_batches(2_500, chunk=700)))  # column-wise `rows`
    assert [tuple(str(v) for v in r.values()) for r in generated.to_pylist()] == list(rows(2_500))
    count = 2_000
    rejected = sum(1 for i in range(count) if i % 997 == 5)  # workload.rows: 5, 1002 and 1999
    shards = {}
    for kind, source in bench_sources.sources(count, tmp_path / "s").items():
        built = bench_sources.build(bench_sources.use_case(source), tmp_path / f"wh-{kind}")
        assert built.rows == count, kind
        assert built.to_send == count - rejected, kind
        warehouse = Warehouse(tmp_path / f"wh-{kind}")
        shards[kind] = b"".join(warehouse.resolve(s).read_bytes() for s in built.shards)
        assert shards[kind].count(b"\n") == built.to_send, kind
    assert shards["parquet"] == shards["duckdb"] == shards["csv"]

    rates = bench_sources.measure(300, tmp_path / "m", kinds=("parquet", "duckdb"), repeat=1)
    assert rates["parquet"] > 0 and rates["duckdb"] > 0 and rates["floor"] > 0
    section = run.render_sources([rates], {100: 1.0, 300: 1.5}, "smoke")
    assert "| parquet " in section and "Peak memory by source size" in section
    text = run.replace_section("# Results\n\n## 5. Demo\n\nx\n", run.SOURCES_HEADING, section)
    again = run.replace_section(text, run.SOURCES_HEADING, section)
    assert again == text and text.startswith("# Results\n\n## 5. Demo\n\nx\n\n## 6.")


def test_estimate_section_renders():
    rows = [{"provider": "gemini", "use_case": "leaflets", "partition": p, "requests": 14, "actual": 0.0003,
             "prior": 0.0026, "estimate": estimate, "basis": basis}
            for p, estimate, basis in (("2026-11-20", 0.0026, "output tokens: 600/request, prior: max_tokens 600"),
                                       ("2026-11-21", 0.00036, "output tokens: 63/request, learned from 1 partition"))]
    section = run.render_estimate(rows, "smoke")
    assert "| gemini | leaflets | 2026-11-20 | 14 | $0.000300 | $0.002600 | 8.67 | 8.67 | prior" in section
    assert "| gemini | leaflets | 2026-11-21 | 14 | $0.000300 | $0.000360 | 1.20 | 8.67 | met |" in section
    assert section.startswith(run.ESTIMATE_HEADING)


def test_turnaround_section_renders():
    """The measurement itself needs `dagster dev` for minutes; tests/test_dagster_dev.py drives the
    same harness. Here: the section, each row against the no-op run of the same setup."""
    row = {"setup": "defaults", "noop": 10.0, "submit": 30.0, "materialize_all": 14.0}
    section = run.render_turnaround([row], "smoke")
    assert section.startswith(run.TURNAROUND_HEADING)
    assert "| defaults | 10.0 | 30.0 | 3.00 | 14.0 | 1.40 | met |" in section
