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


# --- object storage: an S3-compatible server process (moto's server mode), reached over HTTP ---

S3_REGION = "us-east-1"


def free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """`python -m moto.server` on a free loopback port, for the whole session; yields its endpoint
    URL and is stopped by its PID at the end. Skipped when the `test` extra (moto[server]) is not
    installed."""
    import importlib.util
    import subprocess
    import sys
    import time
    import urllib.request

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("s3fs") is None:
        pytest.skip("needs the `s3` and `test` extras (s3fs, moto[server])")
    log = tmp_path_factory.mktemp("s3_server") / "moto.log"
    for _attempt in range(3):  # another process may take the probed port before moto binds it
        port = free_loopback_port()
        endpoint = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while server.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        if server.poll() is None and time.monotonic() < deadline:
            break
        server.kill()
        server.wait()
    else:
        pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
    try:
        yield endpoint
    finally:
        server.terminate()  # by its PID, this process's own child
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy AWS credentials, a region and the moto endpoint in this test's environment (as a
    real deployment would set them: botocore reads AWS_ENDPOINT_URL); returns the variables set,
    to hand to subprocesses."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL_S3", "FSSPEC_S3"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_REGION": S3_REGION,
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_EC2_METADATA_DISABLED": "true",  # never wait on an instance-metadata lookup
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_bucket(s3_env: dict[str, str], request: pytest.FixtureRequest):
    """A fresh bucket on the moto server for this test; yields its name. fsspec's cached S3
    filesystems are dropped before and after, so none outlives the environment it was built in."""
    import re
    import uuid

    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket)
    yield bucket
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def s3_warehouse(s3_bucket: str, pipeline_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`pipeline_env` with the warehouse at `s3://<fresh bucket>/wh` on the moto server."""
    root = f"s3://{s3_bucket}/wh"
    monkeypatch.setenv("BATCH_PIPELINE_WAREHOUSE", root)
    return root


# --- a throwaway PostgreSQL server, and Dagster instances on it ---

POSTGRES_CONFIG = PROJECT_ROOT / "deploy" / "dagster.postgres.yaml"  # the production instance config
POSTGRES_TEMPLATE_DB = "dagster_template"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a test that takes a minute or more (deselect with -m 'not slow')")


def _missing(reason: str):
    """Skip, except in CI (`.ci/run` installs PostgreSQL), where a silently skipped tier is a failure."""
    import os

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: not skipped)")
    pytest.skip(reason)


def _postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL (/usr/lib/postgresql/<major>/bin), else `initdb` on PATH."""
    import shutil

    debian = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if debian:
        return max(debian, key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PostgresServer:
    """A PostgreSQL server on a loopback port; its superuser connects over TCP with trust auth
    (dagster-postgres opens a connection per storage call, and scram doubles what each costs)."""

    def __init__(self, bindir: Path, port: int, user: str = "postgres") -> None:
        self.bindir, self.host, self.port, self.user = bindir, "127.0.0.1", port, user

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _client(self, tool: str, *args: str) -> None:
        import subprocess

        command = [str(self.bindir / tool), "-h", self.host, "-p", str(self.port), "-U", self.user, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{tool} {' '.join(args)}: {done.stderr.strip()}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of `template` if given); returns its URL."""
        self._client("createdb", *(["--template", template] if template else []), name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._client("dropdb", "--if-exists", "--force", name)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session, from the Debian package's binaries: initdb into a
    temporary folder, a free loopback port, its unix socket in that folder; run as the `postgres`
    OS user when running as root (PostgreSQL refuses root). Stopped by its PID at the end (a fast
    shutdown), and its folder removed. Skipped with the reason when the binaries are missing."""
    import os
    import pwd
    import shutil
    import signal
    import subprocess
    import tempfile
    import time

    bindir = _postgres_bindir()
    if bindir is None or not (bindir / "postgres").exists():
        _missing("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
                 "`apt-get install postgresql` (.ci/run installs it)")
    assert bindir is not None
    as_user: dict = {}
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no `postgres` OS user to run PostgreSQL as")
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    # Not under pytest's basetemp: its root-owned 0700 parent is closed to the `postgres` user.
    root = Path(tempfile.mkdtemp(prefix="batch-pipeline-postgres-"))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    server = None
    try:
        initdb = subprocess.run(
            [str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth-host=trust",
             "--auth-local=peer", "-E", "UTF8", "--no-locale", "--no-sync"],
            cwd=root, capture_output=True, text=True, timeout=180, **as_user,
        )
        assert initdb.returncode == 0, f"initdb failed: {initdb.stderr[-2000:]}"
        log = root / "server.log"
        for _attempt in range(3):  # another process may take the probed port before the server binds it
            port = free_loopback_port()
            with open(log, "ab") as out:
                server = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port), "-k", str(root),
                     "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                     # a throwaway server: durability is not what the tests are about
                     "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                    cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **as_user,
                )
            deadline = time.monotonic() + 60
            while server.poll() is None and time.monotonic() < deadline:
                ready = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                                       timeout=30)
                if ready.returncode == 0:
                    break
                time.sleep(0.1)
            if server.poll() is None and time.monotonic() < deadline:
                break
            server.kill()
            server.wait()
            server = None
        else:
            pytest.fail(f"PostgreSQL did not start: {log.read_text()[-2000:]}")
        yield PostgresServer(bindir, port)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # the postmaster's PID: a fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """A database holding Dagster's schema, copied for each test (a copy takes a tenth of the time
    of creating the schema). Skipped without the `postgres` extra."""
    import importlib.util

    if importlib.util.find_spec("dagster_postgres") is None:
        _missing("dagster-postgres is not installed: pip install -e '.[test]' (it includes the postgres extra)")
    url = postgres_server.create_database(POSTGRES_TEMPLATE_DB)
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}, set_dagster_home=False):
        pass  # creating the instance creates and stamps the schema
    return POSTGRES_TEMPLATE_DB


@pytest.fixture
def postgres_home(postgres_server: PostgresServer, postgres_template: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A DAGSTER_HOME whose dagster.yaml is the shipped deploy/dagster.postgres.yaml, with
    DAGSTER_PG_URL pointing at a fresh database for this test; both variables are set in the
    environment, so subprocesses (the fault matrix's kills) share the instance."""
    import re
    import shutil
    import uuid

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(POSTGRES_CONFIG, home / "dagster.yaml")
    name = f"t_{re.sub(r'[^a-z0-9]+', '_', request.node.name.lower())[:40]}_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_server.create_database(name, template=postgres_template))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    yield home
    postgres_server.drop_database(name)


@pytest.fixture
def postgres_instance(pipeline_env: Path, postgres_home: Path):
    """`instance`, on PostgreSQL: the shipped production config, a fresh database per test."""
    with dg.DagsterInstance.from_config(str(postgres_home)) as instance:
        yield instance


@pytest.fixture(params=["sqlite", "postgres"])
def any_instance(request: pytest.FixtureRequest, pipeline_env: Path):
    """`instance` once on SQLite (as `instance`) and once on PostgreSQL (as `postgres_instance`).
    Either way DAGSTER_HOME names the instance's home for subprocesses."""
    if request.param == "postgres":
        yield request.getfixturevalue("postgres_instance")
    else:
        with dg.instance_for_test() as instance:
            yield instance
