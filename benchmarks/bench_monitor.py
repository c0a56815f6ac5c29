"""Monitoring cost: provider calls per sensor tick with N batches in flight, counted at the local
Batch API (every HTTP request that reaches it), beside per-batch polling (one retrieve per batch).

The tick is the sensor's own lookup (`sensor._batch_states` over `BatchGateway.batch_pages`).
Run alone: ``.venv/bin/python -m benchmarks.bench_monitor --batches 1 100 1000``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import openai
import orjson

from batch_pipeline.provider.gateway import BatchGateway
from batch_pipeline.local_api.app import build_app
from batch_pipeline.local_api.embedded import EMBEDDED_BASE_URL, EmbeddedTransport
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.dagster.sensor import _batch_states
from batch_pipeline.state.partition_state import PartitionState, Submission


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


def measure(counts: list[int], workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    result = {}
    for count in counts:
        client, app = counted_client(workdir / f"monitor-{count}")
        ids = in_flight(client, count)
        submissions = tuple(Submission(0, 1, "", b, "", "", "validating", 1, 0) for b in ids)
        watched = PartitionState("bench", "p", submissions, record_id=1, recorded_at=time.time())
        before = app.requests
        states = _batch_states(BatchGateway(client), [watched])
        assert states.keys() == set(ids), "the tick did not see every batch"
        tick = app.requests - before
        before = app.requests
        for batch_id in ids:
            client.batches.retrieve(batch_id)
        result[count] = {"tick": tick, "per_batch": app.requests - before}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.batches, Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
