"""The tests run offline: no OPENAI_API_KEY (so the embedded local Batch API), and the warehouse,
the local Batch API's state, the Dagster instance and the sample lake in temporary folders."""

import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pytest

# Before support_team is imported: the use cases read their tables' locations when defined.
LAKE = Path(tempfile.mkdtemp(prefix="support-lake-"))
os.environ["SUPPORT_LAKE"] = str(LAKE)


@pytest.fixture(scope="session", autouse=True)
def sample_lake():
    from support_team import sample_data

    sample_data.write(LAKE)
    yield LAKE
    shutil.rmtree(LAKE, ignore_errors=True)


@pytest.fixture(scope="session")
def instance(tmp_path_factory: pytest.TempPathFactory):
    """One Dagster instance for the session (DAGSTER_HOME set to it, as the pipeline requires), its
    warehouse and local Batch API state beside it; the use cases never share a partition."""
    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as env:
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
            env.delenv(name, raising=False)
        env.setenv("BATCH_PIPELINE_WAREHOUSE", str(root / "warehouse"))
        env.setenv("BATCH_PIPELINE_LOCAL_API_DIR", str(root / "local_api"))
        with dg.instance_for_test() as instance:
            yield instance
