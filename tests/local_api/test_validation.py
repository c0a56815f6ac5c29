"""Bad input files: accepted at create, then validating -> failed with line-level errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from batch_pipeline.local_api import LocalAPISettings, embedded_client
from tests.local_api.conftest import ServerProcess, launch
from tests.local_api.support import chat_line, jsonl, wait_terminal

LIMITS = {"max_requests_per_batch": 5, "max_batch_input_bytes": 3000, "max_embedding_inputs": 4,
          "max_upload_bytes": 20000}


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("limited")
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in LIMITS.items()]
    server = launch(folder / "data", folder, "--pace-seconds=0.02", *flags)
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "http"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> openai.OpenAI:
    if request.param == "embedded":
        return embedded_client(tmp_path, settings=LocalAPISettings(pace_seconds=0.02, **LIMITS))
    return request.getfixturevalue("limited_server").client()


def _embedding(custom_id: str, inputs: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": inputs}}


CASES: dict[str, tuple[str, list[Any], list[tuple[str, int | None, str | None]]]] = {
    "not json": ("/v1/chat/completions", [chat_line("a"), b"{not json", b"[1, 2]"],
                 [("invalid_json_line", 2, None), ("invalid_json_line", 3, None)]),
    "missing keys": ("/v1/chat/completions",
                     [{k: v for k, v in chat_line("a").items() if k != "custom_id"},
                      {k: v for k, v in chat_line("b").items() if k not in ("body", "method")}],
                     [("missing_required_parameter", 1, "custom_id"), ("missing_required_parameter", 2, "method"),
                      ("missing_required_parameter", 2, "body")]),
    "duplicate custom_id": ("/v1/chat/completions", [chat_line("a"), chat_line("b"), chat_line("a")],
                            [("duplicate_custom_id", 3, "custom_id")]),
    "url mismatch": ("/v1/chat/completions", [chat_line("a"), {**chat_line("b"), "url": "/v1/responses"}],
                     [("invalid_url", 2, "url")]),
    "mixed models": ("/v1/chat/completions", [chat_line("a"), chat_line("b", model="gpt-4o")],
                     [("model_mismatch", 2, "body.model")]),
    "streaming": ("/v1/chat/completions", [chat_line("a", stream=True)], [("streaming_unsupported", 1, "body.stream")]),
    "missing model and messages": ("/v1/chat/completions",
                                   [{**chat_line("a"), "body": {"messages": []}},
                                    {**chat_line("b"), "body": {"model": "m"}}],
                                   [("invalid_request", 1, "body.model"), ("invalid_request", 2, "body.messages")]),
    "too many lines": ("/v1/chat/completions", [chat_line(f"r{i}", "x") for i in range(6)],
                       [("too_many_tasks", None, None)]),
    "too many bytes": ("/v1/chat/completions", [chat_line(f"r{i}", "word " * 150) for i in range(4)],
                       [("file_too_large", None, None)]),
    "too many embedding inputs": ("/v1/embeddings", [_embedding("a", ["x", "y", "z"]), _embedding("b", ["u", "v"])],
                                  [("too_many_embedding_inputs", None, "body.input")]),
}


def test_invalid_files_fail_with_line_errors(client: openai.OpenAI) -> None:
    created = {}
    for name, (endpoint, lines, _) in CASES.items():
        file_id = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch").id
        created[name] = client.batches.create(input_file_id=file_id, endpoint=endpoint,  # type: ignore[arg-type]
                                              completion_window="24h")
        assert created[name].status == "validating"
    for name, (_, _, expected) in CASES.items():
        batch = wait_terminal(client, created[name].id)
        assert batch.status == "failed", name
        assert batch.failed_at and batch.in_progress_at is None and batch.output_file_id is None
        found = [(e.code, e.line, e.param) for e in batch.errors.data]
        assert found == expected, name
        assert all(e.message for e in batch.errors.data)


def test_upload_over_the_limit_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.files.create(file=("big.jsonl", b"x" * (LIMITS["max_upload_bytes"] + 1)), purpose="batch")
    assert error.value.param == "file"
    assert client.files.create(file=("ok.jsonl", b"x" * LIMITS["max_upload_bytes"]), purpose="batch").bytes == 20000


def test_input_file_must_have_purpose_batch(client: openai.OpenAI) -> None:
    file_id = client.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="user_data").id
    with pytest.raises(openai.BadRequestError) as error:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert error.value.param == "input_file_id"
