"""OpenAI's per-request rules in the local Batch API, moderation answers, and their parsing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from openai.types import ModerationCreateResponse

from batch_pipeline.local_api.responders import respond
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.local_api.validation import request_error, supported_values, validate_input
from batch_pipeline.provider.openai_moderations import MODERATION_CATEGORIES, parse_moderation
from batch_pipeline.spec import BatchSpec, SpecError

CHAT = "/v1/chat/completions"


def _chat(*messages: object, **body: object) -> dict:
    return {"model": "gpt-4o-mini", "messages": list(messages), **body}


@pytest.mark.parametrize(("endpoint", "body", "param", "code"), [
    (CHAT, _chat({"role": "robot", "content": "hi"}), "messages[0].role", "invalid_value"),
    (CHAT, _chat({"content": "hi"}), "messages[0].role", "missing_required_parameter"),
    (CHAT, _chat({"role": "user", "content": "a"}, {"role": "system"}), "messages[1].content",
     "missing_required_parameter"),
    (CHAT, _chat({"role": "user", "content": None}), "messages[0].content", "missing_required_parameter"),
    (CHAT, _chat({"role": "user", "content": 3}), "messages[0].content", "invalid_type"),
    (CHAT, _chat("hello"), "messages[0]", "invalid_type"),
    (CHAT, {"model": "m", "messages": "hello"}, "messages", "invalid_type"),
    (CHAT, _chat(), "messages", "empty_array"),
    (CHAT, _chat({"role": "user", "content": "a"}, max_tokens="5"), "max_tokens", "invalid_type"),
    (CHAT, _chat({"role": "user", "content": "a"}, max_tokens=0), "max_tokens", "integer_below_min_value"),
    (CHAT, _chat({"role": "user", "content": "a"}, temperature=2.5), "temperature", "decimal_above_max_value"),
    ("/v1/responses", {"model": "m", "input": 7}, "input", "invalid_type"),
    ("/v1/responses", {"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role",
     "invalid_value"),
    ("/v1/embeddings", {"model": "m", "input": {"text": "x"}}, "input", "invalid_type"),
    ("/v1/moderations", {"model": "m", "input": 5}, "input", "invalid_type"),
    ("/v1/completions", {"model": "m", "prompt": 5}, "prompt", "invalid_type"),
])
def test_invalid_bodies_get_the_endpoints_400(endpoint: str, body: dict, param: str, code: str) -> None:
    status, reply = request_error(endpoint, body) or (200, {})
    assert status == 400
    assert reply["error"]["type"] == "invalid_request_error"
    assert (reply["error"]["param"], reply["error"]["code"]) == (param, code)
    assert param in reply["error"]["message"]


@pytest.mark.parametrize(("endpoint", "body"), [
    (CHAT, _chat({"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text",
                                                                                          "text": "hi"}]},
                 {"role": "assistant", "tool_calls": [{"id": "t"}]}, max_tokens=5, temperature=0)),
    ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": "x"}], "instructions": "Be brief."}),
    ("/v1/embeddings", {"model": "m", "input": ["a", "b"], "dimensions": 8}),
    ("/v1/moderations", {"model": "m", "input": ["a", "b"]}),
    ("/v1/moderations", {"model": "m", "input": [{"type": "text", "text": "a"}]}),
])
def test_valid_bodies_run(endpoint: str, body: dict) -> None:
    assert request_error(endpoint, body) is None


def test_supported_values_read_as_openai_writes_them() -> None:
    assert supported_values(["a"]) == "'a'"
    assert supported_values(["a", "b", "c"]) == "'a', 'b', and 'c'"


def test_unserved_model_fails_validation_on_every_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    line = {"custom_id": "a", "method": "POST", "url": CHAT, "body": _chat({"role": "user", "content": "x"})}
    line["body"]["model"] = "nope"
    path.write_bytes(orjson.dumps(line) + b"\n" + orjson.dumps({**line, "custom_id": "b"}) + b"\n")
    found = validate_input(path, CHAT, LocalAPISettings(), frozenset({"gpt-4o-mini"}))
    assert [(e["code"], e["line"], e["param"]) for e in found.errors] == [("model_not_found", 1, "body.model"),
                                                                          ("model_not_found", 2, "body.model")]
    assert "not supported by the Batch API" in found.errors[0]["message"]
    assert validate_input(path, CHAT, LocalAPISettings(), None).errors == []  # None: any model


def test_moderation_answer_has_openais_shape_and_is_deterministic() -> None:
    body = {"model": "omni-moderation-latest", "input": ["you idiot, watch your back", "A lovely, calm day."]}
    status, reply = respond("/v1/moderations", body)
    assert status == 200 and respond("/v1/moderations", body) == (status, reply)
    parsed = ModerationCreateResponse.model_validate(reply)
    rude, calm = parsed.results
    assert rude.flagged and rude.categories.harassment and not calm.flagged
    for result in reply["results"]:
        assert set(result["category_scores"]) == set(MODERATION_CATEGORIES)
        assert all(0 <= score <= 1 for score in result["category_scores"].values())
        assert result["flagged"] == any(result["categories"].values())


def test_moderation_result_becomes_typed_values() -> None:
    _, reply = respond("/v1/moderations", {"model": "omni-moderation-latest", "input": "you idiot"})
    values, reason = parse_moderation(orjson.dumps(reply["results"][0]).decode())
    assert reason is None and values is not None
    assert values["flagged"] is True and values["flagged_categories"] == ["harassment"]
    assert values["harassment_score"] == reply["results"][0]["category_scores"]["harassment"]
    assert values["self_harm_intent_score"] == reply["results"][0]["category_scores"]["self-harm/intent"]
    assert parse_moderation('{"flagged": "yes"}')[0] is None
    assert parse_moderation(None)[0] is None


def test_moderation_specs() -> None:
    spec = BatchSpec(name="screen", model="omni-moderation-latest", prompt="{text}", endpoint="/v1/moderations",
                     system_prompt="ignored")
    assert spec.price_per_million_tokens == (0.0, 0.0) and spec.templates() == {"user": "{text}"}
    assert spec.output_tokens_prior() == (0, "moderations have no output tokens")
    from pydantic import BaseModel

    class Labels(BaseModel):
        label: str

    with pytest.raises(SpecError, match="moderations take no response_model"):
        BatchSpec(name="s", model="m", prompt="{a}", endpoint="/v1/moderations", response_model=Labels)
