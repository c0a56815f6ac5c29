"""Synthetic, deterministic workloads for the benchmarks: a medications-like source table of N
rows, the patient-education spec that turns it into chat requests, and the provider output and
error files those requests would come back as. Nothing large is committed; rows are generated.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from assets import patient_education
from batch_pipeline.sources.csv_source import CsvSource

PARTITION = "2026-11-20"
COLUMNS = ("medication_id", "list_date", "name", "drug_class", "indication", "dosage_notes")
_NAMES = ("Metformin", "Lisinopril", "Atorvastatin", "Levothyroxine", "Amlodipine", "Omeprazole", "Warfarin",
          "Sertraline", "Albuterol", "Gabapentin", "Losartan", "Simvastatin", "Hydrochlorothiazide")
_CLASSES = ("Biguanide", "ACE inhibitor", "Statin", "Thyroid hormone", "Calcium channel blocker",
            "Proton pump inhibitor", "Anticoagulant", "SSRI", "Bronchodilator", "Anticonvulsant")
_INDICATIONS = ("Type 2 diabetes", "High blood pressure", "High cholesterol", "Hypothyroidism",
                "Acid reflux", "Atrial fibrillation", "Depression", "Asthma", "Nerve pain")
_NOTES = ("500 mg twice daily with meals; increase gradually to reduce stomach upset",
          "10 mg once daily; check kidney function and potassium after starting",
          "20 mg at bedtime; report unexplained muscle pain",
          "take on an empty stomach 30 minutes before breakfast",
          "dose adjusted to INR; avoid large changes in vitamin K intake",
          "1-2 puffs every 4-6 hours as needed for wheezing")

SPEC = patient_education.spec  # the shipped use case's spec, so the benchmark measures real requests


REPEAT = 3  # timings are the best of this many runs: this VM's timings vary by +-30% run to run


def timed(fn, *args, repeat: int = REPEAT) -> tuple[float, Any]:
    """(fewest seconds over `repeat` runs, what fn returned), as `timeit` reports."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - started)
    return best, result


def run_alone(measure, doc: str | None) -> None:
    """`python -m benchmarks.<name> --rows N`: one benchmark's figures as JSON."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.rows, Path(tmp)), indent=1))


def source_for(path: Path) -> CsvSource:
    return CsvSource(path=path, key="medication_id", partition_column="list_date")


def rows(count: int):
    """Source rows as tuples; every 997th row has an empty indication (a rejected row)."""
    for i in range(count):
        yield (
            f"MED-{i:07d}",
            PARTITION,
            f"{_NAMES[i % len(_NAMES)]} {i % 1000}",
            _CLASSES[i % len(_CLASSES)],
            "" if i % 997 == 5 else _INDICATIONS[(i // 7) % len(_INDICATIONS)],
            f"{_NOTES[i % len(_NOTES)]} (patient {i})",
        )


def write_source(path: Path, count: int) -> Path:
    """A CSV source table of `count` rows, one partition."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows(count))
    return path


def _ok_line(custom_id: str, i: int) -> bytes:
    return orjson.dumps({
        "id": f"batch_req_{i:08x}", "custom_id": custom_id, "error": None,
        "response": {"status_code": 200, "request_id": f"req_{i:08x}", "body": {
            "id": f"chatcmpl-{i:08x}", "object": "chat.completion", "created": 1_790_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
                "role": "assistant", "refusal": None,
                "content": f"What it does: helps with your condition ({i}). How to take it: as your "
                           "doctor told you. Common side effects: upset stomach, headache. When to get "
                           "help: call your doctor if you feel very unwell."}}],
            "usage": {"prompt_tokens": 80 + i % 17, "completion_tokens": 40 + i % 23, "total_tokens": 120 + i % 40},
            "system_fingerprint": "fp_local"}},
    }, option=orjson.OPT_APPEND_NEWLINE)


def _error_line(custom_id: str, i: int) -> bytes:
    return orjson.dumps({
        "id": f"batch_req_{i:08x}", "custom_id": custom_id, "error": None,
        "response": {"status_code": 429, "request_id": f"req_{i:08x}", "body": {"error": {
            "message": "Rate limit reached for requests", "type": "requests", "param": None,
            "code": "rate_limit_exceeded"}}},
    }, option=orjson.OPT_APPEND_NEWLINE)


def provider_files(custom_ids: list[str], shard_size: int = 50_000) -> list[tuple[bytes, bytes]]:
    """(output, error) JSONL per shard for the given requests, lines in reverse order (the
    provider does not keep input order); every 50th request failed with a 429."""
    files = []
    for start in range(0, len(custom_ids), shard_size):
        ok, failed = [], []
        for i in range(min(start + shard_size, len(custom_ids)) - 1, start - 1, -1):
            (failed if i % 50 == 3 else ok).append((_error_line if i % 50 == 3 else _ok_line)(custom_ids[i], i))
        files.append((b"".join(ok), b"".join(failed)))
    return files


# Sources other than CSV (benchmarks/bench_sources.py): the same rows, with `list_date` a date as
# a Parquet file or a database table holds it, followed by the next day's rows, which a daily
# partition's filter must leave out.
OTHER_PARTITION = "2026-11-21"
SOURCE_CHUNK_ROWS = 100_000  # rows generated at a time; also the Parquet files' row group size


def row_batches(count: int, day: str = PARTITION, chunk: int = SOURCE_CHUNK_ROWS):
    """`rows(count)` as Arrow record batches of `chunk` rows dated `day` (`list_date` a date32),
    built column-wise: the same cells as `rows`, fast enough for tens of millions of rows."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    date = pa.scalar(dt.date.fromisoformat(day), pa.date32())
    for start in range(0, count, chunk):
        i = np.arange(start, min(start + chunk, count), dtype=np.int64)
        text = pa.array(i).cast(pa.string())
        indication = pa.array(_INDICATIONS).take(pa.array((i // 7) % len(_INDICATIONS)))
        yield pa.record_batch({
            "medication_id": pc.binary_join_element_wise("MED-", pc.utf8_lpad(text, 7, "0"), ""),
            "list_date": pa.repeat(date, len(i)),
            "name": pc.binary_join_element_wise(pa.array(_NAMES).take(pa.array(i % len(_NAMES))),
                                                pa.array(i % 1000).cast(pa.string()), " "),
            "drug_class": pa.array(_CLASSES).take(pa.array(i % len(_CLASSES))),
            "indication": pc.if_else(pa.array(i % 997 == 5), "", indication),
            "dosage_notes": pc.binary_join_element_wise(pa.array(_NOTES).take(pa.array(i % len(_NOTES))),
                                                        " (patient ", text, ")", ""),
        })


def write_parquet_source(path: Path, count: int, other: int | None = None) -> Path:
    """A Parquet table: `count` rows of PARTITION, then `other` (default: as many) rows of
    OTHER_PARTITION, in row groups of SOURCE_CHUNK_ROWS rows."""
    import itertools

    import pyarrow.parquet as pq

    batches = itertools.chain(row_batches(count), row_batches(count if other is None else other, OTHER_PARTITION))
    first = next(batches)
    with pq.ParquetWriter(path, first.schema) as writer:
        for batch in itertools.chain([first], batches):
            writer.write_batch(batch, row_group_size=SOURCE_CHUNK_ROWS)
    return path


def write_duckdb_source(path: Path, parquet: Path, table: str = "medications") -> Path:
    """A DuckDB database file whose `table` holds the Parquet table's rows (list_date a DATE)."""
    import duckdb

    with duckdb.connect(str(path)) as connection:
        connection.execute("SET enable_progress_bar = false")
        connection.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet(?)", [str(parquet)])
    return path


def write_source_days(path: Path, count: int, other: int | None = None) -> Path:
    """`write_parquet_source`'s two days as a CSV, byte for byte as `write_source` writes rows."""
    import itertools

    import pyarrow.csv as pacsv

    # no cell holds a comma, a quote or a line break, so no cell needs quoting
    options = pacsv.WriteOptions(include_header=False, quoting_style="none", eol="\r\n")
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(COLUMNS)
    with path.open("ab") as f:
        for batch in itertools.chain(row_batches(count),
                                     row_batches(count if other is None else other, OTHER_PARTITION)):
            pacsv.write_csv(batch, f, options)
    return path
