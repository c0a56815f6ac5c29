"""Cancel, expiry and slow finalizing: partial results with every line accounted for."""

from __future__ import annotations

from collections import Counter
from typing import Any

import openai
from openai.types import Batch

from batch_pipeline.local_api import LocalAPISettings
from tests.local_api.conftest import MakeClient
from tests.local_api.support import TERMINAL, chat_line, read_jsonl, submit, wait_for, wait_terminal

LINES = [chat_line(f"row-{i}", f"Dosage notes for medication {i}") for i in range(60)]


def _accounted(client: openai.OpenAI, batch: Batch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    output, errors = read_jsonl(client, batch.output_file_id), read_jsonl(client, batch.error_file_id)
    ids = Counter(r["custom_id"] for r in output + errors)
    assert ids == Counter(line["custom_id"] for line in LINES), "every line in exactly one file"
    return output, errors


# Every stage lasts about ``pace_seconds``; the tests below need a batch to be in one stage when they
# act, so that stage lasts seconds (long beside any delay a loaded machine adds between two calls),
# and they wait for every status that could follow, failing at once with a clear message if the
# batch went past the stage instead of waiting out the timeout.


def test_cancel_in_progress_keeps_done_lines_and_cancels_the_rest(make_client: MakeClient) -> None:
    client = make_client(LocalAPISettings(pace_seconds=2.0))
    batch_id = submit(client, LINES)
    running = wait_for(client, batch_id, ("in_progress", "finalizing", *TERMINAL),
                       condition=lambda b: b.status != "in_progress" or b.request_counts.completed > 0)
    assert running.status == "in_progress", "the batch ran all its lines before the test could cancel it"
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
    client = make_client(LocalAPISettings(pace_seconds=2.0))  # validating lasts 2 s: one call away
    batch_id = submit(client, LINES)
    assert client.batches.cancel(batch_id).status == "cancelling"
    batch = wait_terminal(client, batch_id)
    assert batch.status == "cancelled" and batch.output_file_id is None
    assert batch.in_progress_at is None, "cancelled before it was validated"
    _, errors = _accounted(client, batch)
    assert len(errors) == 60


def test_expiry_keeps_done_lines_and_expires_the_rest(make_client: MakeClient) -> None:
    # Validated at 2 s, all lines run by 4 s, expired at 3.5 s: any look in the 1.5 s between
    # validation and expiry runs some lines, and a poll every 20 ms (or the served background
    # thread's every 100 ms) looks many times in it.
    client = make_client(LocalAPISettings(pace_seconds=2.0, completion_window_seconds=3.5))
    batch_id = submit(client, LINES)
    batch = wait_terminal(client, batch_id)
    assert batch.status == "expired" and batch.expired_at
    assert batch.expires_at == batch.created_at + 4
    output, errors = _accounted(client, batch)
    assert 0 < len(output) < 60
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    assert errors[0]["error"]["message"] == "This request could not be executed before the completion window expired."


def test_slow_finalizing_shows_all_counted_but_not_done(make_client: MakeClient) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.02, finalizing_seconds=2.5))
    batch_id = submit(client, LINES[:5])
    batch = wait_for(client, batch_id, ("finalizing", *TERMINAL))
    assert batch.status == "finalizing", "finalizing ended before the test looked"
    assert batch.request_counts.completed == 5 and batch.output_file_id is None
    batch = wait_terminal(client, batch_id)
    assert batch.status == "completed" and batch.output_file_id
    # The provider's own timestamps, not the test's clock (a lower bound, which load cannot break):
    # stages are scheduled from the previous stage's due time, so completion comes at least
    # finalizing_seconds (2.5 s) after creation.
    assert batch.completed_at >= batch.created_at + 2
