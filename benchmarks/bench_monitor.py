"""Monitoring cost: provider calls per sensor tick, counted at the local Batch API (every HTTP
request that reaches it), beside per-batch polling (one retrieve per batch).

Two scenarios:
- N of our batches in flight, the newest at the provider (`--batches 1 100 1000`);
- organisation scale: 10 of ours in flight under 10,000 other batches created after them
  (`--foreign 10000`), the case where listing newest first would page through all of them.
The tick is the sensor's own lookup (`OpenAIBatchAPI.batches`).
Run alone: ``.venv/bin/python -m benchmarks.bench_monitor --batches 1 100 1000 --foreign 10000``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import openai
import orjson

from batch_pipeline.local_api.app import build_app
from batch_pipeline.local_api.embedded import EMBEDDED_BASE_URL, EmbeddedTransport
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.local_api.store import Store, new_batch_id
from batch_pipeline.provider.openai_api import OpenAIBatchAPI, OpenAIProvider


class CountingApp:
    """ASGI middleware counting the HTTP requests that reach the local Batch API."""

    def __init__(self, app) -> None:
        self.app, self.requests = app, 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


def counted_client(data_dir: Path) -> tuple[openai.OpenAI, CountingApp]:
    # A long pace keeps every batch in flight for the whole measurement.
    app = CountingApp(build_app(data_dir, api_key=None, settings=LocalAPISettings(pace_seconds=3600), offload=False))
    client = openai.OpenAI(api_key="local-batch-api", base_url=EMBEDDED_BASE_URL,
                           http_client=openai.DefaultHttpxClient(transport=EmbeddedTransport(app)))
    return client, app


def in_flight(client: openai.OpenAI, count: int) -> list[str]:
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}
    file_id = client.files.create(file=("in.jsonl", orjson.dumps(line) + b"\n"), purpose="batch").id
    return [client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                  completion_window="24h").id for _ in range(count)]


def seed_foreign_batches(data_dir: Path, count: int) -> None:
    """`count` completed batches of other teams, newer than anything before, written straight
    into the local Batch API's store (creating them one API call each takes minutes)."""
    now = int(time.time())
    rows = []
    for i in range(count):
        doc = {"id": new_batch_id(), "object": "batch", "endpoint": "/v1/chat/completions", "status": "completed",
               "input_file_id": "file-foreign", "completion_window": "24h", "created_at": now,
               "completed_at": now, "expires_at": now + 86400, "metadata": {"team": f"other-{i % 7}"},
               "request_counts": {"total": 1, "completed": 1, "failed": 0}}
        rows.append((doc["id"], "completed", orjson.dumps(doc), doc["endpoint"], "", now + 10**9, now + 10**9, None))
    with Store(data_dir).transaction() as conn:
        conn.executemany(
            "INSERT INTO batches (id, status, doc, endpoint, input_sha256, due_at, expires_ts, output_ttl)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def tick_calls(client: openai.OpenAI, app: CountingApp, ids: list[str]) -> dict:
    """Calls and seconds of one tick's lookup, and of polling each batch."""
    before, started = app.requests, time.perf_counter()
    states = OpenAIBatchAPI(OpenAIProvider(), client).batches(set(ids), since=time.time() - 60)
    tick, seconds = app.requests - before, time.perf_counter() - started
    assert states.keys() == set(ids), "the tick did not see every batch"
    before, started = app.requests, time.perf_counter()
    for batch_id in ids:
        client.batches.retrieve(batch_id)
    return {"tick": tick, "tick_seconds": round(seconds, 3), "per_batch": app.requests - before,
            "per_batch_seconds": round(time.perf_counter() - started, 3)}


def measure(counts: list[int], workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    result = {}
    for count in counts:
        client, app = counted_client(workdir / f"monitor-{count}")
        result[count] = tick_calls(client, app, in_flight(client, count))
    return result


def measure_foreign(foreign: int, ours: int, workdir: Path) -> dict:
    """Our batches in flight under `foreign` newer batches of the rest of the organisation."""
    client, app = counted_client(workdir / f"monitor-foreign-{foreign}")
    ids = in_flight(client, ours)
    seed_foreign_batches(workdir / f"monitor-foreign-{foreign}", foreign)
    before = app.requests
    listed = sum(1 for _ in OpenAIBatchAPI(OpenAIProvider(), client).pages())
    return {"foreign": foreign, "ours": ours, **tick_calls(client, app, ids),
            "list_everything": app.requests - before, "pages": listed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--foreign", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.batches, Path(tmp)), indent=1))
        print(json.dumps(measure_foreign(args.foreign, 10, Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
