"""The local Batch API answering as Azure OpenAI, to the unmodified `openai.AzureOpenAI` client,
embedded and served: its routes (`/openai/...?api-version=`), endpoint form, deployment names,
limits, error codes and quirks (docs/provider-port.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from batch_pipeline.local_api.embedded import EMBEDDED_ORIGIN, embedded_http_client
from tests.local_api.conftest import ThreadedServer
from tests.local_api.support import FAST, jsonl, read_jsonl, wait_for, wait_terminal

API_VERSION = "2024-10-21"
DEPLOYMENT = "triage-batch"
SETTINGS = FAST.model_copy(update={"azure_deployments": {DEPLOYMENT: "gpt-4o-mini", "big-batch": "gpt-4o"},
                                   "azure_max_requests_per_batch": 3})
TWO_WEEKS = 14 * 86400


def azure_line(custom_id: str, deployment: str = DEPLOYMENT, url: str = "/chat/completions") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": deployment, "messages": [{"role": "user", "content": f"ticket {custom_id}"}]}}


@pytest.fixture(params=["embedded", "http"])
def azure(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[openai.AzureOpenAI]:
    """An unmodified `AzureOpenAI` client on the local Batch API, in-process or over HTTP."""
    if request.param == "embedded":
        yield openai.AzureOpenAI(azure_endpoint=EMBEDDED_ORIGIN, api_version=API_VERSION, api_key="k",
                                 http_client=embedded_http_client(tmp_path / "data", settings=SETTINGS))
        return
    server = ThreadedServer(tmp_path / "served", SETTINGS)
    try:
        yield openai.AzureOpenAI(azure_endpoint=server.base_url.removesuffix("/v1"), api_version=API_VERSION,
                                 api_key="k")
    finally:
        server.stop()


def run(azure: openai.AzureOpenAI, lines: list[dict[str, Any]], endpoint: str = "/chat/completions"):
    file = azure.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch",
                              expires_after={"anchor": "created_at", "seconds": TWO_WEEKS})
    created = azure.batches.create(input_file_id=file.id, endpoint=endpoint,  # type: ignore[arg-type]
                                   completion_window="24h", metadata={"pipeline": "test"})
    return created, wait_terminal(azure, created.id)


def test_a_batch_runs_on_azure_routes_with_deployment_names_and_azure_quirks(azure):
    assert str(azure.base_url).endswith("/openai/")
    created, done = run(azure, [azure_line("a"), azure_line("b", url="/v1/chat/completions")])
    assert created.endpoint == "/chat/completions" and created.output_file_id == "" == created.error_file_id
    assert done.status == "completed" and done.metadata == {"pipeline": "test"}
    answers = read_jsonl(azure, done.output_file_id)
    assert {a["custom_id"] for a in answers} == {"a", "b"}
    assert {a["response"]["body"]["model"] for a in answers} == {"gpt-4o-mini"}  # the deployment's model
    assert done.error_file_id and azure.files.content(done.error_file_id).content == b""  # clean: empty file
    assert [b.id for b in azure.batches.list(limit=10)] == [done.id]


def test_a_batch_with_only_failures_has_no_output_file_written_as_empty_text(azure):
    _, done = run(azure, [{**azure_line("a"), "body": {"model": DEPLOYMENT, "messages": []}}])
    assert done.status == "completed" and done.output_file_id == ""
    assert [line["response"]["status_code"] for line in read_jsonl(azure, done.error_file_id)] == [400]


@pytest.mark.parametrize(("lines", "code"), [
    ([azure_line("a"), azure_line("b", url="/embeddings")], "url_mismatch"),
    ([azure_line("a", deployment="nobody")], "model_not_found"),
    ([azure_line("a"), azure_line("b", deployment="big-batch")], "model_mismatch"),
    ([azure_line(str(i)) for i in range(4)], "too_many_tasks"),  # over the limit set for Azure (3)
    ([azure_line("a"), azure_line("a")], "duplicate_custom_id"),
])
def test_invalid_files_fail_with_azure_s_codes(azure, lines, code):
    _, done = run(azure, lines)
    assert done.status == "failed" and code in {error.code for error in done.errors.data}
    assert done.output_file_id == "" == done.error_file_id


def test_the_api_version_is_required_and_uploads_live_two_to_four_weeks(azure):
    missing = azure._client.get(f"{azure.base_url}batches")  # the client itself always sends it
    assert missing.status_code == 404 and "api-version" in missing.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="between 1209600 and 2592000"):
        azure.files.create(file=("in.jsonl", jsonl([azure_line("a")])), purpose="batch",
                           expires_after={"anchor": "created_at", "seconds": 7 * 86400})
    with pytest.raises(openai.BadRequestError) as refused:
        azure.batches.create(input_file_id="file-x", endpoint="/images/variations",  # type: ignore[arg-type]
                             completion_window="24h")
    assert refused.value.param == "endpoint"


def test_with_fail_fast_quota_an_over_quota_create_is_refused_at_once(tmp_path):
    settings = SETTINGS.model_copy(update={"azure_quota_fail_fast": True, "enqueued_token_limit": 15})
    azure = openai.AzureOpenAI(azure_endpoint=EMBEDDED_ORIGIN, api_version=API_VERSION, api_key="k",
                               http_client=embedded_http_client(tmp_path / "data", settings=settings))
    files = [azure.files.create(file=(f"{name}.jsonl", jsonl([azure_line(name)])), purpose="batch").id
             for name in ("a", "b")]  # 9 prompt tokens each: one fits under 15, two do not
    first = azure.batches.create(input_file_id=files[0], endpoint="/chat/completions", completion_window="24h")
    with pytest.raises(openai.BadRequestError) as refused:  # at once: no batch left to fail later
        azure.batches.create(input_file_id=files[1], endpoint="/chat/completions", completion_window="24h")
    assert refused.value.code == "token_limit_exceeded" and "'triage-batch'" in refused.value.message
    assert [b.id for b in azure.batches.list()] == [first.id]
    assert wait_terminal(azure, first.id).status == "completed"  # its tokens are released
    second = azure.batches.create(input_file_id=files[1], endpoint="/chat/completions", completion_window="24h")
    assert wait_terminal(azure, second.id).status == "completed"


def test_legacy_forms_show_capitalised_statuses_and_iso_timestamps(tmp_path):
    settings = SETTINGS.model_copy(update={"azure_legacy_forms": True})
    azure = openai.AzureOpenAI(azure_endpoint=EMBEDDED_ORIGIN, api_version=API_VERSION, api_key="k",
                               http_client=embedded_http_client(tmp_path / "data", settings=settings))
    file = azure.files.create(file=("in.jsonl", jsonl([azure_line("a")])), purpose="batch")
    created = azure.batches.create(input_file_id=file.id, endpoint="/chat/completions", completion_window="24h")
    assert created.status == "Validating" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(created.created_at))
    done = wait_for(azure, created.id, ("Completed",))
    assert isinstance(done.completed_at, str) and [b.status for b in azure.batches.list()] == ["Completed"]
    assert len(read_jsonl(azure, done.output_file_id)) == 1  # the files are as ever

