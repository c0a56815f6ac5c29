"""A canary API key through the whole pipeline appears nowhere: logs, events, files, errors; for
OpenAI, Anthropic and Gemini, each through its official SDK against the served local Batch API."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import openai
import pytest

from tests.conftest import PROJECT_ROOT
from tests.local_api.conftest import launch


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# Each provider: its key variable, and its base URL given the served local API's `/v1` URL.
PROVIDERS = {
    "openai": ("OPENAI_API_KEY", lambda v1: v1),
    "anthropic": ("ANTHROPIC_API_KEY", lambda v1: v1.removesuffix("/v1")),
    "gemini": ("GEMINI_API_KEY", lambda v1: v1.removesuffix("/v1")),
}
KEY_VARIABLES = ("OPENAI_", "BATCH_PIPELINE_", "ANTHROPIC_", "GEMINI_", "GOOGLE_")


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_canary_key_never_leaks(tmp_path, provider):
    canary = f"sk-canary-{uuid.uuid4().hex}"
    variable, base_url = PROVIDERS[provider]
    server = launch(tmp_path / "api", tmp_path, "--pace-seconds", "0.2", api_key=canary)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(KEY_VARIABLES)}
        env |= {variable: canary, "DAGSTER_HOME": str(tmp_path / "home"), "PYTHONFAULTHANDLER": "1"}
        (tmp_path / "home").mkdir()
        # Two use cases (chat and responses) take the key through every stage a key could leak from
        # (upload, create, monitor, download, delete, the estimate), without the demo's 39 partitions.
        demo = subprocess.run(
            [sys.executable, "-m", "batch_pipeline.cli", "demo", "--provider", provider,
             "--base-url", base_url(server.base_url), "--warehouse", str(tmp_path / "warehouse"),
             "--use-case", "patient_education", "--use-case", "ad_copy"],
            cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=400,
        )
        assert demo.returncode == 0, (
            demo.stdout.decode()[-3000:] + demo.stderr.decode()[-3000:])

        wrong = f"sk-wrong-{uuid.uuid4().hex}"
        with pytest.raises(openai.AuthenticationError) as info:
            openai.OpenAI(api_key=wrong, base_url=server.base_url, max_retries=0).batches.list()
        assert wrong not in str(info.value) and wrong not in repr(info.value.body)
    finally:
        server.stop()

    output = demo.stdout + demo.stderr
    assert b"results written" in output and canary.encode() not in output
    assert canary.encode() not in server.log_path.read_bytes() and wrong.encode() not in server.log_path.read_bytes()
    for root in (tmp_path / "home", tmp_path / "warehouse", tmp_path / "api"):
        assert root.exists() and files_containing(root, canary.encode()) == [], root
