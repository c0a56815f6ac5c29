"""Harvest: provider output + error JSONL files to a Parquet table joined to the source rows, rows/s.

Beside it, in the same run: the naive baseline (`json.loads` per line into a pandas DataFrame,
then `merge` onto the request index and `to_parquet`), and the rate at which `pyarrow.json`
reads the same files (schema inference, no extraction, no join). Ours goes through the public
harvest functions the results asset uses (`batch_lines` per batch, then `assemble`).
Run alone: ``.venv/bin/python -m benchmarks.bench_harvest --rows 100000``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from assets import patient_education
from batch_pipeline.harvest.lines import RESULT_UNIQUE, BatchOutcome, batch_lines
from batch_pipeline.harvest.slices import assembled_slices
from batch_pipeline.provider.openai_results import parse_results
from batch_pipeline.warehouse.storage import Warehouse
from benchmarks.bench_requests import ours as build
from benchmarks.workload import provider_files, run_alone, timed, write_source

KEY = "medication_id"


def prepare(count: int, workdir: Path) -> Path:
    """Requests for `count` rows (index + shards) and the provider files answering them."""
    folder = workdir / f"harvest-{count}"
    build(write_source(workdir / f"source-{count}.csv", count), folder / "requests")
    index = pq.read_table(folder / "requests" / "rows.parquet")
    pending = index.filter(pc.equal(index["status"], "pending"))
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for shard, (output, error) in enumerate(provider_files(pending["custom_id"].to_pylist())):
        (raw / f"batch_{shard:05d}.output.jsonl").write_bytes(output)
        (raw / f"batch_{shard:05d}.error.jsonl").write_bytes(error)
    return folder


def ours(folder: Path, out: Path) -> int:
    """What the results asset does for one partition, through `results_run.assembled_slices`:
    one first-round shard's rows at a time, joined to that shard's lines (its raw files read
    as the results asset reads them, the next shard's meanwhile) and written as a row group."""
    index = pq.read_table(folder / "requests" / "rows.parquet")
    warehouse = Warehouse(out.parent)

    def first_round(shard: int, expected: pa.Array) -> pa.Table:
        raw = [folder / "raw" / f"batch_{shard:05d}.{kind}.jsonl" for kind in ("output", "error")]
        return batch_lines(BatchOutcome(f"batch_{shard:05d}", "completed"), 1, expected, parse_results(raw))

    rows = 0
    with warehouse.parquet_writer(warehouse.root / out.name, unique=RESULT_UNIQUE + (KEY,)) as write:
        for table in assembled_slices(index, patient_education.use_case, first_round, None):
            write(table)
            rows += table.num_rows
    return rows


def naive(folder: Path, out: Path) -> int:
    """json.loads per line into a DataFrame, merge onto the index, to_parquet."""
    import pandas as pd

    index = pd.read_parquet(folder / "requests" / "rows.parquet", columns=[KEY, "custom_id", "status"])
    records = []
    for path in sorted((folder / "raw").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for raw in f:
                if not raw.strip():
                    continue
                rec = json.loads(raw)
                response = rec.get("response") or {}
                body = response.get("body") or {}
                ok = 200 <= (response.get("status_code") or 0) < 300 and not rec.get("error")
                error = rec.get("error") or body.get("error") or {}
                usage = body.get("usage") or {}
                records.append({
                    "custom_id": rec["custom_id"], "result_status": "succeeded" if ok else "failed",
                    "output": body["choices"][0]["message"]["content"] if ok else None,
                    "error_code": None if ok else error.get("code"),
                    "error_message": None if ok else error.get("message"), "model": body.get("model"),
                    "input_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens"),
                })
    table = index.merge(pd.DataFrame(records), on="custom_id", how="left")
    table.to_parquet(out)
    return len(table)


def pyarrow_json(folder: Path) -> int:
    """pyarrow.json reading the same files (rows = lines read)."""
    rows = 0
    for path in sorted((folder / "raw").glob("*.jsonl")):
        data = path.read_bytes()
        if data.strip():
            rows += pajson.read_json(io.BytesIO(data)).num_rows
    return rows



def measure(count: int, workdir: Path, with_naive: bool = True) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    folder = prepare(count, workdir)
    result: dict = {"rows": count}
    (workdir / "warm-up").mkdir(exist_ok=True)
    ours(prepare(10, workdir / "warm-up"), workdir / "warm-up.parquet")  # DuckDB's JSON reader loads once
    seconds, n = timed(ours, folder, workdir / "ours.parquet")
    result["ours"] = n / seconds
    seconds, lines = timed(pyarrow_json, folder)
    result["pyarrow_json"] = lines / seconds
    if with_naive:
        seconds, n = timed(naive, folder, workdir / "naive.parquet")
        result["naive"] = n / seconds
    return result


if __name__ == "__main__":
    run_alone(measure, __doc__)
