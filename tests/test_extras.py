"""The `postgres` and `s3` extras install a working stack: a fresh venv,
`pip install '<project>[postgres,s3]' -c constraints.txt`.

What broke before: `.[postgres]` resolved SQLAlchemy 2.1, whose default driver behind a plain
`postgresql://` URL is psycopg 3, while dagster-postgres installs (and is written for) psycopg2,
so `dagster-daemon run` died with `No module named 'psycopg'`. One slow test (the install takes
about half a minute with pip's cache warm); deselect it with `-m 'not slow'`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import POSTGRES_CONFIG, PROJECT_ROOT, PostgresServer

# Inside the fresh venv: the driver SQLAlchemy picks for a plain URL is the one installed, and the
# shipped production config makes a Postgres-backed instance that records a materialization.
CHECK = """
import os, sys
import dagster as dg, psycopg2, sqlalchemy
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

url = os.environ["DAGSTER_PG_URL"]
assert url.startswith("postgresql://"), url
driver = sqlalchemy.create_engine(url).dialect.driver
assert driver == "psycopg2", driver
with dg.DagsterInstance.get() as instance:
    assert isinstance(instance.run_storage, PostgresRunStorage), instance.run_storage
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage), instance.event_log_storage

    @dg.asset
    def probe() -> int:
        return 1

    assert dg.materialize([probe], instance=instance).success
    assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None
print("sqlalchemy", sqlalchemy.__version__, "psycopg2", psycopg2.__version__.split()[0], "driver", driver)

# the s3 extra: an s3:// warehouse gets s3fs's filesystem (no call is made until it is used)
from batch_pipeline.warehouse.storage import Warehouse
assert type(Warehouse("s3://bucket/wh").root.fs).__name__ == "S3FileSystem"

# without the `local-api` extra the core imports, and the embedded local Batch API names the extra
import importlib.util
assert importlib.util.find_spec("starlette") is None, "the web stack came without the local-api extra"
import batch_pipeline.dagster.definitions
from batch_pipeline import LocalBatchAPIResource
try:
    LocalBatchAPIResource(data_dir=os.path.abspath("local_api")).client()
except ImportError as exc:
    assert "pip install 'batch_pipeline[local-api]'" in str(exc), exc
else:
    raise AssertionError("the embedded local Batch API started without its extra")
"""

# Where a build writes (build/, *.egg-info) or what the wheel leaves out: not copied.
_NOT_COPIED_AT_ROOT = {".git", ".venv", "build", "dist", "warehouse", ".local_batch_api", ".dagster_home",
                       "tests", "benchmarks", "examples", "data"}
_NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*_cache", ".tmp_dagster_home_*")


def source_tree_copy(dest: Path) -> Path:
    """The project's source tree, copied: building from the working tree itself would write
    build/ and *.egg-info into it."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(_NOT_COPIED(folder, names))
        return skipped | (_NOT_COPIED_AT_ROOT & set(names) if Path(folder) == PROJECT_ROOT else set())

    shutil.copytree(PROJECT_ROOT, dest, ignore=ignore)
    return dest


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_postgres_extra_installs_a_working_stack(postgres_server: PostgresServer, tmp_path: Path):
    venv = tmp_path / "venv"
    database = f"extras_{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        python = venv / "bin" / "python"
        source = source_tree_copy(tmp_path / "src")
        # This environment's pip installs into the new venv (`--python`), so the venv needs no pip
        # of its own; pip's wheel cache is reused; bytecode is compiled on first import instead.
        pip = [sys.executable, "-m", "pip", "--python", str(python)]
        # the versions the repository runs (constraints.txt), as `make` installs them
        install = subprocess.run([*pip, "install", "--quiet", "--no-compile", f"{source}[postgres,s3]",
                                  "-c", str(PROJECT_ROOT / "constraints.txt")],
                                 capture_output=True, text=True, timeout=780)
        assert install.returncode == 0, install.stderr[-3000:]
        check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr

        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copyfile(POSTGRES_CONFIG, home / "dagster.yaml")
        url = postgres_server.create_database(database)
        env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": url, "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)
        probe = subprocess.run([str(python), "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)
        assert probe.returncode == 0, probe.stderr[-3000:]
        print(probe.stdout.strip())

        daemon_runs_on_postgres(venv, home, env, url)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # half a gigabyte
        postgres_server.drop_database(database)


def daemon_runs_on_postgres(venv: Path, home: Path, env: dict[str, str], url: str) -> None:
    """`dagster-daemon run` (what died before) starts every daemon the instance needs, and each
    writes its heartbeat into the Postgres database."""
    log = home / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen([str(venv / "bin" / "dagster-daemon"), "run", "--empty-workspace"], cwd=home,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        overrides = {"storage": {"postgres": {"postgres_url": url}}}
        with dg.instance_for_test(overrides=overrides, set_dagster_home=False) as instance:
            required = set(instance.get_required_daemon_types())
            deadline, beating = time.monotonic() + 180, set()
            while daemon.poll() is None and time.monotonic() < deadline and not required <= beating:
                time.sleep(1)
                beating = set(instance.get_daemon_heartbeats())
            output = log.read_text(errors="replace")[-3000:]
            assert daemon.poll() is None, f"dagster-daemon exited ({daemon.returncode}):\n{output}"
            assert required <= beating, f"no heartbeat from {sorted(required - beating)}:\n{output}"
    finally:
        daemon.send_signal(signal.SIGTERM)  # by its PID; it stops its daemon threads
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)  # its own session: only what it started
            daemon.wait()
