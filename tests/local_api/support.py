"""Helpers shared by the local Batch API tests: request lines, uploads, polling."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Collection
from typing import Any

import openai
import orjson
from openai.types import Batch

from batch_pipeline.local_api import LocalAPISettings

TERMINAL = ("completed", "failed", "expired", "cancelled")
# Past validation and not terminal: the batch holds enqueued tokens and has not finished.
ACCEPTED = ("in_progress", "finalizing", "cancelling")
WAIT_SECONDS = 90.0  # generous: a loaded 2-core machine must never be the reason a test fails
FAST = LocalAPISettings(pace_seconds=0.05)


def chat_line(custom_id: str, text: str = "Explain how metformin helps with type 2 diabetes.",
              model: str = "gpt-4o-mini", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": text}], **body}}


def jsonl(lines: list[dict[str, Any]] | list[bytes]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines)


def upload(client: openai.OpenAI, lines: list[Any], name: str = "in.jsonl") -> str:
    return client.files.create(file=(name, jsonl(lines)), purpose="batch").id


def submit(client: openai.OpenAI, lines: list[Any], endpoint: str = "/v1/chat/completions",
           **kwargs: Any) -> str:
    file_id = upload(client, lines)
    return client.batches.create(input_file_id=file_id, endpoint=endpoint,  # type: ignore[arg-type]
                                 completion_window="24h", **kwargs).id


def wait_for(client: openai.OpenAI, batch_id: str, statuses: Collection[str], timeout: float = WAIT_SECONDS,
             condition: Callable[[Batch], bool] = lambda batch: True) -> Batch:
    """Poll until the batch is in one of ``statuses`` (and meets ``condition``); generous by default.

    Wait for every status that satisfies the test, never for one transient status: a loaded machine
    may poll late, and the local API catches a late poller up on every stage that came due.
    """
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses and condition(batch):
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {batch.status} {batch.request_counts} after {timeout}s, "
                                 f"waiting for {sorted(statuses)}")
        time.sleep(0.02)


def wait_terminal(client: openai.OpenAI, batch_id: str, timeout: float = WAIT_SECONDS) -> Batch:
    return wait_for(client, batch_id, TERMINAL, timeout)


def read_jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    return [orjson.loads(line) for line in client.files.content(file_id).content.splitlines() if line]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
