"""What real OpenAI clients rely on: every model id the SDK names served, JSON mode answered with a
JSON object, `.jsonl`-only batch uploads, and files gone once they expire (embedded and over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from batch_pipeline.local_api import embedded_client
from batch_pipeline.local_api.settings import DEFAULT_SERVED_MODELS
from tests.local_api.support import FAST, chat_line, read_jsonl, submit, upload, wait_terminal

SNAPSHOTS = ("gpt-4.1-2025-04-14", "gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-5-mini-2025-08-07",
             "o3-mini-2025-01-31")
HOUR = 3600


def test_dated_snapshots_are_served_by_default(client: openai.OpenAI) -> None:
    assert set(SNAPSHOTS) | {"text-embedding-3-small", "omni-moderation-latest"} <= set(DEFAULT_SERVED_MODELS)
    for model in SNAPSHOTS[:2]:
        batch = wait_terminal(client, submit(client, [chat_line("a", model=model)]))
        assert (batch.status, batch.model, batch.request_counts.completed) == ("completed", model, 1)


def test_served_model_flag_narrows_or_widens_the_default(tmp_path: Path) -> None:
    narrow = embedded_client(tmp_path / "narrow", settings=FAST.model_copy(update={"served_models": ["gpt-4o-mini"]}))
    refused = wait_terminal(narrow, submit(narrow, [chat_line("a", model=SNAPSHOTS[0])]))
    assert [e.code for e in refused.errors.data] == ["model_not_found"]
    wide = embedded_client(tmp_path / "wide",
                           settings=FAST.model_copy(update={"served_models": ["default", "house-model-7b"]}))
    for model in ("house-model-7b", SNAPSHOTS[0]):
        assert wait_terminal(wide, submit(wide, [chat_line("a", model=model)])).status == "completed"


def test_json_mode_answers_a_json_object(client: openai.OpenAI) -> None:
    example = 'Reply in JSON like {"sentiment": "positive", "score": 0.9, "tags": ["dosage"]}.'
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    json_mode = {"response_format": {"type": "json_object"}}
    lines = [
        chat_line("example", f"{example} Review: metformin worked well.", **json_mode),
        chat_line("schema", f"Answer as JSON matching this schema: {json.dumps(schema)}", **json_mode),
        chat_line("keys", "Answer in JSON with keys 'drug' and 'use'. Drug: warfarin.", **json_mode),
        chat_line("plain", "Summarise warfarin interactions as a JSON object.", **json_mode),
        chat_line("no-word", "Summarise warfarin interactions.", **json_mode),
    ]
    batch = wait_terminal(client, submit(client, lines))
    answers = {r["custom_id"]: json.loads(r["response"]["body"]["choices"][0]["message"]["content"])
               for r in read_jsonl(client, batch.output_file_id)}
    assert set(answers["example"]) == {"sentiment", "score", "tags"}
    assert isinstance(answers["example"]["score"], float) and isinstance(answers["example"]["tags"], list)
    assert set(answers["schema"]) == {"name", "age"} and isinstance(answers["schema"]["age"], int)
    assert set(answers["keys"]) == {"drug", "use"} and all(isinstance(v, str) for v in answers["keys"].values())
    assert set(answers["plain"]) == {"answer"}
    [refused] = read_jsonl(client, batch.error_file_id)
    assert (refused["custom_id"], refused["response"]["status_code"]) == ("no-word", 400)
    assert refused["response"]["body"]["error"]["message"] == (
        "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.")


def test_responses_json_mode(client: openai.OpenAI) -> None:
    line = {"custom_id": "r", "method": "POST", "url": "/v1/responses",
            "body": {"model": "gpt-4.1-2025-04-14", "input": "List aspirin's risks as JSON.",
                     "text": {"format": {"type": "json_object"}}}}
    batch = wait_terminal(client, submit(client, [line], endpoint="/v1/responses"))
    [result] = read_jsonl(client, batch.output_file_id)
    assert isinstance(json.loads(result["response"]["body"]["output"][0]["content"][0]["text"]), dict)


def test_batch_uploads_must_be_jsonl(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.files.create(file=("requests.txt", b'{"custom_id": "a"}\n'), purpose="batch")
    assert error.value.message.endswith("Invalid file format for Batch API. Must be .jsonl")
    assert (error.value.param, error.value.code, error.value.type) == (None, None, "invalid_request_error")
    assert client.files.create(file=("notes.txt", b"hello"), purpose="user_data").purpose == "user_data"
    assert client.files.create(file=b'{"custom_id": "a"}\n', purpose="batch").filename == "upload"  # nameless bytes


def test_files_are_gone_after_their_expiry(tmp_path: Path) -> None:
    """A second client on the same data dir whose file clock runs an hour ahead sees what the
    first one will see in an hour: no waiting on the wall clock."""
    now = embedded_client(tmp_path / "api", settings=FAST)
    short = now.files.create(file=("short.jsonl", b"{}\n"), purpose="batch",
                             expires_after={"anchor": "created_at", "seconds": HOUR})
    kept = upload(now, [chat_line("a")])
    batch = wait_terminal(now, submit(now, [chat_line("b")], output_expires_after={"anchor": "created_at",
                                                                                     "seconds": HOUR}))
    output = now.files.retrieve(batch.output_file_id)
    assert (short.expires_at, output.expires_at) == (short.created_at + HOUR, output.created_at + HOUR)

    later = embedded_client(tmp_path / "api", settings=FAST.model_copy(update={"file_clock_offset_seconds": HOUR}))
    for file_id in (short.id, output.id):
        for call in (later.files.retrieve, later.files.content, later.files.delete):
            with pytest.raises(openai.NotFoundError):
                call(file_id)
    listed = {f.id for f in later.files.list()}
    assert kept in listed and not listed & {short.id, output.id}
    assert now.files.retrieve(short.id).id == short.id  # not yet expired for the first client
