"""The tests run offline: no OPENAI_API_KEY (so the embedded local Batch API), and the warehouse,
the local Batch API's state and the Dagster instance in temporary folders."""

from pathlib import Path

import dagster as dg
import pytest

PROJECT_ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="session")
def tree() -> dg.ComponentTree:
    """The project's components, found as `dg` finds them (pyproject.toml's `[tool.dg]`)."""
    return dg.ComponentTree.for_project(PROJECT_ROOT)


@pytest.fixture(scope="session")
def instance(tmp_path_factory: pytest.TempPathFactory):
    """One Dagster instance for the session, its warehouse and local Batch API state beside it;
    the use cases never share a partition."""
    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as env:
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
            env.delenv(name, raising=False)
        env.setenv("BATCH_PIPELINE_WAREHOUSE", str(root / "warehouse"))
        env.setenv("BATCH_PIPELINE_LOCAL_API_DIR", str(root / "local_api"))
        with dg.instance_for_test() as instance:
            yield instance
