"""Shared fixtures: an isolated warehouse, local Batch API state and Dagster instance per test."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pipeline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No key (so the embedded local Batch API), and every store under tmp_path."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCH_PIPELINE_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("BATCH_PIPELINE_LOCAL_API_DIR", str(tmp_path / "local_api"))
    return tmp_path


@pytest.fixture
def instance(pipeline_env: Path):
    with dg.instance_for_test() as instance:
        yield instance
