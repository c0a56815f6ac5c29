"""The deterministic responders: chat (n, max_tokens, json_schema), responses, embeddings, completions."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import jsonschema
import openai
import orjson
import pytest

from batch_pipeline.local_api.responders import respond
from tests.local_api.support import chat_line, read_jsonl, submit, wait_terminal

LEAFLET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "summary": {"type": "string", "minLength": 20},
        "audience": {"type": "string", "enum": ["adult", "child", "caregiver"]},
        "reading_level": {"type": "integer", "minimum": 3, "maximum": 12},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "warnings": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "dose": {"$ref": "#/$defs/dose"},
        "follow_up": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        "ok": {"type": "boolean"},
    },
    "required": ["title", "summary", "audience", "reading_level", "confidence", "warnings", "dose", "follow_up", "ok"],
    "additionalProperties": False,
    "$defs": {"dose": {"type": "object", "properties": {"amount_mg": {"type": "integer", "exclusiveMinimum": 0},
                                                         "unit": {"const": "mg"}},
                       "required": ["amount_mg", "unit"], "additionalProperties": False}},
}


def _chat(**body: Any) -> dict[str, Any]:
    status, reply = respond("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You write patient leaflets."},
        {"role": "user", "content": "Write a leaflet about metformin for type 2 diabetes patients."}], **body})
    assert status == 200
    return reply


def test_chat_answer_echoes_the_prompt_and_counts_tokens() -> None:
    reply = _chat()
    content = reply["choices"][0]["message"]["content"]
    assert "metformin" in content.lower() and reply["choices"][0]["finish_reason"] == "stop"
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 10 and usage["completion_tokens"] == math.ceil(len(content) / 4)
    assert _chat() == {**reply, "created": _chat()["created"]}, "same request, same answer"


def test_chat_n_and_max_tokens() -> None:
    reply = _chat(n=3, max_tokens=5)
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] == "length" and len(c["message"]["content"]) <= 20 for c in reply["choices"])
    assert reply["usage"]["completion_tokens"] == 15
    assert respond("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                            "max_tokens": -1})[0] == 400


@pytest.mark.parametrize("prompt", ["metformin", "a leaflet about insulin pens for children", ""])
def test_chat_json_schema_content_validates(prompt: str) -> None:
    status, reply = respond("/v1/chat/completions", {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "leaflet", "strict": True,
                                                                   "schema": LEAFLET_SCHEMA}}})
    assert status == 200
    jsonschema.validate(orjson.loads(reply["choices"][0]["message"]["content"]), LEAFLET_SCHEMA)


def test_responses_with_text_format_json_schema() -> None:
    status, reply = respond("/v1/responses", {
        "model": "gpt-4o-mini", "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Explain warfarin"}]}],
        "text": {"format": {"type": "json_schema", "name": "leaflet", "schema": LEAFLET_SCHEMA, "strict": True}}})
    assert status == 200 and reply["object"] == "response" and reply["status"] == "completed"
    text = reply["output"][0]["content"][0]["text"]
    jsonschema.validate(orjson.loads(text), LEAFLET_SCHEMA)
    usage = reply["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    capped = respond("/v1/responses", {"model": "m", "input": "Explain warfarin", "max_output_tokens": 3})[1]
    assert capped["status"] == "incomplete" and capped["incomplete_details"] == {"reason": "max_output_tokens"}


def test_embeddings_are_deterministic_unit_vectors_of_the_asked_dimension() -> None:
    body = {"model": "text-embedding-3-small", "input": ["aspirin", "ibuprofen"], "dimensions": 64}
    status, reply = respond("/v1/embeddings", body)
    assert status == 200 and [d["index"] for d in reply["data"]] == [0, 1]
    vectors = [d["embedding"] for d in reply["data"]]
    assert all(len(v) == 64 and abs(math.fsum(x * x for x in v) - 1) < 1e-9 for v in vectors)
    assert vectors[0] != vectors[1] and respond("/v1/embeddings", body)[1]["data"] == reply["data"]
    assert reply["usage"]["prompt_tokens"] == reply["usage"]["total_tokens"] > 0
    large = respond("/v1/embeddings", {"model": "text-embedding-3-large", "input": "x"})[1]
    assert len(large["data"][0]["embedding"]) == 3072
    packed = respond("/v1/embeddings", {**body, "encoding_format": "base64"})[1]["data"][0]["embedding"]
    unpacked = struct.unpack("<64f", base64.b64decode(packed))
    assert all(abs(a - b) < 1e-6 for a, b in zip(unpacked, vectors[0], strict=True))


def test_completions_default_to_16_tokens() -> None:
    status, reply = respond("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Describe statins"})
    assert status == 200 and reply["object"] == "text_completion"
    assert reply["usage"]["completion_tokens"] <= 16 and reply["choices"][0]["finish_reason"] == "length"


def test_every_endpoint_runs_as_a_batch(client: openai.OpenAI) -> None:
    cases = {
        "/v1/chat/completions": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Explain statins"}],
                                 "response_format": {"type": "json_schema",
                                                     "json_schema": {"name": "l", "schema": LEAFLET_SCHEMA}}},
        "/v1/responses": {"model": "gpt-4o-mini", "input": "Explain statins"},
        "/v1/embeddings": {"model": "text-embedding-3-small", "input": ["statins", "niacin"], "dimensions": 8},
        "/v1/completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "Explain statins", "max_tokens": 50},
    }
    batches = {endpoint: submit(client, [{"custom_id": "only", "method": "POST", "url": endpoint, "body": body}],
                                endpoint=endpoint) for endpoint, body in cases.items()}
    for endpoint, batch_id in batches.items():
        batch = wait_terminal(client, batch_id)
        assert batch.status == "completed" and batch.request_counts.completed == 1, endpoint
        body = read_jsonl(client, batch.output_file_id)[0]["response"]["body"]
        assert body == respond(endpoint, cases[endpoint])[1] | {k: body[k] for k in ("created", "created_at")
                                                                 if k in body}
        assert batch.usage.input_tokens > 0
    chat = read_jsonl(client, client.batches.retrieve(batches["/v1/chat/completions"]).output_file_id)[0]
    jsonschema.validate(orjson.loads(chat["response"]["body"]["choices"][0]["message"]["content"]), LEAFLET_SCHEMA)


def test_per_request_http_errors_go_to_the_error_file(client: openai.OpenAI) -> None:
    lines = [chat_line("good"), chat_line("bad", max_tokens=0)]
    batch = wait_terminal(client, submit(client, lines))
    assert batch.status == "completed" and batch.request_counts.model_dump() == {"total": 2, "completed": 1,
                                                                                 "failed": 1}
    [error] = read_jsonl(client, batch.error_file_id)
    assert error["custom_id"] == "bad" and error["error"] is None
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["param"] == "max_tokens"
