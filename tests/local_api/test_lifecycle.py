"""Cancel, expiry and slow finalizing: partial results with every line accounted for."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import openai
from openai.types import Batch

from batch_pipeline.local_api import LocalAPISettings
from tests.local_api.conftest import MakeClient
from tests.local_api.support import chat_line, read_jsonl, submit, wait_terminal

LINES = [chat_line(f"row-{i}", f"Dosage notes for medication {i}") for i in range(60)]


def _wait_for(client: openai.OpenAI, batch_id: str, condition: Callable[[Batch], bool], timeout: float = 20.0
              ) -> Batch:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if condition(batch):
            return batch
        time.sleep(0.01)
    raise AssertionError(f"condition not met for {batch_id}: {batch.status} {batch.request_counts}")


def _accounted(client: openai.OpenAI, batch: Batch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    output, errors = read_jsonl(client, batch.output_file_id), read_jsonl(client, batch.error_file_id)
    ids = Counter(r["custom_id"] for r in output + errors)
    assert ids == Counter(line["custom_id"] for line in LINES), "every line in exactly one file"
    return output, errors


def test_cancel_in_progress_keeps_done_lines_and_cancels_the_rest(make_client: MakeClient) -> None:
    client = make_client(LocalAPISettings(pace_seconds=1.5))
    batch_id = submit(client, LINES)
    _wait_for(client, batch_id, lambda b: b.status == "in_progress" and 0 < b.request_counts.completed < 40)
    cancelling = client.batches.cancel(batch_id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    assert client.batches.cancel(batch_id).status in ("cancelling", "cancelled")  # idempotent
    batch = wait_terminal(client, batch_id)
    assert batch.status == "cancelled" and batch.cancelled_at and batch.completed_at is None
    output, errors = _accounted(client, batch)
    assert 0 < len(output) == batch.request_counts.completed < 60
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert all(e["response"] is None for e in errors)
    assert client.batches.cancel(batch_id).status == "cancelled"


def test_cancel_while_validating(make_client: MakeClient) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.5))
    batch_id = submit(client, LINES)
    assert client.batches.cancel(batch_id).status == "cancelling"
    batch = wait_terminal(client, batch_id)
    assert batch.status == "cancelled" and batch.output_file_id is None
    _, errors = _accounted(client, batch)
    assert len(errors) == 60


def test_expiry_keeps_done_lines_and_expires_the_rest(make_client: MakeClient) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.6, completion_window_seconds=1.0))
    batch_id = submit(client, LINES)
    batch = wait_terminal(client, batch_id)
    assert batch.status == "expired" and batch.expired_at
    assert batch.expires_at == batch.created_at + 1
    output, errors = _accounted(client, batch)
    assert 0 < len(output) < 60
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    assert errors[0]["error"]["message"] == "This request could not be executed before the completion window expired."


def test_slow_finalizing_shows_all_counted_but_not_done(make_client: MakeClient) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.02, finalizing_seconds=1.0))
    batch_id = submit(client, LINES[:5])
    batch = _wait_for(client, batch_id, lambda b: b.status == "finalizing")
    assert batch.request_counts.completed == 5 and batch.output_file_id is None
    started = time.monotonic()
    batch = wait_terminal(client, batch_id)
    assert batch.status == "completed" and time.monotonic() - started > 0.5
