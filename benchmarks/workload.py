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
from batch_pipeline.spec import SourceTable

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


def source_for(path: Path) -> SourceTable:
    return SourceTable(path=path, key="medication_id", partition_column="list_date")


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
