"""Gemini Batch Mode and Files API through the unmodified ``google-genai`` SDK, embedded and served."""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
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


ORDER = (types.JobState.JOB_STATE_PENDING, types.JobState.JOB_STATE_RUNNING)


def wait_done(client: genai.Client, name: str, timeout: float = WAIT_SECONDS) -> types.BatchJob:
    """Poll until the job is in any terminal state (generous timeout, never one fixed sleep),
    checking on the way that the state only moves forward (PENDING, RUNNING, then one end)."""
    deadline, seen = time.monotonic() + timeout, 0
    while True:
        job = client.batches.get(name=name)
        if job.state in TERMINAL:
            assert job.end_time and job.create_time and job.update_time
            assert job.create_time <= job.update_time and job.create_time <= job.end_time
            return job
        assert job.state in ORDER and ORDER.index(job.state) >= seen, (ORDER[seen], job.state)
        seen = ORDER.index(job.state)
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
    # Each stage takes 10 s: the batch cannot finish before the cancel that follows its create.
    client = make_genai(LocalAPISettings(pace_seconds=10))
    job = client.batches.create(model="gemini-2.5-flash", src=[ask("cancel me")])
    client.batches.cancel(name=job.name or "")
    job = wait_done(client, job.name or "")
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    client.batches.delete(name=job.name or "")
    with pytest.raises(errors.ClientError) as missing:
        client.batches.get(name=job.name or "")
    assert missing.value.code == 404


def test_a_slow_finalizing_stage_stays_running(make_genai: MakeGenai) -> None:
    client = make_genai(LocalAPISettings(pace_seconds=0.05, finalizing_seconds=1.0))
    job = client.batches.create(model="gemini-2.5-flash", src=[ask("slow end")])
    done = wait_done(client, job.name or "")  # checks PENDING, RUNNING, then one end
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time and job.create_time
    # The engine stamps whole seconds: compare with the second of creation.
    assert (done.end_time - job.create_time.replace(microsecond=0)).total_seconds() >= 1.0


def test_a_batch_past_its_window_expires(make_genai: MakeGenai) -> None:
    client = make_genai(LocalAPISettings(pace_seconds=30, completion_window_seconds=0.3))
    job = wait_done(client, client.batches.create(model="gemini-2.5-flash", src=[ask("too slow")]).name or "")
    assert job.state == types.JobState.JOB_STATE_EXPIRED and job.dest is None


def test_per_request_faults_are_error_statuses(make_genai: MakeGenai) -> None:
    client = make_genai(LocalAPISettings(pace_seconds=0.05, line_rate_limit_fraction=0.34, fault_seed=1,
                                         line_server_error_fraction=0.33, line_overloaded_fraction=0.33))
    job = wait_done(client, client.batches.create(model="gemini-2.5-flash", src=[ask(f"q{i}") for i in range(12)]
                                                  ).name or "")
    responses = job.dest.inlined_responses if job.dest else None
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and responses and len(responses) == 12
    assert all(r.response is None and r.error and r.error.message for r in responses)
    # google.rpc codes: RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE
    assert {r.error.code for r in responses if r.error} == {8, 13, 14}


@pytest.mark.parametrize(("fault", "code", "status"), [("api_rate_limit_fraction", 429, "RESOURCE_EXHAUSTED"),
                                                      ("api_overloaded_fraction", 503, "UNAVAILABLE")])
def test_api_faults_are_google_errors(make_genai: MakeGenai, fault: str, code: int, status: str) -> None:
    client = make_genai(LocalAPISettings(**{fault: 1.0}))
    with pytest.raises(errors.APIError) as refused:
        client.batches.list()
    assert (refused.value.code, refused.value.status) == (code, status)


def test_an_invalid_request_fails_alone(make_genai: MakeGenai) -> None:
    client = make_genai(FAST)
    no_parts = {"contents": [{"role": "user"}], "metadata": {"row": "1"}}  # the SDK sends it; the API refuses it
    inline = client.batches.create(model="gemini-2.5-flash", src=[ask("fine", metadata={"row": "0"}), no_parts])
    lines = [orjson.dumps({"key": "good", "request": ask("fine")}), b"{not json",
             orjson.dumps({"key": "no-contents", "request": {"contents": []}})]
    uploaded = client.files.upload(file=io.BytesIO(b"\n".join(lines) + b"\n"),
                                   config={"mime_type": "application/jsonl"})
    from_file = client.batches.create(model="gemini-2.5-flash", src=uploaded.name or "")
    job = wait_done(client, inline.name or "")
    responses = job.dest.inlined_responses if job.dest else None
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and responses
    assert [r.metadata for r in responses] == [{"row": "0"}, {"row": "1"}]
    assert responses[0].response and responses[0].response.text and responses[0].error is None
    assert responses[1].response is None and responses[1].error and responses[1].error.code == 3  # INVALID_ARGUMENT
    job = wait_done(client, from_file.name or "")
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.dest and job.dest.file_name
    out = [orjson.loads(line) for line in client.files.download(file=job.dest.file_name).splitlines()]
    assert [(line.get("key"), "response" in line, line.get("error", {}).get("code")) for line in out] == [
        ("good", True, None), (None, False, 3), ("no-contents", False, 3)]
    assert "line 2" in out[1]["error"]["message"]


def test_limits_and_a_finished_cancel_are_refused(make_genai: MakeGenai) -> None:
    client = make_genai(LocalAPISettings(pace_seconds=0.05, gemini_max_inline_bytes=2000, gemini_max_file_bytes=100))
    with pytest.raises(errors.ClientError) as too_large:
        client.batches.create(model="gemini-2.5-flash", src=[ask("word " * 100) for _ in range(5)])
    assert (too_large.value.code, too_large.value.status) == (400, "INVALID_ARGUMENT")
    assert "payload size exceeds the limit: 2000 bytes" in (too_large.value.message or "")
    with pytest.raises(errors.ClientError) as too_big_file:
        client.files.upload(file=io.BytesIO(b"x" * 101), config={"mime_type": "application/jsonl"})
    assert too_big_file.value.code == 400
    assert not list(client.batches.list()) and not list(client.files.list())
    job = wait_done(client, client.batches.create(model="gemini-2.5-flash", src=[ask("hi")]).name or "")
    with pytest.raises(errors.ClientError) as finished:
        client.batches.cancel(name=job.name or "")
    assert (finished.value.code, finished.value.status) == (400, "FAILED_PRECONDITION")
    for call in (client.batches.get, client.batches.cancel, client.batches.delete):
        with pytest.raises(errors.ClientError) as missing:
            call(name="batches/doesnotexist")
        assert (missing.value.code, missing.value.status) == (404, "NOT_FOUND")


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
    assert all(v.response.token_count and v.response.token_count > 0 for v in vectors)  # type: ignore[union-attr]


def test_keys_then_openai_and_gemini_side_by_side_on_one_server(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--pace-seconds", "0.05", api_key=KEY)
    origin = server.base_url.removesuffix("/v1")
    # Held in names: a Client that is garbage-collected closes its HTTP client.
    wrong_key, right_key = served_client(origin, api_key="not-the-key"), served_client(origin)
    with pytest.raises(errors.ClientError) as wrong:
        wrong_key.batches.list()
    assert wrong.value.code == 400 and wrong.value.status == "INVALID_ARGUMENT"
    assert wrong.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    no_key = httpx2.get(f"{origin}/v1beta/batches")
    assert no_key.status_code == 403 and no_key.json()["error"]["status"] == "PERMISSION_DENIED"
    assert list(right_key.batches.list()) == []

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
    raw = httpx2.get(f"{server.base_url.removesuffix('/v1')}/v1beta/{jobs[0].name}", headers={"x-goog-api-key": KEY})
    operation = raw.json()  # what REST clients read and the SDK does not: done, batchStats, response
    assert raw.status_code == 200 and operation["done"] is True
    assert operation["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"  # the SDK shows JOB_STATE_SUCCEEDED
    assert operation["metadata"]["batchStats"] == {"requestCount": "1", "successfulRequestCount": "1",
                                                   "failedRequestCount": "0", "pendingRequestCount": "0"}
    assert operation["response"]["inlinedResponses"] == operation["metadata"]["output"]["inlinedResponses"]
