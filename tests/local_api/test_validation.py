"""Bad input files: accepted at create, then validating -> failed with line-level errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pyarrow as pa
import pytest

from batch_pipeline.harvest.lines import BatchOutcome, assemble, batch_lines, retryable
from batch_pipeline.local_api import LocalAPISettings, embedded_client
from batch_pipeline.provider.openai_results import parse_results
from tests.local_api.conftest import ServerProcess, launch
from tests.local_api.support import chat_line, jsonl, read_jsonl, submit, wait_terminal

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
    "unserved model": ("/v1/chat/completions", [chat_line("a", model="nonexistent-model-xyz"),
                                                chat_line("b", model="nonexistent-model-xyz")],
                       [("model_not_found", 1, "body.model"), ("model_not_found", 2, "body.model")]),
    "streaming": ("/v1/chat/completions", [chat_line("a", stream=True)], [("streaming_unsupported", 1, "body.stream")]),
    "missing model and messages": ("/v1/chat/completions",
                                   [{**chat_line("a"), "body": {"messages": []}},
                                    {**chat_line("b"), "body": {"model": "gpt-4o-mini"}}],
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


def test_unserved_model_message_says_batch_api(client: openai.OpenAI) -> None:
    batch = wait_terminal(client, submit(client, [chat_line("a", model="nonexistent-model-xyz")]))
    [error] = batch.errors.data
    assert (error.code, error.line, error.param) == ("model_not_found", 1, "body.model")
    assert error.message == "The provided model 'nonexistent-model-xyz' is not supported by the Batch API."


def test_served_models_are_configurable(tmp_path: Path) -> None:
    narrow = embedded_client(tmp_path / "narrow", settings=LocalAPISettings(pace_seconds=0.02,
                                                                           served_models=["house-model-7b"]))
    assert wait_terminal(narrow, submit(narrow, [chat_line("a", model="house-model-7b")])).status == "completed"
    refused = wait_terminal(narrow, submit(narrow, [chat_line("a")]))
    assert [e.code for e in refused.errors.data] == ["model_not_found"]
    anything = embedded_client(tmp_path / "any", settings=LocalAPISettings(pace_seconds=0.02, served_models=["*"]))
    assert wait_terminal(anything, submit(anything, [chat_line("a", model="m")])).status == "completed"


INVALID_BODIES = {  # custom_id -> (messages or extra body, expected param, expected code)
    "unknown-role": ({"messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role", "invalid_value"),
    "no-content": ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    "content-type": ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content", "invalid_type"),
    "tokens-type": ({"max_tokens": "ten"}, "max_tokens", "invalid_type"),
    "temperature": ({"temperature": 3}, "temperature", "decimal_above_max_value"),
}


def _invalid_body_batch(client: openai.OpenAI) -> tuple[Any, list[dict[str, Any]]]:
    lines = [chat_line("good-1")]
    for custom_id, (body, _, _) in INVALID_BODIES.items():
        line = chat_line(custom_id)
        line["body"].update(body)
        lines.append(line)
    lines.append(chat_line("good-2"))
    batch = wait_terminal(client, submit(client, lines))
    return batch, read_jsonl(client, batch.error_file_id)


@pytest.fixture(params=["embedded", "http"])
def unlimited_client(request: pytest.FixtureRequest, tmp_path: Path) -> openai.OpenAI:
    """A client without this module's small limits, for batches of several lines."""
    if request.param == "embedded":
        return embedded_client(tmp_path, settings=LocalAPISettings(pace_seconds=0.02))
    return request.getfixturevalue("shared_server").client()


def test_invalid_bodies_fail_alone_with_a_400(unlimited_client: openai.OpenAI) -> None:
    """As on OpenAI: the batch completes; each bad request has a 400 line naming its field."""
    client = unlimited_client
    batch, errors = _invalid_body_batch(client)
    assert batch.status == "completed" and batch.errors is None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (7, 2, 5)
    outputs = read_jsonl(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == ["good-1", "good-2"]
    assert {line["custom_id"] for line in errors} == set(INVALID_BODIES)
    for line in errors:
        _, param, code = INVALID_BODIES[line["custom_id"]]
        assert line["error"] is None and line["response"]["status_code"] == 400
        error = line["response"]["body"]["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
        assert param.split(".")[-1].split("[")[0] in error["message"]


def test_invalid_bodies_are_harvested_as_failed_and_not_retried(tmp_path: Path) -> None:
    """The pipeline's harvest keeps the provider's reason and never retries a 400."""
    client = embedded_client(tmp_path, settings=LocalAPISettings(pace_seconds=0.02))
    batch, _ = _invalid_body_batch(client)
    raw = [client.files.content(batch.output_file_id).content, client.files.content(batch.error_file_id).content]
    ids = ["good-1", *INVALID_BODIES, "good-2"]
    lines = batch_lines(BatchOutcome(batch.id, batch.status), 1, ids, parse_results(raw))
    index = pa.table({"id": ids, "custom_id": ids, "status": ["pending"] * len(ids),
                      "error_code": pa.nulls(len(ids), pa.string()), "error_message": pa.nulls(len(ids), pa.string())})
    rows = {r["custom_id"]: r for r in assemble(index, ["id"], lines, {}).to_pylist()}
    for custom_id, (_, param, code) in INVALID_BODIES.items():
        assert rows[custom_id]["status"] == "failed" and rows[custom_id]["error_code"] == code
        assert param.split(".")[-1].split("[")[0] in rows[custom_id]["error_message"]
    assert rows["good-1"]["status"] == rows["good-2"]["status"] == "succeeded"
    assert retryable(assemble(index, ["id"], lines, {}), max_attempts=3) == []


def test_invalid_endpoint_lists_the_supported_values(client: openai.OpenAI) -> None:
    file_id = client.files.create(file=("in.jsonl", jsonl([chat_line("a")])), purpose="batch").id
    with pytest.raises(openai.BadRequestError) as error:
        client.batches.create(input_file_id=file_id, endpoint="/v1/invalid/endpoint",  # type: ignore[arg-type]
                              completion_window="24h")
    assert (error.value.status_code, error.value.code, error.value.param) == (400, "invalid_value", "endpoint")
    body = error.value.body
    assert isinstance(body, dict)
    assert body["message"].startswith("Invalid value: '/v1/invalid/endpoint'. Supported values are: ")
    for endpoint in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/moderations",
                     "/v1/responses"):
        assert f"'{endpoint}'" in body["message"]
    assert orjson.loads(orjson.dumps(body))["type"] == "invalid_request_error"
