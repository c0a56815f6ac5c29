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
from batch_pipeline.local_api import LocalAPISettings
from batch_pipeline.local_api.embedded import (
    EMBEDDED_API_KEY,
    EMBEDDED_ORIGIN,
    embedded_http_client,
)
from batch_pipeline.provider.gemini_api import GeminiProvider, input_file, provider_batch
from batch_pipeline.provider.gemini_results import parse_results
from batch_pipeline.requests.lines import build_requests, line_custom_id
from batch_pipeline.state.retry import retryable

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


def test_a_per_request_status_is_named_by_its_grpc_code_and_retried_where_another_attempt_can_fix_it():
    """A responses file's `error` is a google.rpc.Status (`code`, `message`, no status name)."""
    lines = [{"key": k, "error": {"code": code, "message": "m"}} for k, code in (("a", 8), ("b", 13), ("c", 3))]
    rows = parse_results([b"\n".join(orjson.dumps(line) for line in lines)]).to_pylist()
    assert [r["error_code"] for r in rows] == ["RESOURCE_EXHAUSTED", "INTERNAL", "INVALID_ARGUMENT"]
    assert [retryable(r["error_code"], 1, 3) for r in rows] == [True, True, False]


def test_a_job_names_the_input_file_uploaded_under_its_key():
    """The SDK reads no source from a Developer API job, so cleanup would never delete the input
    file; the adapter uploads it under a name made from the job's display name (our key)."""
    key = "0123456789abcdef0123456789abcdef01234567"
    job = types.BatchJob(name="batches/x", display_name=key, state=types.JobState.JOB_STATE_SUCCEEDED,
                         dest=types.BatchJobDestination(file_name="files/out"))
    assert provider_batch(job).files == {"input": input_file(key), "output": "files/out"}
    foreign = types.BatchJob(name="batches/y", display_name="someone else's job")
    assert provider_batch(foreign).files == {}


def test_an_upload_already_named_after_the_key_is_reused(tmp_path):
    """A shard's input file is named after its key, which holds its content's hash: a file of
    that name at the provider (an intent log lost with it) is the same requests, so it is reused
    instead of failing the run on the name (409)."""
    api = GeminiProvider().at(EMBEDDED_ORIGIN, EMBEDDED_API_KEY).connect(
        embedded_http_client(tmp_path / "api", settings=LocalAPISettings(pace_seconds=0.01)))
    spec = BatchSpec(name="s", model="gpt-4o-mini", models={"gemini": "gemini-2.5-flash"}, prompt="{text}")
    encoding = GeminiProvider().encoding(spec)
    [data] = build_requests(pa.table({"id": ["a"], "text": ["hi"]}), FileSource(tmp_path / "t.csv", key="id"),
                            spec, encoding).shards
    key = "0123456789abcdef0123456789abcdef01234567"
    first = api.submit(data, encoding, key, {}, False, lambda text: None)
    seen: list[str] = []
    again = api.submit(data, encoding, key, {}, False, seen.append)  # as if no intent had been recorded
    assert first.files["input"] == again.files["input"] == input_file(key)
    assert [f.name for f in api.client.files.list()] == [input_file(key)] and "reusing upload" in seen[0]
