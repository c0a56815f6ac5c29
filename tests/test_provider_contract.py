"""The provider contract suite: every adapter must pass it unchanged (`provider/contract.py`).

Each harness connects one adapter to something that speaks its protocol: OpenAI and Azure
OpenAI to the embedded local Batch API (through their official client), and an in-memory fake
that holds no idempotency key. A harness takes `Faults`: some requests fail, the batch expires,
or it runs slowly enough to be cancelled. A new adapter adds its harness to `HARNESSES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from batch_pipeline import BatchSpec, FileSource
from batch_pipeline.harvest.lines import BatchOutcome, batch_lines
from batch_pipeline.local_api import LocalAPISettings
from batch_pipeline.local_api.embedded import (
    EMBEDDED_API_KEY,
    EMBEDDED_ORIGIN,
    embedded_http_client,
)
from batch_pipeline.provider.azure_api import AzureOpenAIProvider
from batch_pipeline.provider.contract import (
    RESULT_ROWS,
    RUNNING,
    STATUSES,
    BatchAPI,
    ProviderBatch,
    SubmissionBlocked,
)
from batch_pipeline.provider.openai_api import OpenAIProvider
from batch_pipeline.provider.submission import Sending, Shard, batch_metadata, submit_shards
from batch_pipeline.requests.lines import build_requests, line_custom_id
from batch_pipeline.state.intent import intents_of
from batch_pipeline.warehouse.storage import Warehouse
from tests.fake_provider import fake

SPEC = BatchSpec(name="contract", model="gpt-4o-mini", prompt="Answer: {text}", system_prompt="Be brief.",
                 max_requests_per_shard=4, models={"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"})
SOURCE = FileSource("/unused.parquet", key="id")
ORDER = ["validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"]


@dataclass(frozen=True)
class Faults:
    failing: bool = False  # some requests fail
    expire: bool = False  # the batch expires before it runs
    slow: bool = False  # each stage takes seconds: long enough to cancel the batch while it runs


def _local_settings(faults: Faults) -> LocalAPISettings:
    return LocalAPISettings(
        pace_seconds=5.0 if faults.slow else 0.05, fault_seed=1,
        line_server_error_fraction=0.5 if faults.failing else 0.0,
        completion_window_seconds=0.01 if faults.expire else 86400.0,
        azure_deployments={"contract-deployment": "gpt-4o-mini"},
    )


def openai_local(tmp_path: Path, faults: Faults) -> BatchAPI:
    provider = OpenAIProvider().at(EMBEDDED_ORIGIN, EMBEDDED_API_KEY)
    return provider.connect(embedded_http_client(tmp_path / "api", settings=_local_settings(faults)), max_retries=0)


def azure_local(tmp_path: Path, faults: Faults) -> BatchAPI:
    provider = AzureOpenAIProvider("", "2024-10-21", deployments={"gpt-4o-mini": "contract-deployment"})
    return provider.at(EMBEDDED_ORIGIN, EMBEDDED_API_KEY).connect(
        embedded_http_client(tmp_path / "api", settings=_local_settings(faults)), max_retries=0)


def anthropic_local(tmp_path: Path, faults: Faults) -> BatchAPI:
    from batch_pipeline.provider.anthropic_api import AnthropicProvider

    provider = AnthropicProvider().at(EMBEDDED_ORIGIN, EMBEDDED_API_KEY)
    return provider.connect(embedded_http_client(tmp_path / "api", settings=_local_settings(faults)), max_retries=0)


def gemini_local(tmp_path: Path, faults: Faults) -> BatchAPI:
    from batch_pipeline.provider.gemini_api import GeminiProvider

    provider = GeminiProvider().at(EMBEDDED_ORIGIN, EMBEDDED_API_KEY)
    return provider.connect(embedded_http_client(tmp_path / "api", settings=_local_settings(faults)))


def in_memory(tmp_path: Path, faults: Faults) -> BatchAPI:
    return fake(fail_every=2 if faults.failing else 0, expire=faults.expire).connect()


HARNESSES: dict[str, Callable[[Path, Faults], BatchAPI]] = {
    "openai": openai_local, "azure": azure_local, "anthropic": anthropic_local, "gemini": gemini_local,
    "in-memory fake": in_memory}


@pytest.fixture(params=list(HARNESSES))
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., BatchAPI]:
    return lambda **faults: HARNESSES[request.param](tmp_path, Faults(**faults))


def rows(n: int) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(n)], "text": [f"question {i}" for i in range(n)]})


def shard(api: BatchAPI, n: int = 3, attempt: int = 1) -> Shard:
    [data] = build_requests(rows(n), SOURCE, SPEC, api.provider.encoding(SPEC)).shards
    return Shard(0, "contract/requests/shard-00000.jsonl", data, attempt, estimated_tokens=10)


def submit(api: BatchAPI, wh: Warehouse, *shards: Shard) -> list[ProviderBatch]:
    sending = Sending(api, log=lambda text: None)
    sent = submit_shards(sending, intents_of(wh, "contract", "p"), use_case="contract", partition="p",
                         encoding=api.provider.encoding(SPEC), model=SPEC.model, shards=list(shards))
    assert not sent.queued
    return [api.retrieve(s.batch_id) for s in sent.submissions]


def settle(api: BatchAPI, batch_id: str, timeout: float = 120.0) -> list[str]:
    """Every status seen until the batch is terminal (a generous timeout, no fixed wait)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = api.batches({batch_id}, since=time.time() - 600)[batch_id]
        seen.append(batch.status)
        if batch.terminal:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} still {seen[-1]} after {timeout} s")


def test_encoding_writes_lines_within_the_limits(connect):
    api = connect()
    encoding = api.provider.encoding(SPEC)
    assert encoding.max_requests == 4 and encoding.max_bytes <= SPEC.max_shard_bytes
    built = build_requests(rows(10), SOURCE, SPEC, encoding)
    assert [s.count(b"\n") for s in built.shards] == [4, 4, 2]
    first = built.shards[0].splitlines()[0]
    assert line_custom_id(first) == built.index["custom_id"][0].as_py()
    assert encoding.signature in first and b"question 0" in first and b"Be brief." in first
    assert next(iter(orjson.loads(first).values())) == line_custom_id(first)  # the id is the first member


def test_submitting_twice_with_one_key_gives_one_batch(connect, tmp_path):
    api, wh = connect(), Warehouse(str(tmp_path / "wh"))
    started = time.time()
    [first] = submit(api, wh, shard(api))
    [again] = submit(api, wh, shard(api))
    assert first.id == again.id
    assert [b.id for b in api.created_since(started)] == [first.id]


def test_a_crash_between_create_and_record_never_pays_twice(connect, tmp_path):
    api, wh = connect(), Warehouse(str(tmp_path / "wh"))
    sent = shard(api)
    meta = batch_metadata("contract", "p", SPEC.model, sent)
    key = meta.pop("idempotency_key")
    intents = intents_of(wh, "contract", "p")
    intents.record([key])
    created = api.submit(sent.data, api.provider.encoding(SPEC), key, meta, False, lambda text: None)  # then died
    if api.holds_keys:
        [found] = submit(api, wh, sent)
        assert found.id == created.id and intents.recorded([key])[key].batch_id == created.id
    else:
        with pytest.raises(SubmissionBlocked, match=created.id):
            submit(api, wh, sent)
        intents.resolve({key: created.id})  # what `batch-pipeline intents resolve` does
        [found] = submit(api, wh, sent)
        assert found.id == created.id
    assert [b.id for b in api.created_since(intents.recorded([key])[key].at)] == [created.id]


def test_a_resolved_batch_does_not_block_its_sibling_shards(connect, tmp_path):
    """Two shards, the process died right after the first one's create: once that batch is
    recorded (found by key, or resolved by the operator), the rerun reuses it and sends the
    second shard; the recorded batch is no candidate for the second shard's open intent."""
    api, wh = connect(), Warehouse(str(tmp_path / "wh"))
    first = shard(api)
    second = Shard(1, "contract/requests/shard-00001.jsonl", first.data.replace(b"question", b"query"), 1, 10)
    tags = [batch_metadata("contract", "p", SPEC.model, s) for s in (first, second)]
    keys = [t.pop("idempotency_key") for t in tags]
    intents = intents_of(wh, "contract", "p")
    intents.record(keys)
    created = api.submit(first.data, api.provider.encoding(SPEC), keys[0], tags[0], False, lambda text: None)  # died
    if not api.holds_keys:
        with pytest.raises(SubmissionBlocked, match=created.id):
            submit(api, wh, first, second)
        intents.resolve({keys[0]: created.id})  # what `batch-pipeline intents resolve` does
    reused, sent = submit(api, wh, first, second)
    assert reused.id == created.id and sent.id != created.id
    assert sorted(b.id for b in api.created_since(intents.recorded(keys)[keys[0]].at)) == sorted([created.id, sent.id])


def test_statuses_move_forward_in_one_vocabulary(connect, tmp_path):
    api = connect()
    [batch] = submit(api, Warehouse(str(tmp_path / "wh")), shard(api))
    seen = [batch.status, *settle(api, batch.id)]
    ended = next(i for i, status in enumerate(seen) if status not in RUNNING)
    assert set(seen) <= STATUSES and set(seen[:ended]) <= RUNNING and set(seen[ended:]) == {"completed"}
    assert [ORDER.index(s) for s in seen] == sorted(ORDER.index(s) for s in seen)
    counts = api.retrieve(batch.id).request_counts  # None where the provider reports none (Gemini's SDK)
    assert counts is None or counts.total == 3


def results(api: BatchAPI, batch: ProviderBatch, expected: list[str]) -> list[dict]:
    files = [api.download(batch, kind) for kind in api.result_kinds(batch)]
    parsed = api.parse_results(files)
    assert parsed.schema == RESULT_ROWS
    outcome = BatchOutcome(batch.id, batch.status, batch.error_code, batch.error_message)
    return batch_lines(outcome, 1, expected, parsed).to_pylist()


def test_results_come_back_as_neutral_rows_for_every_outcome(connect, tmp_path):
    api, expected = connect(failing=True), [f"r{i}" for i in range(3)]
    [batch] = submit(api, Warehouse(str(tmp_path / "wh")), shard(api))
    settle(api, batch.id)
    lines = results(api, api.retrieve(batch.id), [line_custom_id(x) for x in shard(api).data.splitlines()])
    assert len(lines) == len(expected) and {line["status"] for line in lines} == {"succeeded", "failed"}
    for line in lines:
        if line["status"] == "succeeded":
            assert line["output"] and line["input_tokens"] and line["error_code"] is None
        else:
            assert line["output"] is None and line["error_code"] and line["error_message"]


def test_an_expired_batch_accounts_for_every_request(connect, tmp_path):
    api = connect(expire=True)
    [batch] = submit(api, Warehouse(str(tmp_path / "wh")), shard(api))
    assert settle(api, batch.id)[-1] == "expired"
    ids = [line_custom_id(x) for x in shard(api).data.splitlines()]
    lines = results(api, api.retrieve(batch.id), ids)
    assert sorted(line["custom_id"] for line in lines) == sorted(ids)
    assert {line["status"] for line in lines} == {"expired"}


def test_a_running_batch_can_be_cancelled(connect, tmp_path):
    api = connect(slow=True)
    [batch] = submit(api, Warehouse(str(tmp_path / "wh")), shard(api))
    assert api.cancel(batch.id).status in RUNNING | {"cancelled"}  # Gemini has no cancelling state of its own
    assert settle(api, batch.id)[-1] == "cancelled"


def test_cleanup_deletes_provider_files_once(connect, tmp_path):
    api = connect()
    [batch] = submit(api, Warehouse(str(tmp_path / "wh")), shard(api))
    settle(api, batch.id)
    files = api.retrieve(batch.id).files
    if not files:
        pytest.skip(f"{api.provider.name} keeps no files for a batch: nothing to clean up")
    for file_id in files.values():
        assert api.delete_file(file_id) is True
        assert api.delete_file(file_id) is False
