"""Injected faults: per-request errors, HTTP-level errors and timeouts, the enqueued-token limit."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from batch_pipeline.local_api import LocalAPISettings, embedded_client
from tests.local_api.conftest import MakeClient
from tests.local_api.support import (
    ACCEPTED,
    TERMINAL,
    chat_line,
    read_jsonl,
    submit,
    wait_for,
    wait_terminal,
)

LINES = [chat_line(f"row-{i}", f"Patient leaflet for medication {i}") for i in range(100)]
LINE_FAULTS = LocalAPISettings(pace_seconds=0.02, fault_seed=7, line_rate_limit_fraction=0.1,
                               line_server_error_fraction=0.1, line_invalid_request_fraction=0.1)


def _failed_ids(client: openai.OpenAI, batch_id: str) -> dict[str, int]:
    batch = wait_terminal(client, batch_id)
    assert batch.status == "completed"
    errors = read_jsonl(client, batch.error_file_id)
    assert len(errors) == batch.request_counts.failed
    assert len(read_jsonl(client, batch.output_file_id)) == batch.request_counts.completed
    return {e["custom_id"]: e["response"]["status_code"] for e in errors}


def test_per_request_faults_are_realistic_and_reproducible(make_client: MakeClient) -> None:
    client = make_client(LINE_FAULTS)
    batch_id = submit(client, LINES)
    failed = _failed_ids(client, batch_id)
    assert set(failed.values()) == {429, 500, 400}
    assert 15 <= len(failed) <= 45
    errors = {e["custom_id"]: e for e in read_jsonl(client, client.batches.retrieve(batch_id).error_file_id)}
    codes = {e["response"]["status_code"]: e["response"]["body"]["error"]["code"] for e in errors.values()}
    assert codes == {429: "rate_limit_exceeded", 500: "server_error", 400: "invalid_request_error"}
    assert all(e["error"] is None for e in errors.values())
    assert _failed_ids(client, submit(client, LINES)) == failed, "same seed and content, same failures"


def test_fault_seed_changes_the_draw(tmp_path: Path) -> None:
    first = embedded_client(tmp_path / "a", settings=LINE_FAULTS)
    other = embedded_client(tmp_path / "b", settings=LINE_FAULTS.model_copy(update={"fault_seed": 8}))
    assert _failed_ids(first, submit(first, LINES)) != _failed_ids(other, submit(other, LINES))


def test_every_request_failing_completes_without_output_file(make_client: MakeClient) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.02, line_server_error_fraction=1.0))
    batch = wait_terminal(client, submit(client, LINES[:5]))
    assert batch.status == "completed"
    assert batch.output_file_id is None and batch.error_file_id
    assert batch.request_counts.model_dump() == {"total": 5, "completed": 0, "failed": 5}


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [("api_rate_limit_fraction", openai.RateLimitError), ("api_server_error_fraction", openai.InternalServerError),
     ("api_overloaded_fraction", openai.InternalServerError)],
)
def test_http_level_faults(make_client: MakeClient, fault: str, error_class: type[Exception]) -> None:
    client = make_client(LocalAPISettings(**{fault: 1.0}), max_retries=0)
    with pytest.raises(error_class) as error:
        client.batches.list()
    assert isinstance(error.value, openai.APIStatusError) and error.value.request_id


def test_http_level_timeouts(make_client: MakeClient) -> None:
    # The error type is the proof: APITimeoutError is the client's own read timeout giving up on a
    # stalled call (a 408 from the server would be an APIStatusError). No wall-clock bound is asserted.
    client = make_client(LocalAPISettings(api_timeout_fraction=1.0, api_timeout_seconds=60), max_retries=0,
                         timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.files.list()


# Once validated, a batch of HOLD finalizes for an hour: it cannot finish while the test runs, so
# however late a loaded machine polls, the batches created after it validate against its tokens.
HOLD = LocalAPISettings(pace_seconds=0.2, finalizing_seconds=3600, enqueued_token_limit=1500)


def test_enqueued_token_limit_fails_new_batches_while_others_run(make_client: MakeClient) -> None:
    client = make_client(HOLD)
    running = submit(client, LINES[:60])
    # Validated means its tokens are enqueued; any status from there on will do, but not a terminal one.
    assert wait_for(client, running, (*ACCEPTED, *TERMINAL)).status in ACCEPTED
    blocked = submit(client, LINES[60:])
    other_model = submit(client, [chat_line("x", model="gpt-4o")])
    batch = wait_terminal(client, blocked)
    assert batch.status == "failed"
    assert [(e.code, e.line) for e in batch.errors.data] == [("token_limit_exceeded", None)]
    assert "Enqueued token limit reached for gpt-4o-mini" in batch.errors.data[0].message
    assert wait_for(client, other_model, (*ACCEPTED, *TERMINAL)).status in ACCEPTED, "another model's own limit"
    assert client.batches.retrieve(running).status in ACCEPTED


def test_enqueued_tokens_are_freed_when_a_batch_is_terminal(make_client: MakeClient) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.05, enqueued_token_limit=1500))
    first = wait_terminal(client, submit(client, LINES[:60]))
    assert first.status == "completed"
    second = wait_terminal(client, submit(client, LINES[60:]))
    assert second.status == "completed", "tokens freed when terminal"
    assert first.usage.input_tokens + second.usage.input_tokens > 1500, "together they are over the limit"
