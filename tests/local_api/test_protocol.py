"""Files and batches endpoints through the unmodified openai client, embedded and over HTTP."""

from __future__ import annotations

import itertools

import openai
import orjson
import pytest

from tests.local_api.support import chat_line, jsonl, read_jsonl, submit, upload, wait_terminal

BATCH_FIELDS = {
    "id", "object", "endpoint", "model", "errors", "input_file_id", "completion_window", "status",
    "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at",
    "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at", "request_counts", "usage", "metadata",
}


def test_file_upload_retrieve_list_content_delete(client: openai.OpenAI) -> None:
    data = jsonl([chat_line("a"), chat_line("b")])
    created = client.files.create(file=("shard.jsonl", data), purpose="batch")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose, created.status) == (len(data), "shard.jsonl", "batch",
                                                                                   "processed")
    assert created.expires_at == created.created_at + 30 * 86400
    assert client.files.retrieve(created.id).model_dump() == created.model_dump()
    assert client.files.content(created.id).content == data
    with client.files.with_streaming_response.content(created.id) as response:
        assert b"".join(response.iter_bytes()) == data

    other = client.files.create(file=("notes.txt", b"hello"), purpose="user_data",
                                expires_after={"anchor": "created_at", "seconds": 3600})
    assert other.expires_at == other.created_at + 3600
    assert [f.id for f in client.files.list(limit=2).data] == [other.id, created.id]
    assert [f.id for f in client.files.list(order="asc")][-2:] == [created.id, other.id]
    assert client.files.list(purpose="batch").data[0].id == created.id
    assert other.id not in {f.id for f in client.files.list(purpose="batch")}
    page = client.files.list(limit=1)
    assert [f.id for f in page.data] == [other.id] and page.has_more
    assert [f.id for f in page.get_next_page().data] == [created.id]

    deleted = client.files.delete(other.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (other.id, True, "file")
    with pytest.raises(openai.NotFoundError) as error:
        client.files.retrieve(other.id)
    assert error.value.request_id and error.value.request_id.startswith("req_")
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-doesnotexist")


@pytest.mark.parametrize("file_id", ["../state.sqlite3", "..%2Fstate.sqlite3", "file-../../etc", "state.sqlite3"])
def test_file_ids_never_reach_outside_the_store(client: openai.OpenAI, file_id: str) -> None:
    with pytest.raises(openai.NotFoundError):
        client.files.content(file_id)


def test_bad_upload_parameters(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
    assert error.value.param == "purpose"
    with pytest.raises(openai.BadRequestError) as error:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 10})
    assert error.value.param == "expires_after.seconds"


def test_batch_lifecycle_and_output_format(client: openai.OpenAI) -> None:
    lines = [chat_line(f"row-{i}", f"Describe dosage notes for medication number {i}") for i in range(6)]
    file_id = upload(client, lines)
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"pipeline": "test", "partition": "2024-01-01"},
                                  output_expires_after={"anchor": "created_at", "seconds": 7200})
    raw = batch.model_dump()
    assert set(raw) == BATCH_FIELDS
    assert batch.status == "validating" and batch.errors is None and batch.output_file_id is None
    assert batch.expires_at == batch.created_at + 86400
    assert batch.request_counts is not None and batch.request_counts.total == 0
    assert batch.metadata == {"pipeline": "test", "partition": "2024-01-01"}

    # A late poll may find the batch already completed (each stage came due meanwhile), so the
    # stages it went through are read from its timestamps, not from the statuses a poll happened to see.
    batch = wait_terminal(client, batch.id)
    assert batch.status == "completed"
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.request_counts.model_dump() == {"total": 6, "completed": 6, "failed": 0}
    assert batch.model == "gpt-4o-mini" and batch.error_file_id is None
    assert batch.usage is not None and batch.usage.input_tokens > 0 and batch.usage.output_tokens > 0
    assert batch.usage.total_tokens == batch.usage.input_tokens + batch.usage.output_tokens

    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output" and output.expires_at == output.created_at + 7200
    results = read_jsonl(client, batch.output_file_id)
    assert sorted(r["custom_id"] for r in results) == sorted(line["custom_id"] for line in lines)
    for result in results:
        assert result["id"].startswith("batch_req_") and result["error"] is None
        response = result["response"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req_")
        body = response["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in results) == batch.usage.input_tokens


def test_same_request_same_answer(client: openai.OpenAI) -> None:
    lines = [chat_line("x", "Summarize warfarin interactions with vitamin K")]
    first = wait_terminal(client, submit(client, lines))
    second = wait_terminal(client, submit(client, lines))
    answers = [read_jsonl(client, b.output_file_id)[0]["response"]["body"]["choices"] for b in (first, second)]
    assert answers[0] == answers[1]
    assert "warfarin" in answers[0][0]["message"]["content"].lower()


def test_batch_list_pagination_newest_first(client: openai.OpenAI) -> None:
    file_id = upload(client, [chat_line("a")])
    ids = [client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                 completion_window="24h").id for _ in range(5)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert [b.id for b in client.batches.list(limit=5).data] == ids[::-1]
    # auto-paging follows the last id of each page
    assert [b.id for b in itertools.islice(client.batches.list(limit=2), 5)] == ids[::-1]
    assert client.batches.list(after=ids[1], limit=1).data[0].id == ids[0]
    with pytest.raises(openai.BadRequestError) as error:
        client.batches.list(limit=101)
    assert (error.value.param, error.value.code) == ("limit", "integer_above_max_value")
    with pytest.raises(openai.BadRequestError):
        client.batches.list(limit=0)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"endpoint": "/v1/invalid/endpoint"}, "endpoint"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"metadata": {"tags": ["a"]}}, "metadata.tags"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"output_expires_after": {"anchor": "created_at", "seconds": 60}}, "output_expires_after.seconds"),
    ],
)
def test_create_batch_rejects_bad_parameters(client: openai.OpenAI, kwargs: dict, param: str) -> None:
    file_id = upload(client, [chat_line("a")])
    arguments = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **kwargs}
    with pytest.raises(openai.BadRequestError) as error:
        client.batches.create(**arguments)
    assert error.value.param == param
    assert error.value.type == "invalid_request_error"


def test_unknown_ids_are_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        client.files.delete("file-doesnotexist")


def test_cancel_terminal_batch_is_409_without_retries(client: openai.OpenAI) -> None:
    batch = wait_terminal(client, submit(client, [chat_line("a")]))
    assert client.max_retries > 0  # the client would retry a 409, were it not told otherwise
    with pytest.raises(openai.ConflictError) as error:
        client.batches.cancel(batch.id)
    assert error.value.response.headers["x-should-retry"] == "false"
    # The client numbers its attempts: the request that raised is the first, so none was retried.
    assert error.value.response.request.headers["x-stainless-retry-count"] == "0"
    assert "completed" in error.value.message


def test_missing_input_file_fails_the_batch(client: openai.OpenAI) -> None:
    batch = client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert batch.status == "validating"
    batch = wait_terminal(client, batch.id)
    assert batch.status == "failed" and batch.failed_at
    assert batch.errors is not None and batch.errors.data is not None
    error = batch.errors.data[0]
    assert (error.code, error.param, error.line) == ("invalid_request", "file_id", None)


def test_unknown_route_uses_error_envelope(client: openai.OpenAI) -> None:
    response = client._client.get(str(client.base_url) + "nothing-here")
    assert response.status_code == 404
    assert set(orjson.loads(response.content)["error"]) == {"message", "type", "param", "code"}


def test_idempotency_key_repeats_the_first_batch_or_conflicts(client: openai.OpenAI) -> None:
    """llama-stack's extension (``extra_body={"idempotency_key": ...}``), not an OpenAI parameter."""
    file_id = upload(client, [chat_line("a")])
    create = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    first = client.batches.create(**create, metadata={"a": "1", "b": "2"},  # type: ignore[arg-type]
                                  extra_body={"idempotency_key": "k1"})
    again = client.batches.create(**create, metadata={"b": "2", "a": "1"},  # type: ignore[arg-type]
                                  extra_body={"idempotency_key": "k1"})
    assert (again.id, again.created_at) == (first.id, first.created_at)
    with pytest.raises(openai.ConflictError) as error:
        client.batches.create(**create, metadata={"a": "other"}, extra_body={"idempotency_key": "k1"})  # type: ignore[arg-type]
    assert error.value.param == "idempotency_key" and "conflict" in error.value.message.lower()
    assert error.value.response.request.headers["x-stainless-retry-count"] == "0"
    assert client.batches.create(**create).id != first.id  # type: ignore[arg-type]
