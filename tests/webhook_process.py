"""`batch-pipeline webhooks` as a process, for tests/test_webhooks.py and benchmarks/bench_webhooks.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from tests.conftest import free_loopback_port

START_SECONDS = 120.0  # generous: importing Dagster on a loaded 2-core machine takes a while


@contextmanager
def receiver(home: Path, log_dir: Path, secret: str) -> Iterator[str]:
    """The receiver on a free port over the Dagster home `home`, the secret in its environment
    (never its command line); yields the URL deliveries go to. Stopped by its PID on exit."""
    port = free_loopback_port()
    env = {**os.environ, "OPENAI_WEBHOOK_SECRET": secret, "DAGSTER_HOME": str(home)}
    with open(log_dir / "receiver.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "batch_pipeline.cli", "webhooks", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _answers(f"http://127.0.0.1:{port}/healthz"):
            assert process.poll() is None and time.monotonic() < deadline, (log_dir / "receiver.log").read_text()
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/webhooks/openai"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=1).status_code == 200
    except httpx2.TransportError:
        return False
