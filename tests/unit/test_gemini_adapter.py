"""The Gemini adapter's pure parts: request lines as a Batch Mode input file holds them, a job's
state in the pipeline's vocabulary, and response lines of every outcome as neutral rows."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest
from google.genai import types
from pydantic import BaseModel

from batch_pipeline import BatchSpec, FileSource
from batch_pipeline.errors import ProviderSettingError, SpecError
from batch_pipeline.provider.gemini_api import GeminiProvider, provider_batch
from batch_pipeline.provider.gemini_results import parse_results
from batch_pipeline.requests.lines import build_requests, line_custom_id

PROVIDER = GeminiProvider(api_key="unit-key")
SPEC = BatchSpec(name="tickets", model="gpt-4o-mini", models={"gemini": "gemini-2.5-flash"},
                 system_prompt="Be brief.", prompt="Triage: {text}", parameters={"temperature": 0.2, "max_tokens": 50})


class Triage(BaseModel):
    priority: int


def test_a_line_is_a_keyed_generate_content_request():
    built = build_requests(pa.table({"id": ["t1"], "text": ["printer on fire"]}), FileSource("/x.parquet", key="id"),
                           SPEC, PROVIDER.encoding(SPEC))
    line = built.shards[0].splitlines()[0]
    assert line_custom_id(line) == built.index["custom_id"][0].as_py()
    assert orjson.loads(line)["request"] == {
        "contents": [{"role": "user", "parts": [{"text": "Triage: printer on fire"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 50}}
    assert PROVIDER.encoding(SPEC).model == "gemini-2.5-flash"


def test_a_response_model_asks_for_json_with_its_schema():
    spec = BatchSpec(name="t", model="gpt-4o-mini", models={"gemini": "gemini-2.5-flash"}, prompt="{text}",
                     response_model=Triage)
    config = PROVIDER.encoding(spec).line("c1", {"user": "x"})["request"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["required"] == ["priority"]


def test_an_embeddings_line_is_a_keyed_embed_content_request():
    spec = BatchSpec(name="v", model="text-embedding-3-small", models={"gemini": "gemini-embedding-001"},
                     prompt="{text}", endpoint="/v1/embeddings", parameters={"dimensions": 8})
    encoding = PROVIDER.encoding(spec)
    line = encoding.line("c1", {"user": "hello"})
    assert line == {"key": "c1", "request": {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 8}}
    assert encoding.signature in orjson.dumps(line) and encoding.tokens_per_message == 0
    [row] = parse_results([orjson.dumps({"key": "c1", "response": {"embedding": {"values": [0.5, 1]},
                                                                    "tokenCount": 7}})]).to_pylist()
    assert (row["status"], row["embedding"], row["input_tokens"]) == ("succeeded", [0.5, 1.0], 7)


@pytest.mark.parametrize(("spec", "error", "match"), [
    (BatchSpec(name="m", model="omni-moderation-latest", models={"gemini": "gemini-2.5-flash"}, prompt="{t}",
               endpoint="/v1/moderations"), ProviderSettingError, "use case 'm': gemini has no batch endpoint"),
    (BatchSpec(name="p", model="gpt-4o-mini", models={"gemini": "gemini-2.5-flash"}, prompt="{t}",
               parameters={"seed": 1}), ProviderSettingError, r"gemini takes no parameter \['seed'\]"),
    (BatchSpec(name="n", model="gpt-4o-mini", prompt="{t}"), SpecError, "names no model for gemini"),
])
def test_what_gemini_cannot_serve_fails_before_anything_is_built(spec, error, match):
    with pytest.raises(error, match=match):
        PROVIDER.encoding(spec)


@pytest.mark.parametrize(("state", "status"), [
    ("JOB_STATE_PENDING", "validating"), ("JOB_STATE_RUNNING", "in_progress"), ("JOB_STATE_SUCCEEDED", "completed"),
    ("JOB_STATE_FAILED", "failed"), ("JOB_STATE_CANCELLED", "cancelled"), ("JOB_STATE_EXPIRED", "expired"),
    ("JOB_STATE_CANCELLING", "cancelling"),
])
def test_a_job_state_reads_in_the_pipelines_vocabulary(state, status):
    job = types.BatchJob(name="batches/1", display_name="k1", state=types.JobState(state),
                         create_time=datetime(2026, 12, 6, tzinfo=UTC), src=types.BatchJobSource(file_name="files/in"),
                         dest=types.BatchJobDestination(file_name="files/out"))
    read = provider_batch(job)
    assert (read.id, read.status, read.key) == ("batches/1", status, "k1")
    assert read.files == {"input": "files/in", "output": "files/out"}


def test_every_outcome_is_a_neutral_row():
    answered = {"candidates": [{"content": {"parts": [{"text": "o"}, {"text": "k"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 2, "thoughtsTokenCount": 3,
                                  "cachedContentTokenCount": 4}, "modelVersion": "gemini-2.5-flash"}
    lines = [{"key": "a", "response": answered},
             {"key": "b", "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}},
             {"key": "c", "response": {"candidates": [{"finishReason": "SAFETY"}]}},
             {"response": answered},
             {"key": "d", "error": {"code": 14, "message": "overloaded", "details": []}}]  # a google.rpc.Status
    rows = parse_results([b"\n".join(orjson.dumps(line) for line in lines)]).to_pylist()
    a, b, c, odd, d = rows
    assert (a["custom_id"], a["status"], a["output"], a["input_tokens"], a["output_tokens"], a["cached_input_tokens"],
            a["model"]) == ("a", "succeeded", "ok", 9, 5, 4, "gemini-2.5-flash")
    assert (b["status"], b["error_code"]) == ("failed", "RESOURCE_EXHAUSTED")
    assert (c["status"], c["error_code"]) == ("invalid_output", "refusal")
    assert odd["error_code"] == "malformed_line" and "line 4" in odd["error_message"]
    assert (d["status"], d["error_code"]) == ("failed", "UNAVAILABLE")
