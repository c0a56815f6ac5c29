"""The provider contract: OpenAI's and Azure OpenAI's request lines, file limits and settings, and
Azure's quirks read by the harvest (empty error file, `""` for no file, a byte order mark, its
batch error codes)."""

from __future__ import annotations

import codecs
import dataclasses
from pathlib import Path

import httpx2
import openai
import orjson
import pyarrow as pa
import pytest
from openai.types import Batch, BatchRequestCounts

from batch_pipeline import BatchSpec, FileSource
from batch_pipeline.harvest.lines import BatchOutcome, batch_lines
from batch_pipeline.provider.azure_api import AzureOpenAIProvider, parse_deployments
from batch_pipeline.provider.contract import ProviderSettingError, QuotaRefused, RequestCounts
from batch_pipeline.provider.openai_api import OpenAIBatchAPI, OpenAIProvider
from batch_pipeline.provider.openai_results import parse_lines, parse_results
from batch_pipeline.provider.openai_wire import batch_status, epoch_seconds, provider_batch
from batch_pipeline.requests.lines import build_requests

SPEC = BatchSpec(name="tickets", model="gpt-4o-mini", prompt="Triage: {text}")
AZURE = AzureOpenAIProvider("https://example.openai.azure.com", "2024-10-21",
                            deployments={"gpt-4o-mini": "triage-batch", "text-embedding-3-small": "vectors"})
SOURCE = FileSource("/unused.parquet", key="id")


def rows(n: int) -> pa.Table:
    return pa.table({"id": [f"t{i}" for i in range(n)], "text": ["printer on fire"] * n})


def test_azure_lines_name_the_deployment_and_the_endpoint_without_v1():
    built = build_requests(rows(2), SOURCE, SPEC, AZURE.encoding(SPEC))
    line = orjson.loads(built.shards[0].splitlines()[0])
    assert line["url"] == "/chat/completions" and line["body"]["model"] == "triage-batch"
    assert not built.shards[0].startswith(codecs.BOM_UTF8)  # Azure refuses a byte order mark
    assert build_requests(rows(2), SOURCE, SPEC).shards == build_requests(
        rows(2), SOURCE, SPEC, OpenAIProvider().encoding(SPEC)).shards  # OpenAI: the spec as written


def test_each_provider_s_file_limits_cut_the_shards():
    openai_form, azure_form = OpenAIProvider().encoding(SPEC), AZURE.encoding(SPEC)
    assert (openai_form.max_requests, azure_form.max_requests) == (50_000, 100_000)
    assert openai_form.max_bytes == azure_form.max_bytes == 200 * 1024 * 1024
    table = rows(60_000)
    assert [s.count(b"\n") for s in build_requests(table, SOURCE, SPEC, openai_form).shards] == [50_000, 10_000]
    assert [s.count(b"\n") for s in build_requests(table, SOURCE, SPEC, azure_form).shards] == [60_000]


def test_a_spec_s_own_limits_apply_within_the_provider_s():
    small = BatchSpec(name="s", model="gpt-4o-mini", prompt="{text}", max_requests_per_shard=4, max_shard_bytes=900)
    encoding = AZURE.encoding(small)
    assert (encoding.url, encoding.model, encoding.max_requests, encoding.max_bytes) == (  # type: ignore[attr-defined]
        "/chat/completions", "triage-batch", 4, 900)
    embeddings = BatchSpec(name="e", model="text-embedding-3-small", prompt="{text}", endpoint="/v1/embeddings",
                           parameters={"dimensions": 8})
    assert AZURE.encoding(embeddings).max_requests == 50_000  # 50,000 embedding inputs per file
    assert AZURE.encoding(embeddings).url == "/embeddings"


def test_a_model_without_a_deployment_is_refused_naming_the_setting():
    other = BatchSpec(name="s", model="gpt-4o", prompt="{text}")
    named = "no deployment for model 'gpt-4o'.*BATCH_PIPELINE_AZURE_DEPLOYMENTS"
    with pytest.raises(ProviderSettingError, match=named):
        AZURE.encoding(other)
    assert parse_deployments(" gpt-4o-mini = a , gpt-4o=b,") == {"gpt-4o-mini": "a", "gpt-4o": "b"}
    with pytest.raises(ProviderSettingError, match="BATCH_PIPELINE_AZURE_DEPLOYMENTS: 'gpt-4o' is not"):
        parse_deployments("gpt-4o")


def test_the_key_stays_out_of_reprs_and_descriptions():
    keyed = AzureOpenAIProvider("https://user:pw@example.openai.azure.com/?k=1", "2024-10-21", "sk-canary")
    assert "sk-canary" not in repr(keyed) and "pw" not in keyed.describe()
    assert keyed.describe() == "Azure OpenAI https://example.openai.azure.com/ (api-version 2024-10-21)"
    assert "sk-canary" not in repr(OpenAIProvider(api_key="sk-canary"))


def ok_line(cid: str) -> bytes:
    return orjson.dumps({"id": "r", "custom_id": cid, "error": None, "response": {"status_code": 200, "body": {
        "model": "gpt-4o-mini", "choices": [{"message": {"content": f"answer {cid}"}}]}}}) + b"\n"


def test_an_empty_error_file_and_a_byte_order_mark_parse_as_openai_s_files(tmp_path: Path):
    (tmp_path / "error.jsonl").write_bytes(b"")
    (tmp_path / "output.jsonl").write_bytes(codecs.BOM_UTF8 + ok_line("a") + ok_line("b"))
    parsed = parse_lines([tmp_path / "output.jsonl", tmp_path / "error.jsonl"])
    assert parsed["custom_id"].to_pylist() == ["a", "b"] and set(parsed["status"].to_pylist()) == {"succeeded"}
    assert parse_lines(b"").num_rows == 0
    odd = codecs.BOM_UTF8 + ok_line("a") + b'{"custom_id": "b", "response": {"status_code": "two hundred"}}\n'
    assert parse_lines(odd).to_pylist()[0]["output"] == "answer a"  # line by line, the mark skipped too


def test_azure_batch_error_codes_land_as_the_rows_error():
    outcome = BatchOutcome("batch_x", "failed", "url_mismatch", "The url of this request does not match.")
    lines = batch_lines(outcome, 1, ["a", "b"], parse_results([])).to_pylist()
    assert [(line["status"], line["error_code"]) for line in lines] == [("failed", "url_mismatch")] * 2


def test_an_empty_file_id_is_no_file():
    batch = provider_batch(Batch.model_construct(id="batch_1", status="expired", created_at=0, input_file_id="file-1",
                                                 output_file_id="", error_file_id="", errors=None))
    api = dataclasses.replace(AZURE, api_key="sk-unit").connect()
    assert batch.files == {"input": "file-1"} and list(api.result_kinds(batch)) == []


def as_the_client_reads(doc: dict) -> Batch:
    """A Batch built as the `openai` client builds it from a response: no validation."""
    counts = BatchRequestCounts.model_construct(**doc["request_counts"])
    return Batch.model_construct(**{**doc, "request_counts": counts})


AZURE_BATCH = {"id": "batch_1", "object": "batch", "endpoint": None, "input_file_id": "file-1",
               "completion_window": "24h", "status": "InProgress", "created_at": "2024-07-19T12:00:00Z",
               "in_progress_at": "2024-07-19T12:00:05.1234567Z", "expires_at": "2024-07-20T12:00:00+00:00",
               "completed_at": None, "output_file_id": "", "error_file_id": "",
               "request_counts": {"total": 10, "completed": None, "failed": None}}


def test_azure_statuses_timestamps_and_null_counts_read_as_openai_s():
    batch = provider_batch(as_the_client_reads(AZURE_BATCH))
    assert (batch.status, batch.created_at, batch.terminal) == ("in_progress", 1721390400, False)
    assert batch.files == {"input": "file-1"}  # "" is no file
    assert batch.request_counts == RequestCounts(10, 0, 0)


@pytest.mark.parametrize(("given", "status"), [
    ("Validating", "validating"), ("InProgress", "in_progress"), ("Finalizing", "finalizing"),
    ("Completed", "completed"), ("Failed", "failed"), ("Expired", "expired"), ("Cancelling", "cancelling"),
    ("Cancelled", "cancelled"), ("Canceled", "cancelled"), ("in_progress", "in_progress"),
])
def test_every_status_spelling_is_openai_s(given, status):
    assert batch_status(given) == status


@pytest.mark.parametrize(("value", "seconds"), [
    (1711471533, 1711471533), (1711471533.9, 1711471533), ("1711471533", 1711471533),
    ("2024-03-26T16:45:33", 1711471533), ("2024-03-26T17:45:33+01:00", 1711471533), ("soon", None), ("", None),
])
def test_timestamps_become_epoch_seconds(value, seconds):
    assert epoch_seconds(value) == seconds


def test_an_openai_batch_reads_as_it_is():
    doc = {**AZURE_BATCH, "status": "completed", "created_at": 1721390400, "output_file_id": "file-2",
           "request_counts": {"total": 10, "completed": 9, "failed": 1}, "metadata": {
               "pipeline": "batch_pipeline", "idempotency_key": "k1", "model": "gpt-4o-mini"}}
    batch = provider_batch(as_the_client_reads(doc))
    assert (batch.status, batch.created_at, batch.key, batch.terminal) == ("completed", 1721390400, "k1", True)
    assert batch.files == {"input": "file-1", "output": "file-2"} and batch.request_counts == RequestCounts(10, 9, 1)
    foreign = provider_batch(as_the_client_reads({**doc, "metadata": {"idempotency_key": "k1"}}))
    assert foreign.key is None and foreign.tags == {}  # not ours: no key, whatever it carries


@pytest.mark.parametrize("error", [
    {"code": "token_limit_exceeded", "message": "The number of enqueued tokens has surpassed the configured limit"},
    {"code": "invalid_request", "message": "Enqueued tokens over the limit",
     "innererror": {"code": "token_limit_exceeded"}},
])
def test_a_create_refused_for_the_quota_is_quota_refused(error):
    sent: list[str] = []
    with pytest.raises(QuotaRefused) as refused:
        submit(azure_gateway(sent, 400, {"error": error}))
    assert sent == ["POST"] and "enqueued tokens" not in str(refused.value)  # once; the provider's words not kept


def test_other_bad_requests_are_raised_as_they_are():
    invalid = {"error": {"code": "invalid_value", "message": "bad", "param": "endpoint"}}
    with pytest.raises(openai.BadRequestError):
        submit(azure_gateway([], 400, invalid))


def submit(api: OpenAIBatchAPI) -> None:
    api.submit(b"{}\n", AZURE.encoding(SPEC), "k", {}, earlier_attempt=False, log=lambda text: None)


def azure_gateway(sent: list[str], status: int, body: dict) -> OpenAIBatchAPI:
    """The Azure adapter on the real `AzureOpenAI` client: uploads succeed, every batch call is
    answered with `body`."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/files"):
            return httpx2.Response(200, json={"id": "file-1", "object": "file", "bytes": 3, "created_at": 0,
                                              "filename": "k.jsonl", "purpose": "batch", "status": "processed"})
        sent.append(request.method)
        return httpx2.Response(status, json=body)

    provider = dataclasses.replace(AZURE, api_key="sk-unit")
    return provider.connect(httpx2.Client(transport=httpx2.MockTransport(answer)), max_retries=0)
