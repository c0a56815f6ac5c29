"""Gemini Batch Mode and Files API through the unmodified ``google-genai`` SDK, embedded and served."""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from google import genai
from google.genai import errors, types

from batch_pipeline.local_api import LocalAPISettings
from batch_pipeline.local_api.embedded import embedded_genai_client
from tests.local_api.conftest import StartServer, ThreadedServer
from tests.local_api.support import FAST, WAIT_SECONDS, chat_line, submit, wait_for

TERMINAL = {types.JobState.JOB_STATE_SUCCEEDED, types.JobState.JOB_STATE_FAILED,
            types.JobState.JOB_STATE_CANCELLED, types.JobState.JOB_STATE_EXPIRED}
KEY = "gemini-local-key"
MakeGenai = Callable[[LocalAPISettings], genai.Client]


def served_client(origin: str, api_key: str = KEY, **options: Any) -> genai.Client:
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(base_url=origin, **options))


@pytest.fixture(params=["embedded", "http"])
def make_genai(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeGenai]:
    """``make_genai(settings)``: an embedded SDK client, or one for a fresh uvicorn server."""
    servers: list[ThreadedServer] = []

    def make(settings: LocalAPISettings) -> genai.Client:
        if request.param == "embedded":
            return embedded_genai_client(tmp_path / "embedded-data", settings=settings)
        servers.append(ThreadedServer(tmp_path / f"server-data-{len(servers)}", settings))
        return served_client(servers[-1].base_url.removesuffix("/v1"))

    yield make
    for server in servers:
        server.stop()


def wait_done(client: genai.Client, name: str, timeout: float = WAIT_SECONDS) -> types.BatchJob:
    """Poll until the job is in any terminal state (generous timeout, never one fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if job.state in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"{name} still {job.state} after {timeout}s"
        time.sleep(0.02)


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"contents": [{"parts": [{"text": text}], "role": "user"}], **extra}


def test_inline_batch_echoes_metadata_in_order(make_genai: MakeGenai) -> None:
    client = make_genai(FAST)
    src = [ask(f"Explain topic number {i} about whales", metadata={"row": str(i)}) for i in range(5)]
    job = client.batches.create(model="gemini-2.5-flash", src=src, config={"display_name": "inline-test"})
    assert job.state == types.JobState.JOB_STATE_PENDING and job.display_name == "inline-test"
    assert job.model == "models/gemini-2.5-flash"
    job = wait_done(client, job.name or "")
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.end_time is not None
    responses = job.dest.inlined_responses if job.dest else None
    assert responses is not None and [r.metadata for r in responses] == [{"row": str(i)} for i in range(5)]
    for response in responses:
        assert response.error is None and response.response is not None
        assert response.response.text and response.response.candidates
        assert response.response.candidates[0].finish_reason == types.FinishReason.STOP
        usage = response.response.usage_metadata
        assert usage and usage.prompt_token_count and usage.candidates_token_count
        assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count


def test_file_input_gives_a_responses_file_with_every_key(make_genai: MakeGenai) -> None:
    client = make_genai(FAST)
    keys = [f"req-{i}" for i in range(7)]
    data = b"".join(orjson.dumps({"key": key, "request": ask(f"Describe {key} briefly")}) + b"\n" for key in keys)
    uploaded = client.files.upload(file=io.BytesIO(data), config={"mime_type": "application/jsonl",
                                                                  "display_name": "input"})
    assert uploaded.size_bytes == len(data) and uploaded.state == types.FileState.ACTIVE
    assert client.files.get(name=uploaded.name or "").display_name == "input"
    job = wait_done(client, client.batches.create(model="gemini-2.5-pro", src=uploaded.name or "").name or "")
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.dest and job.dest.file_name
    lines = [orjson.loads(line) for line in client.files.download(file=job.dest.file_name).splitlines()]
    assert [line["key"] for line in lines] == keys
    assert all(line["response"]["candidates"][0]["content"]["parts"][0]["text"] for line in lines)
    client.files.delete(name=uploaded.name or "")
    with pytest.raises(errors.ClientError) as missing:
        client.files.get(name=uploaded.name or "")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"


def test_list_pages_through_every_batch(make_genai: MakeGenai) -> None:
    client = make_genai(FAST)
    names = {client.batches.create(model="gemini-2.0-flash", src=[ask(f"q{i}")]).name for i in range(5)}
    pager = client.batches.list(config={"page_size": 2})
    assert len(pager.page) == 2
    assert {job.name for job in pager} == names


def test_cancel_and_delete(make_genai: MakeGenai) -> None:
    client = make_genai(LocalAPISettings(pace_seconds=30))
    job = client.batches.create(model="gemini-2.5-flash", src=[ask("cancel me")])
    client.batches.cancel(name=job.name or "")
    job = wait_done(client, job.name or "")
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    client.batches.delete(name=job.name or "")
    with pytest.raises(errors.ClientError) as missing:
        client.batches.get(name=job.name or "")
    assert missing.value.code == 404


def test_a_batch_past_its_window_expires(make_genai: MakeGenai) -> None:
    client = make_genai(LocalAPISettings(pace_seconds=30, completion_window_seconds=0.3))
    job = wait_done(client, client.batches.create(model="gemini-2.5-flash", src=[ask("too slow")]).name or "")
    assert job.state == types.JobState.JOB_STATE_EXPIRED and job.dest is None


def test_per_request_faults_are_error_statuses(make_genai: MakeGenai) -> None:
    client = make_genai(LocalAPISettings(pace_seconds=0.05, line_rate_limit_fraction=0.5,
                                         line_server_error_fraction=0.5))
    job = wait_done(client, client.batches.create(model="gemini-2.5-flash", src=[ask(f"q{i}") for i in range(6)]
                                                  ).name or "")
    responses = job.dest.inlined_responses if job.dest else None
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and responses and len(responses) == 6
    assert all(r.response is None and r.error and r.error.code in (8, 13) for r in responses)


def test_unknown_model_is_404(make_genai: MakeGenai) -> None:
    client = make_genai(FAST)
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model="gemini-0-nonexistent", src=[ask("hi")])
    assert refused.value.code == 404 and refused.value.status == "NOT_FOUND"


def test_structured_output_follows_the_schema(make_genai: MakeGenai) -> None:
    client = make_genai(FAST)
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "score": {"type": "integer"},
                                               "tags": {"type": "array", "items": {"type": "string"}}},
              "required": ["name", "score", "tags"]}
    typed = types.Schema(type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)},
                         required=["city"])
    src = [ask("Rate this product", config={"response_mime_type": "application/json", "response_json_schema": schema}),
           ask("Name a city", config={"response_mime_type": "application/json", "response_schema": typed})]
    job = wait_done(client, client.batches.create(model="gemini-2.5-flash", src=src).name or "")
    responses = job.dest.inlined_responses if job.dest else None
    assert responses and all(r.response and r.response.text for r in responses)
    jsonschema.validate(orjson.loads(responses[0].response.text or ""), schema)  # type: ignore[union-attr]
    jsonschema.validate(orjson.loads(responses[1].response.text or ""),  # type: ignore[union-attr]
                        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def test_embedding_batches_give_vectors_of_the_asked_size(make_genai: MakeGenai) -> None:
    client = make_genai(FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK marks create_embeddings experimental
        job = client.batches.create_embeddings(
            model="gemini-embedding-001",
            src={"inlined_requests": {"contents": ["first text", "second text"],
                                      "config": {"output_dimensionality": 16}}})
    job = wait_done(client, job.name or "")
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.dest
    vectors = job.dest.inlined_embed_content_responses
    assert vectors and len(vectors) == 2
    assert all(len(v.response.embedding.values or []) == 16 for v in vectors)  # type: ignore[union-attr]


def test_keys_are_checked_as_google_does(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--pace-seconds", "0.05", api_key=KEY)
    origin = server.base_url.removesuffix("/v1")
    wrong_key, right_key = served_client(origin, api_key="not-the-key"), served_client(origin)
    with pytest.raises(errors.ClientError) as wrong:
        wrong_key.batches.list()
    assert wrong.value.code == 400 and wrong.value.status == "INVALID_ARGUMENT"
    assert wrong.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert list(right_key.batches.list()) == []


def test_openai_and_gemini_side_by_side_on_one_server(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--pace-seconds", "0.05", api_key=KEY)
    openai_client = server.client(api_key=KEY)
    gemini = served_client(server.base_url.removesuffix("/v1"))
    prefixed = served_client(server.base_url.removesuffix("/v1") + "/gemini", api_version="v1beta")
    openai_batch = submit(openai_client, [chat_line("a"), chat_line("b")])
    jobs = [client.batches.create(model="gemini-2.5-flash", src=[ask("side by side")]) for client in (gemini, prefixed)]
    gemini_file = gemini.files.upload(file=io.BytesIO(b"{}\n"), config={"mime_type": "application/jsonl"})
    assert wait_for(openai_client, openai_batch, {"completed"}).request_counts.completed == 2  # type: ignore[union-attr]
    assert [b.id for b in openai_client.batches.list()] == [openai_batch]
    assert {f.purpose for f in openai_client.files.list()} == {"batch", "batch_output"}
    assert {job.name for job in gemini.batches.list()} == {job.name for job in jobs}
    assert {f.name for f in prefixed.files.list()} == {gemini_file.name}
    assert all(wait_done(gemini, job.name or "").state == types.JobState.JOB_STATE_SUCCEEDED for job in jobs)


def test_state_survives_a_restart(start_server: StartServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(data, "--pace-seconds", "2", api_key=KEY)
    client = served_client(first.base_url.removesuffix("/v1"))
    uploaded = client.files.upload(file=io.BytesIO(orjson.dumps({"key": "only", "request": ask("persist")}) + b"\n"),
                                   config={"mime_type": "application/jsonl"})
    job = client.batches.create(model="gemini-2.5-flash", src=uploaded.name or "")
    first.stop()
    second = start_server(data, "--pace-seconds", "2", api_key=KEY)
    client = served_client(second.base_url.removesuffix("/v1"))
    assert client.files.get(name=uploaded.name or "").size_bytes == uploaded.size_bytes
    done = wait_done(client, job.name or "")
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.dest and done.dest.file_name
    assert orjson.loads(client.files.download(file=done.dest.file_name))["key"] == "only"
