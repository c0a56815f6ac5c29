"""Throughput of the local Batch API: a 50,000-line chat shard from upload to a completed output file.

Baseline, measured in the same run: orjson encoding the same 50,000 request lines (the
cheapest thing any pipeline does with them). Goal from issue 3: the local API reaches at
least 0.3 of that rate. Run: ``.venv/bin/python benchmarks/bench_local_api.py [--lines N]``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson

from batch_pipeline.local_api import LocalAPISettings, embedded_client
from batch_pipeline.local_api.responders import respond

MEDICATIONS = ("metformin", "lisinopril", "atorvastatin", "levothyroxine", "amlodipine", "omeprazole", "warfarin")


def request_lines(count: int) -> list[dict[str, Any]]:
    return [{
        "custom_id": f"med-{i:06d}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "max_tokens": 300, "messages": [
            {"role": "system", "content": "You write clear patient education leaflets at a grade 6 reading level."},
            {"role": "user", "content": f"Write a leaflet for {MEDICATIONS[i % len(MEDICATIONS)]} (row {i}): what it"
                                        " treats, how to take it, common side effects and when to call a doctor."},
        ]},
    } for i in range(count)]


def orjson_baseline(lines: list[dict[str, Any]]) -> tuple[float, bytes]:
    started = time.perf_counter()
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    return time.perf_counter() - started, data


def upload_to_output(client: openai.OpenAI, data: bytes, poll: float) -> tuple[float, bytes, dict[str, float]]:
    """Seconds from upload to downloaded output, the output file, and seconds per stage (as
    the client sees them: upload, until validated, until completed, download)."""
    started = time.perf_counter()
    file_id = client.files.create(file=("shard.jsonl", data), purpose="batch").id
    stages = {"upload": time.perf_counter() - started}
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    mark = started + stages["upload"]
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(poll)
        batch = client.batches.retrieve(batch.id)
        if batch.status != "validating" and "validate" not in stages:
            stages["validate"] = time.perf_counter() - mark
            mark += stages["validate"]
    if batch.status != "completed" or not batch.output_file_id:
        raise SystemExit(f"batch ended {batch.status}: {batch.errors}")
    stages["run"] = time.perf_counter() - mark
    output = client.files.content(batch.output_file_id).content
    seconds = time.perf_counter() - started
    stages["download"] = seconds - sum(stages.values())
    return seconds, output, stages


def check_output(data: bytes, output: bytes, samples: int = 500) -> None:
    """Sampled result lines are byte for byte ``orjson.dumps`` of what ``respond`` answers (the
    API writes chat results from pre-encoded templates; this keeps them equal)."""
    requests, results = data.splitlines(), output.splitlines()
    assert len(requests) == len(results), (len(requests), len(results))
    for i in range(0, len(results), max(1, len(results) // samples)):
        got, request = orjson.loads(results[i]), orjson.loads(requests[i])
        status, body = respond(request["url"], request["body"])
        body["created"] = got["response"]["body"]["created"]
        expected = {"id": got["id"], "custom_id": request["custom_id"],
                    "response": {"status_code": status, "request_id": got["response"]["request_id"],
                                 "body": body}, "error": None}
        assert orjson.dumps(expected) == results[i], f"result line {i} differs from respond()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def served(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A server process with pace 0, so its background thread runs the batch flat out."""
    port = free_port()
    # The project CLI serves the local API (there is no ``python -m batch_pipeline.local_api``).
    process = subprocess.Popen([sys.executable, "-m", "batch_pipeline.cli", "local-api", "--port", str(port),
                                "--data-dir", str(data_dir), "--pace-seconds", "0"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            httpx2.get(base_url + "/files?limit=1", timeout=1)
            return process, base_url
        except httpx2.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("server did not start")


def _stages(stages: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=50_000)
    args = parser.parse_args()
    lines = request_lines(args.lines)
    baseline, data = orjson_baseline(lines)
    print(f"shard: {args.lines:,} lines, {len(data) / 1e6:.1f} MB")
    print(f"orjson encode (baseline): {baseline:8.3f} s  {args.lines / baseline:12,.0f} lines/s")
    with tempfile.TemporaryDirectory() as tmp:
        settings = LocalAPISettings(pace_seconds=0)
        seconds, output, stages = upload_to_output(embedded_client(Path(tmp) / "embedded", settings=settings),
                                                   data, 0.0)
        check_output(data, output)
        print(f"local API, embedded:      {seconds:8.3f} s  {args.lines / seconds:12,.0f} lines/s"
              f"  ratio to baseline {baseline / seconds:.3f}  ({_stages(stages)})")
        process, base_url = served(Path(tmp) / "served")
        try:
            client = openai.OpenAI(base_url=base_url, api_key="sk-local")
            seconds, output, stages = upload_to_output(client, data, 0.02)
            check_output(data, output)
            print(f"local API, served:        {seconds:8.3f} s  {args.lines / seconds:12,.0f} lines/s"
                  f"  ratio to baseline {baseline / seconds:.3f}  ({_stages(stages)})")
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
