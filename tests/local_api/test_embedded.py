"""The embedded mode: in-process, nothing started, shared by several processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import openai
import pytest

from batch_pipeline.local_api import LocalAPISettings, embedded_client
from tests.local_api.conftest import StartServer
from tests.local_api.support import FAST, chat_line, read_jsonl, submit, wait_terminal

_SUBMIT_AND_POLL = textwrap.dedent("""
    import sys, time, orjson
    from batch_pipeline.local_api import LocalAPISettings, embedded_client
    client = embedded_client(sys.argv[1], settings=LocalAPISettings(pace_seconds=0.3, advance_budget_seconds=0.02))
    if sys.argv[2] == "submit":
        lines = [{"custom_id": f"p-{i}", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"row {i}"}]}}
                 for i in range(400)]
        data = b"".join(orjson.dumps(line) + b"\\n" for line in lines)
        file_id = client.files.create(file=("in.jsonl", data), purpose="batch").id
        print(client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                    completion_window="24h").id)
    else:
        while client.batches.retrieve(sys.argv[2]).status not in ("completed", "failed"):
            time.sleep(0.005)
""")


def _python(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _SUBMIT_AND_POLL, *args], stdout=subprocess.PIPE, text=True)


def test_processes_share_batches_and_advance_them_together(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "shared")
    submitter = _python(data_dir, "submit")
    batch_id = submitter.communicate(timeout=60)[0].strip()
    assert submitter.returncode == 0 and batch_id.startswith("batch_")

    pollers = [_python(data_dir, batch_id) for _ in range(3)]
    client = embedded_client(data_dir, settings=LocalAPISettings(pace_seconds=0.3, advance_budget_seconds=0.02))
    batch = wait_terminal(client, batch_id)
    for poller in pollers:
        assert poller.wait(timeout=60) == 0
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 400, "completed": 400, "failed": 0}
    ids = Counter(r["custom_id"] for r in read_jsonl(client, batch.output_file_id))
    assert ids == Counter({f"p-{i}": 1 for i in range(400)}), "every line exactly once across 4 processes"


def test_embedded_client_leaves_no_threads(tmp_path: Path) -> None:
    before = threading.active_count()
    client = embedded_client(tmp_path, settings=FAST)
    batch = wait_terminal(client, submit(client, [chat_line("a")]))
    assert read_jsonl(client, batch.output_file_id)
    assert threading.active_count() == before


def test_embedded_client_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    client = embedded_client(tmp_path, settings=FAST)

    async def main() -> str:
        return wait_terminal(client, submit(client, [chat_line("a")])).status

    assert asyncio.run(main()) == "completed"


def test_server_and_embedded_clients_share_a_data_dir(tmp_path: Path, start_server: StartServer) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, "--pace-seconds", "0.05")
    batch_id = submit(server.client(), [chat_line("a"), chat_line("b")])
    batch = wait_terminal(embedded_client(data_dir, settings=FAST), batch_id)
    assert batch.request_counts.completed == 2


def test_api_key_is_required_when_set_and_never_logged(tmp_path: Path, start_server: StartServer) -> None:
    server = start_server(None, api_key="sk-secret-key-123")
    assert b"sk-secret-key-123" not in Path(f"/proc/{server.pid}/cmdline").read_bytes()  # not in `ps`
    with pytest.raises(openai.AuthenticationError) as error:
        server.client(api_key="sk-wrong").files.list()
    assert error.value.status_code == 401 and error.value.code == "invalid_api_key"
    assert "sk-wrong" not in error.value.message
    missing = server.client()._client.get(server.base_url + "/files")
    assert missing.status_code == 401
    assert server.client(api_key="sk-secret-key-123").files.list().data == []
    server.stop()
    assert "sk-secret-key-123" not in server.log() and "sk-wrong" not in server.log()
