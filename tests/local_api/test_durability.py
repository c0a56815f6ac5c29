"""Durability and safety: SIGKILL mid-batch then restart, concurrent clients, loopback binding."""

from __future__ import annotations

import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import openai
import orjson
import pytest

from batch_pipeline.local_api import LocalAPISettings, embedded_client
from tests.local_api.conftest import StartServer, settings_flags
from tests.local_api.support import TERMINAL, chat_line, jsonl, read_jsonl, wait_for, wait_terminal
from tests.local_api.test_anthropic import request, results, wait_ended
from tests.local_api.test_gemini import ask, served_client, wait_done

LINES = [chat_line(f"row-{i}", f"Leaflet for medication {i}") for i in range(300)]


def test_sigkill_while_in_progress_then_restart_completes_every_line(tmp_path: Path,
                                                                     start_server: StartServer) -> None:
    data_dir = tmp_path / "data"
    # in_progress lasts 2 s: long beside the gap between a poll and the kill on a loaded machine.
    flags = settings_flags(LocalAPISettings(pace_seconds=2.0))
    server = start_server(data_dir, *flags)
    client = server.client()
    file_id = client.files.create(file=("in.jsonl", jsonl(LINES)), purpose="batch").id
    batch_id = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                     completion_window="24h").id
    batch = wait_for(client, batch_id, ("in_progress", "finalizing", *TERMINAL),
                     condition=lambda b: b.status != "in_progress" or b.request_counts.completed > 0)
    server.kill()
    assert batch.status == "in_progress", "the batch ran all its lines before the test could kill the server"

    restarted = start_server(data_dir, *flags)
    client = restarted.client()
    batch = wait_terminal(client, batch_id)
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 300, "completed": 300, "failed": 0}
    ids = Counter(r["custom_id"] for r in read_jsonl(client, batch.output_file_id))
    assert ids == Counter(line["custom_id"] for line in LINES), "every line exactly once after the restart"
    assert client.files.retrieve(file_id).bytes == len(jsonl(LINES))


@pytest.mark.parametrize("mode", ["http", "embedded"])
def test_ten_concurrent_clients_corrupt_nothing(mode: str, tmp_path: Path, start_server: StartServer) -> None:
    settings = LocalAPISettings(pace_seconds=0.05)
    if mode == "http":
        base_url = start_server(tmp_path / "data", *settings_flags(settings)).base_url

        def new_client() -> openai.OpenAI:
            return openai.OpenAI(base_url=base_url, api_key="sk-local")
    else:
        def new_client() -> openai.OpenAI:
            return embedded_client(tmp_path / "data", settings=settings)

    def work(worker: int) -> list[tuple[str, str, int]]:
        client = new_client()
        created = []
        for shard in range(3):
            lines = [chat_line(f"w{worker}-s{shard}-{i}", f"worker {worker} shard {shard} row {i}") for i in range(20)]
            file_id = client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch").id
            batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                          completion_window="24h", metadata={"worker": str(worker)})
            created.append((file_id, batch.id, len(jsonl(lines))))
        return created

    with ThreadPoolExecutor(max_workers=10) as pool:
        created = [item for items in pool.map(work, range(10)) for item in items]
    client = new_client()
    assert len({batch_id for _, batch_id, _ in created}) == 30
    listed = {b.id for b in client.batches.list(limit=100)}
    assert listed == {batch_id for _, batch_id, _ in created}
    for file_id, batch_id, size in created:
        assert client.files.retrieve(file_id).bytes == size
        batch = wait_terminal(client, batch_id)
        assert batch.request_counts.model_dump() == {"total": 20, "completed": 20, "failed": 0}
        assert len(read_jsonl(client, batch.output_file_id)) == 20


def test_server_binds_loopback_by_default(start_server: StartServer) -> None:
    server = start_server()
    assert server.base_url.startswith("http://127.0.0.1:")
    assert "Uvicorn running on http://127.0.0.1:" in server.log()


def test_anthropic_and_gemini_batches_files_and_results_survive_sigkill(tmp_path: Path,
                                                                       start_server: StartServer) -> None:
    """Served, both protocols: what ended before a SIGKILL reads the same after the restart, and what
    was in flight finishes with every request once."""
    data_dir, flags = tmp_path / "data", settings_flags(LocalAPISettings(pace_seconds=1.0))
    server = start_server(data_dir, *flags)
    origin = server.base_url.removesuffix("/v1")
    claude, gemini = anthropic.Anthropic(api_key="k", base_url=origin), served_client(origin)
    ended_batch = claude.messages.batches.create(requests=[request(f"a{i}", f"Leaflet {i}") for i in range(4)])
    inline = gemini.batches.create(model="gemini-2.5-flash", src=[ask(f"q{i}", metadata={"row": str(i)})
                                                                  for i in range(3)])
    data = b"".join(orjson.dumps({"key": f"k{i}", "request": ask(f"file {i}")}) + b"\n" for i in range(3))
    uploaded = gemini.files.upload(file=io.BytesIO(data), config={"mime_type": "application/jsonl"})
    from_file = gemini.batches.create(model="gemini-2.5-flash", src=uploaded.name or "")
    before = wait_ended(claude, ended_batch.id).model_dump(exclude={"results_url"})
    before_results = results(claude, ended_batch.id)
    before_inline = wait_done(gemini, inline.name or "").model_dump(exclude={"update_time"})
    responses_file = wait_done(gemini, from_file.name or "").dest.file_name  # type: ignore[union-attr]
    before_file = gemini.files.download(file=responses_file or "")
    flying = claude.messages.batches.create(requests=[request(f"f{i}", f"Note {i}") for i in range(40)])
    flying_job = gemini.batches.create(model="gemini-2.5-flash", src=[ask(f"f{i}", metadata={"row": str(i)})
                                                                      for i in range(40)])
    server.kill()

    origin = start_server(data_dir, *flags).base_url.removesuffix("/v1")
    claude, gemini = anthropic.Anthropic(api_key="k", base_url=origin), served_client(origin)
    assert claude.messages.batches.retrieve(ended_batch.id).model_dump(exclude={"results_url"}) == before
    assert results(claude, ended_batch.id) == before_results
    assert gemini.batches.get(name=inline.name or "").model_dump(exclude={"update_time"}) == before_inline
    assert gemini.files.download(file=responses_file or "") == before_file
    assert gemini.files.get(name=uploaded.name or "").size_bytes == len(data)
    assert wait_ended(claude, flying.id).request_counts.succeeded == 40
    assert set(results(claude, flying.id)) == {f"f{i}" for i in range(40)}
    job = wait_done(gemini, flying_job.name or "")
    responses = job.dest.inlined_responses if job.dest else None
    assert [r.metadata for r in responses or []] == [{"row": str(i)} for i in range(40)]
    assert {b.id for b in claude.messages.batches.list()} == {ended_batch.id, flying.id}
    assert {j.name for j in gemini.batches.list()} == {inline.name, from_file.name, flying_job.name}
