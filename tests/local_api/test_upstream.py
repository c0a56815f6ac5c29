"""Upstream forwarding: a small synchronous OpenAI-compatible server becomes a Batch API."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from batch_pipeline.local_api import LocalAPISettings
from tests.local_api.conftest import MakeClient
from tests.local_api.support import chat_line, read_jsonl, submit, wait_terminal


class _Upstream(ThreadingHTTPServer):
    """Answers chat completions by echoing the prompt; rate-limits 'flaky' once and rejects 'bad'."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.attempts: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.auth: set[str] = set()


class _Handler(BaseHTTPRequestHandler):
    server: _Upstream

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers["content-length"])))
        prompt = body["messages"][-1]["content"]
        with self.server.lock:
            self.server.attempts[prompt] += 1
            attempt = self.server.attempts[prompt]
            self.server.active += 1
            self.server.max_active = max(self.server.max_active, self.server.active)
            self.server.auth.add(self.headers.get("authorization", ""))
            # Until two calls have overlapped, hold each one until a second arrives (or a second
            # passes: a chunk of one line is sent alone), so that "concurrent" does not depend on
            # two threads of a loaded machine starting within the 50 ms below.
            self.server.changed.notify_all()
            self.server.changed.wait_for(lambda: self.server.max_active >= 2, timeout=1.0)
        time.sleep(0.05)
        if self.path != "/v1/chat/completions":
            status, reply = 404, {"error": {"message": "no such route", "type": "invalid_request_error"}}
        elif prompt == "flaky" and attempt == 1:
            status, reply = 429, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
        elif prompt == "bad":
            status, reply = 400, {"error": {"message": "bad prompt", "type": "invalid_request_error",
                                            "param": "messages", "code": None}}
        else:
            status, reply = 200, {"id": "chatcmpl-up", "object": "chat.completion", "model": body["model"],
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": f"ECHO: {prompt}"}}],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
        with self.server.lock:
            self.server.active -= 1
        payload = orjson.dumps(reply)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_batches_are_served_by_the_upstream_server(make_client: MakeClient, upstream: _Upstream) -> None:
    settings = LocalAPISettings(pace_seconds=0.02, upstream_url=f"http://127.0.0.1:{upstream.server_port}/v1",
                                upstream_api_key="sk-upstream", upstream_concurrency=4)
    client = make_client(settings)
    prompts = [f"prompt {i}" for i in range(16)] + ["flaky", "bad"]
    batch = wait_terminal(client, submit(client, [chat_line(f"r{i}", p) for i, p in enumerate(prompts)]))
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 18, "completed": 17, "failed": 1}
    output = {r["custom_id"]: r["response"]["body"] for r in read_jsonl(client, batch.output_file_id)}
    assert output["r0"]["choices"][0]["message"]["content"] == "ECHO: prompt 0"
    assert output["r16"]["choices"][0]["message"]["content"] == "ECHO: flaky"
    [error] = read_jsonl(client, batch.error_file_id)
    assert error["custom_id"] == "r17" and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["message"] == "bad prompt"
    assert upstream.attempts["flaky"] == 2, "429 retried"
    assert upstream.attempts["bad"] == 1, "400 not retried"
    assert 1 < upstream.max_active <= 4, "bounded concurrency"
    assert upstream.auth == {"Bearer sk-upstream"}
    assert batch.usage.input_tokens == 17 * 3
