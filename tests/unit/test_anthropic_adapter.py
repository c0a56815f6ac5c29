"""The Anthropic adapter's pure parts: request lines as Message Batches take them, a batch's
status in the pipeline's vocabulary, and result lines of every outcome as neutral rows."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest
from anthropic.types.messages import MessageBatch
from pydantic import BaseModel

from batch_pipeline import BatchSpec, FileSource
from batch_pipeline.errors import ProviderSettingError, SpecError
from batch_pipeline.provider.anthropic_api import AnthropicProvider, provider_batch
from batch_pipeline.provider.anthropic_results import parse_results
from batch_pipeline.requests.lines import build_requests, line_custom_id

PROVIDER = AnthropicProvider(api_key="sk-unit")
SPEC = BatchSpec(name="tickets", model="gpt-4o-mini", models={"anthropic": "claude-haiku-4-5"},
                 system_prompt="Be brief.", prompt="Triage: {text}", parameters={"temperature": 0.2, "stop": "END"})


class Triage(BaseModel):
    priority: int
    team: str


def test_a_line_is_one_messages_call_with_the_providers_model():
    built = build_requests(pa.table({"id": ["t1"], "text": ["printer on fire"]}), FileSource("/x.parquet", key="id"),
                           SPEC, PROVIDER.encoding(SPEC))
    line = built.shards[0].splitlines()[0]
    assert line_custom_id(line) == built.index["custom_id"][0].as_py()
    params = orjson.loads(line)["params"]
    assert params == {"model": "claude-haiku-4-5", "system": "Be brief.", "max_tokens": 1024, "temperature": 0.2,
                      "stop_sequences": ["END"], "messages": [{"role": "user", "content": "Triage: printer on fire"}]}
    assert built.index["estimated_input_tokens"][0].as_py() > 0


def test_a_response_model_asks_for_json_output_with_the_sdks_schema():
    spec = BatchSpec(name="t", model="gpt-4o-mini", models={"anthropic": "claude-haiku-4-5"}, prompt="{text}",
                     response_model=Triage, parameters={"max_tokens": 64})
    params = PROVIDER.encoding(spec).line("c1", {"user": "x"})["params"]
    schema = params["output_config"]["format"]["schema"]
    assert params["max_tokens"] == 64 and schema["required"] == ["priority", "team"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(("spec", "error", "match"), [
    (BatchSpec(name="e", model="text-embedding-3-small", models={"anthropic": "claude-haiku-4-5"}, prompt="{t}",
               endpoint="/v1/embeddings", parameters={"dimensions": 8}),
     ProviderSettingError, "use case 'e': anthropic has no batch endpoint for /v1/embeddings"),
    (BatchSpec(name="p", model="gpt-4o-mini", models={"anthropic": "claude-haiku-4-5"}, prompt="{t}",
               parameters={"logprobs": True}), ProviderSettingError, r"anthropic takes no parameter \['logprobs'\]"),
    (BatchSpec(name="m", model="gpt-4o-mini", prompt="{t}"), SpecError, "names no model for anthropic"),
])
def test_what_anthropic_cannot_serve_fails_before_anything_is_built(spec, error, match):
    with pytest.raises(error, match=match):
        PROVIDER.encoding(spec)


def batch(status: str, cancelled: bool = False, **counts: int) -> MessageBatch:
    zero = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    now = datetime(2026, 12, 6, tzinfo=UTC)
    return MessageBatch(id="msgbatch_1", type="message_batch", processing_status=status,  # type: ignore[arg-type]
                        request_counts={**zero, **counts}, created_at=now, expires_at=now,  # type: ignore[arg-type]
                        cancel_initiated_at=now if cancelled else None)


@pytest.mark.parametrize(("given", "status", "counts"), [
    (batch("in_progress", processing=3), "in_progress", (3, 0, 0)),
    (batch("canceling", cancelled=True, processing=3), "cancelling", (3, 0, 0)),
    (batch("ended", succeeded=2, errored=1), "completed", (3, 2, 1)),
    (batch("ended", cancelled=True, succeeded=1, canceled=2), "cancelled", (3, 1, 2)),
    (batch("ended", expired=3), "expired", (3, 0, 3)),
    (batch("ended", succeeded=1, expired=2), "completed", (3, 1, 2)),
])
def test_a_message_batch_reads_in_the_pipelines_vocabulary(given, status, counts):
    read = provider_batch(given)
    assert read.status == status and read.key is None and read.files == {}
    assert read.request_counts is not None
    assert (read.request_counts.total, read.request_counts.completed, read.request_counts.failed) == counts


def message(*blocks: dict, stop: str = "end_turn") -> dict:
    return {"type": "succeeded", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                             "model": "claude-haiku-4-5", "content": list(blocks), "stop_reason": stop,
                                             "usage": {"input_tokens": 10, "output_tokens": 4,
                                                       "cache_read_input_tokens": 5,
                                                       "cache_creation_input_tokens": 0}}}


def test_every_outcome_is_a_neutral_row():
    lines = [
        {"custom_id": "a", "result": message({"type": "text", "text": "ok"})},
        {"custom_id": "b", "result": message({"type": "tool_use", "id": "t", "name": "Triage",
                                              "input": {"priority": 1}}, stop="tool_use")},
        {"custom_id": "c", "result": {"type": "errored", "error": {"type": "error", "error": {
            "type": "rate_limit_error", "message": "slow down"}}}},
        {"custom_id": "d", "result": {"type": "canceled"}},
        {"custom_id": "e", "result": {"type": "expired"}},
        {"custom_id": "f", "result": message({"type": "text", "text": "I can't help"}, stop="refusal")},
    ]
    data = b"\n".join(orjson.dumps(line) for line in lines) + b"\n{not json\n"
    rows = {r["custom_id"]: r for r in parse_results([data]).to_pylist()}
    assert (rows["a"]["status"], rows["a"]["output"], rows["a"]["input_tokens"], rows["a"]["cached_input_tokens"]) \
        == ("succeeded", "ok", 15, 5)
    assert orjson.loads(rows["b"]["output"]) == {"priority": 1}
    assert (rows["c"]["status"], rows["c"]["error_code"]) == ("failed", "rate_limit_error")
    assert (rows["d"]["status"], rows["d"]["error_code"]) == ("cancelled", "batch_cancelled")
    assert (rows["e"]["status"], rows["e"]["error_code"]) == ("expired", "batch_expired")
    assert (rows["f"]["status"], rows["f"]["error_code"]) == ("invalid_output", "refusal")
    assert rows[None]["error_code"] == "malformed_line" and "line 7" in rows[None]["error_message"]
