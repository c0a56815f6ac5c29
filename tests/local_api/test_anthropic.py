"""Anthropic's Message Batches API on the local Batch API, through the official ``anthropic`` SDK only,
embedded and served (docs/local-api-anthropic.md)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import jsonschema
import orjson
import pytest
from anthropic.types.messages import MessageBatch

from batch_pipeline.local_api import LocalAPISettings
from batch_pipeline.local_api.anthropic_protocol import ERROR_TYPES
from batch_pipeline.local_api.embedded import (
    EMBEDDED_API_KEY,
    EMBEDDED_ORIGIN,
    embedded_http_client,
)
from tests.local_api.conftest import StartServer, ThreadedServer
from tests.local_api.support import FAST, WAIT_SECONDS

MakeAnthropic = Callable[..., anthropic.Anthropic]
SCHEMA = {"type": "object", "properties": {"drug": {"type": "string"}, "dose_mg": {"type": "integer", "minimum": 1},
                                           "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["drug", "dose_mg", "tags"], "additionalProperties": False}


def request(custom_id: str, text: str = "Explain how metformin helps with type 2 diabetes.",
            model: str = "claude-haiku-4-5", **params: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "params": {"model": model, "max_tokens": 300,
                                               "messages": [{"role": "user", "content": text}], **params}}


ORDER = ("in_progress", "canceling", "ended")


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = WAIT_SECONDS) -> MessageBatch:
    """Poll until the batch ended (generous: a loaded machine must never fail a test), checking on
    the way that the status only moves forward and the counts stay in ``processing`` until the end."""
    deadline, seen = time.monotonic() + timeout, "in_progress"
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        assert ORDER.index(batch.processing_status) >= ORDER.index(seen), (seen, batch.processing_status)
        seen = batch.processing_status
        counts = batch.request_counts
        total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
        if seen == "ended":
            assert counts.processing == 0 and batch.ended_at and batch.ended_at >= batch.created_at
            return batch
        assert counts.processing == total and batch.results_url is None and batch.ended_at is None
        assert time.monotonic() < deadline, f"{batch_id} still {batch.processing_status} after {timeout}s"
        time.sleep(0.02)


def results(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    """Result lines by custom_id, each seen exactly once (order is not guaranteed)."""
    lines = list(client.messages.batches.results(batch_id))
    counts = Counter(line.custom_id for line in lines)
    assert all(n == 1 for n in counts.values()), counts
    return {line.custom_id: line.result for line in lines}


@pytest.fixture(params=["embedded", "http"])
def make_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeAnthropic]:
    """``make_client(settings, **anthropic_kwargs)``: an embedded client, or one for a fresh server."""
    servers: list[ThreadedServer] = []

    def make(settings: LocalAPISettings = FAST, **kwargs: Any) -> anthropic.Anthropic:
        if request.param == "embedded":
            return anthropic.Anthropic(api_key=EMBEDDED_API_KEY, base_url=EMBEDDED_ORIGIN,
                                       http_client=embedded_http_client(tmp_path / "data", settings=settings),
                                       **kwargs)
        servers.append(ThreadedServer(tmp_path / f"server-data-{len(servers)}", settings))
        return anthropic.Anthropic(api_key="sk-ant-local", base_url=servers[-1].base_url.removesuffix("/v1"),
                                   **kwargs)

    yield make
    for server in servers:
        server.stop()


def test_create_retrieve_list_results_delete(make_client: MakeAnthropic) -> None:
    client = make_client()
    created = [client.messages.batches.create(requests=[request(f"b{b}-r{i}", f"Leaflet {b} for drug {i}")
                                                        for i in range(4)]) for b in range(3)]
    first = created[0]
    assert first.id.startswith("msgbatch_") and first.type == "message_batch"
    assert first.processing_status == "in_progress" and first.results_url is None and first.ended_at is None
    assert first.request_counts.model_dump() == {"processing": 4, "succeeded": 0, "errored": 0, "canceled": 0,
                                                 "expired": 0}
    assert (first.expires_at - first.created_at).total_seconds() == pytest.approx(86400, abs=1)

    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == [created[2].id, created[1].id] and page.has_more
    assert page.first_id == created[2].id and page.last_id == created[1].id
    assert [b.id for b in client.messages.batches.list(limit=2)] == [b.id for b in reversed(created)]  # auto-paging
    newer = client.messages.batches.list(before_id=created[0].id, limit=1)
    assert [b.id for b in newer.data] == [created[1].id] and newer.has_more

    for batch in created:
        ended = wait_ended(client, batch.id)
        assert ended.ended_at is not None and ended.results_url and ended.results_url.startswith("http")
        assert ended.request_counts.succeeded == 4 and ended.request_counts.processing == 0
    by_id = results(client, first.id)
    assert set(by_id) == {f"b0-r{i}" for i in range(4)}
    for result in by_id.values():
        assert result.type == "succeeded"
        assert result.message.content[0].type == "text" and result.message.content[0].text
        assert result.message.usage.input_tokens > 0 and result.message.usage.output_tokens > 0
        assert result.message.usage.service_tier == "batch" and result.message.usage.cache_read_input_tokens == 0
        assert result.message.stop_reason == "end_turn" and result.message.model == "claude-haiku-4-5"

    deleted = client.messages.batches.delete(first.id)
    assert (deleted.id, deleted.type) == (first.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.batches.retrieve(first.id)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert first.id not in [b.id for b in client.messages.batches.list()]


def test_cancel_mid_flight_ends_with_canceled_results(make_client: MakeAnthropic) -> None:
    client = make_client(LocalAPISettings(pace_seconds=5.0))
    batch = client.messages.batches.create(requests=[request(f"r{i}", f"Note {i}") for i in range(40)])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)  # still processing: cancel first
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status in ("canceling", "ended") and canceling.cancel_initiated_at is not None
    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert counts.canceled > 0 and counts.succeeded + counts.canceled == 40 and counts.processing == 0
    kinds = Counter(result.type for result in results(client, batch.id).values())
    assert kinds == +Counter({"succeeded": counts.succeeded, "canceled": counts.canceled})
    assert client.messages.batches.cancel(batch.id).processing_status == "ended"  # an ended batch stays as it is
    client.messages.batches.delete(batch.id)


def test_expiry_ends_unfinished_requests_expired(make_client: MakeAnthropic) -> None:
    client = make_client(LocalAPISettings(pace_seconds=60.0, completion_window_seconds=1.0))
    batch = client.messages.batches.create(requests=[request(f"r{i}") for i in range(30)])
    ended = wait_ended(client, batch.id)
    assert ended.request_counts.expired > 0
    assert ended.request_counts.expired + ended.request_counts.succeeded == 30
    assert {result.type for result in results(client, batch.id).values()} <= {"succeeded", "expired"}


def test_a_slow_finalizing_stage_stays_in_progress(make_client: MakeAnthropic) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.05, finalizing_seconds=1.0))
    batch = client.messages.batches.create(requests=[request("only")])
    ended = wait_ended(client, batch.id)  # checks in_progress, counts in processing, until the end
    assert ended.request_counts.succeeded == 1
    assert ended.ended_at and (ended.ended_at - batch.created_at).total_seconds() >= 1.0


def test_invalid_params_end_errored_without_failing_the_create(make_client: MakeAnthropic) -> None:
    client = make_client()
    good = request("good")
    unknown_model = request("unknown-model", model="claude-does-not-exist")
    bad_role = request("bad-role")
    bad_role["params"]["messages"] = [{"role": "system", "content": "hi"}]
    no_max = request("no-max-tokens")
    del no_max["params"]["max_tokens"]
    zero_max = request("zero-max-tokens", max_tokens=0)
    batch = client.messages.batches.create(requests=[good, unknown_model, bad_role, no_max, zero_max])
    ended = wait_ended(client, batch.id)
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 4)
    by_id = results(client, batch.id)
    assert by_id["good"].type == "succeeded"
    expected = {"unknown-model": "not_found_error", "bad-role": "invalid_request_error",
                "no-max-tokens": "invalid_request_error", "zero-max-tokens": "invalid_request_error"}
    for custom_id, error_type in expected.items():
        result = by_id[custom_id]
        assert result.type == "errored"
        assert result.error.type == "error" and result.error.error.type == error_type
        assert result.error.error.message and result.error.request_id


@pytest.mark.parametrize(("requests", "message"), [
    ([], "at least 1 item"),
    ([request("x" * 65)], "at most 64 characters"),
    ([request("bad id!")], "should match pattern"),
    ([request("twice"), request("twice")], "Duplicate custom_id"),
    ([request("a"), request("b"), request("c")], "at most 2 items"),
])
def test_bad_envelope_is_a_400(make_client: MakeAnthropic, requests: list[dict[str, Any]], message: str) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.05, anthropic_max_requests_per_batch=2))
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    body = refused.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert message in body["error"]["message"] and body["request_id"].startswith("req_")  # type: ignore[index]
    assert not client.messages.batches.list().data


def test_too_large_unknown_ids_and_bad_limit(make_client: MakeAnthropic) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.05, anthropic_max_batch_bytes=2000))
    with pytest.raises(anthropic.APIStatusError) as too_large:
        client.messages.batches.create(requests=[request(f"r{i}", "word " * 100) for i in range(5)])
    assert too_large.value.status_code == 413
    assert too_large.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    for call in (client.messages.batches.retrieve, client.messages.batches.cancel, client.messages.batches.delete,
                 client.messages.batches.results):
        with pytest.raises(anthropic.NotFoundError):
            call("msgbatch_doesnotexist")
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.list(limit=1001)
    with pytest.raises(anthropic.NotFoundError) as not_served:  # only Message Batches are served
        client.messages.create(**request("sync")["params"])
    assert not_served.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_structured_output_by_output_config_and_by_forced_tool(make_client: MakeAnthropic) -> None:
    client = make_client()
    by_format = request("json", "Dose of metformin for adults",
                        output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    by_tool = request("tool", "Dose of metformin for adults", tool_choice={"type": "tool", "name": "record"},
                      tools=[{"name": "record", "description": "Record a dose.", "input_schema": SCHEMA}])
    batch = client.messages.batches.create(requests=[by_format, by_tool])  # type: ignore[list-item]
    wait_ended(client, batch.id)
    by_id = results(client, batch.id)
    text = by_id["json"].message.content[0]
    assert text.type == "text"
    jsonschema.validate(orjson.loads(text.text), SCHEMA)
    tool_message = by_id["tool"].message
    block = tool_message.content[0]
    assert block.type == "tool_use" and block.name == "record" and block.id.startswith("toolu_")
    assert tool_message.stop_reason == "tool_use"
    jsonschema.validate(block.input, SCHEMA)


def test_faults_per_request_and_per_call(make_client: MakeAnthropic) -> None:
    client = make_client(LocalAPISettings(pace_seconds=0.05, line_rate_limit_fraction=0.2, fault_seed=3,
                                          line_server_error_fraction=0.2, line_overloaded_fraction=0.2))
    batch = client.messages.batches.create(requests=[request(f"r{i}", f"Row {i}") for i in range(30)])
    ended = wait_ended(client, batch.id)
    assert ended.request_counts.errored > 0 and ended.request_counts.succeeded > 0
    errors = {r.error.error.type for r in results(client, batch.id).values() if r.type == "errored"}
    assert errors == {"rate_limit_error", "api_error", "overloaded_error"}

    for fault, error_class, status in (("api_rate_limit_fraction", anthropic.RateLimitError, 429),
                                       ("api_overloaded_fraction", anthropic.OverloadedError, 529)):
        failing = make_client(LocalAPISettings(**{fault: 1.0}), max_retries=0)
        with pytest.raises(error_class) as refused:
            failing.messages.batches.list()
        assert refused.value.status_code == status
        assert refused.value.body["error"]["type"] == ERROR_TYPES[status]  # type: ignore[index]


def test_missing_or_wrong_key_is_a_401(tmp_path: Path, start_server: StartServer) -> None:
    server = start_server(tmp_path / "data", "--pace-seconds=0.05", api_key="sk-ant-right")
    origin = server.base_url.removesuffix("/v1")
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(api_key="sk-ant-wrong", base_url=origin).messages.batches.list()
    assert refused.value.body["error"] == {"type": "authentication_error",  # type: ignore[index]
                                           "message": "invalid x-api-key"}
    missing = httpx2.get(f"{origin}/v1/messages/batches", headers={"anthropic-version": "2023-06-01"})
    assert missing.status_code == 401 and missing.json()["type"] == "error"
    assert missing.json()["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}
    assert missing.headers["request-id"] == missing.json()["request_id"]
    by_header = httpx2.get(f"{origin}/v1/messages/batches", headers={"x-api-key": "sk-ant-right",
                                                                     "anthropic-version": "2023-06-01"})
    assert by_header.status_code == 200 and by_header.json()["data"] == []
    assert "sk-ant-right" not in server.log()
