"""Deleting a harvested partition's provider files: 404 is done, other errors are warnings (the file
stays noted for the next run), and an output or error file with no raw copy in the warehouse is
never deleted."""

from __future__ import annotations

from pathlib import Path

import httpx2
import openai
from openai.types import Batch

from batch_pipeline.harvest.provider_files import delete_provider_files, note_provider_files
from batch_pipeline.provider.contract import ProviderBatch
from batch_pipeline.provider.openai_api import OpenAIBatchAPI, OpenAIProvider
from batch_pipeline.provider.openai_wire import provider_batch
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse

PARTITION = "2026-11-20"
STATUS = {"file-in1": 200, "file-out1": 200, "file-err1": 404, "file-in2": 403, "file-out2": 200}


def gateway(deleted: list[str], status: dict[str, int] = STATUS) -> OpenAIBatchAPI:
    """The OpenAI adapter on the real `openai` client whose DELETE /v1/files/{id} answers from `status`."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        assert request.method == "DELETE"
        file_id = request.url.path.rsplit("/", 1)[-1]
        deleted.append(file_id)
        if status[file_id] == 200:
            return httpx2.Response(200, json={"id": file_id, "object": "file", "deleted": True})
        return httpx2.Response(status[file_id], json={"error": {"message": "no", "type": "invalid_request_error",
                                                                "param": None, "code": None}})

    client = openai.OpenAI(api_key="sk-unit", base_url="http://provider.test/v1", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))
    return OpenAIBatchAPI(OpenAIProvider(), client)


def batch(n: int, output: str | None, error: str | None) -> ProviderBatch:
    return provider_batch(Batch(id=f"batch_{n}", object="batch", endpoint="/v1/chat/completions",
                                completion_window="24h", created_at=0, status="completed",
                                input_file_id=f"file-in{n}", output_file_id=output, error_file_id=error))


def test_deletes_inputs_and_kept_files_tolerating_404_and_warning_on_other_errors(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    raw = wh.partition_dir("notes", layout.RAW, PARTITION)
    for name in (layout.raw_file("batch_1", "output"), layout.raw_file("batch_1", "error")):
        wh.write_bytes(raw / name, b"{}\n")
    batches = [batch(1, "file-out1", "file-err1"), batch(2, "file-out2", "")]  # batch_2's output not kept
    sent: list[str] = []
    warnings: list[str] = []

    note_provider_files(wh, "notes", PARTITION, batches)
    deleted = delete_provider_files(wh, gateway(sent), "notes", PARTITION, warnings.append)

    assert sent == ["file-in1", "file-out1", "file-err1", "file-in2"]  # never file-out2
    assert deleted == 2  # file-err1 was gone already (404): done, not counted, no warning
    assert len(warnings) == 2
    assert "file-in2" in warnings[0] and "PermissionDeniedError, HTTP 403" in warnings[0]
    assert "file-out2" in warnings[1] and "not kept in the warehouse" in warnings[1]
    assert not any("sk-unit" in w for w in warnings)


def test_files_a_run_could_not_delete_stay_noted_for_the_next_one(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    note_provider_files(wh, "notes", PARTITION, [batch(2, "file-out2", "")])  # 403, and not kept
    assert delete_provider_files(wh, gateway([]), "notes", PARTITION, [].append) == 0
    wh.write_bytes(wh.partition_dir("notes", layout.RAW, PARTITION) / layout.raw_file("batch_2", "output"), b"{}\n")
    sent: list[str] = []
    gone = {**STATUS, "file-in2": 404}  # gone meanwhile (expired, or deleted by hand): done
    assert delete_provider_files(wh, gateway(sent, gone), "notes", PARTITION, [].append) == 1
    assert sorted(sent) == ["file-in2", "file-out2"]
    assert not (wh.partition_dir("notes", layout.REQUESTS, PARTITION) / layout.DELETIONS_FILE).exists()
    assert delete_provider_files(wh, gateway([]), "notes", PARTITION, [].append) == 0  # nothing left noted
