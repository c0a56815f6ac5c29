"""Fixtures for the local Batch API tests: embedded clients and real uvicorn server processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import uvicorn

from batch_pipeline.cli import API_KEY_VARIABLE
from batch_pipeline.local_api import LocalAPISettings, create_app, embedded_client
from tests.local_api.support import FAST, free_port


@dataclass
class ServerProcess:
    """A ``batch-pipeline local-api`` server process on a free port."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, api_key: str = "sk-local-test", **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL by PID: no shutdown hooks run."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait()


StartServer = Callable[..., ServerProcess]


def launch(data_dir: Path, log_dir: Path, *args: str, api_key: str | None = None) -> ServerProcess:
    """Start a server process and wait until it answers; `api_key` goes in its environment, as
    `batch-pipeline local-api` takes it."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    env = {k: v for k, v in os.environ.items() if k != API_KEY_VARIABLE}
    env |= {API_KEY_VARIABLE: api_key} if api_key else {}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "batch_pipeline.cli", "local-api", "--port", str(port), "--data-dir", str(data_dir),
             *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    server = ServerProcess(process, f"http://127.0.0.1:{port}/v1", log_path)
    deadline = time.monotonic() + 60  # importing the project on a loaded machine can take a while
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.log()}")
        try:
            httpx2.get(f"{server.base_url}/files?limit=1", timeout=0.5)
            return server
        except httpx2.TimeoutException:
            return server  # connected, but the call stalls: an injected fault
        except httpx2.TransportError:
            time.sleep(0.05)
    server.stop()
    raise AssertionError(f"server did not start:\n{server.log()}")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers for one test (``start(data_dir, *flags, api_key=None)``); all are stopped afterwards."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, *args: str, api_key: str | None = None) -> ServerProcess:
        server = launch(data_dir or tmp_path / "server-data", tmp_path, *args, api_key=api_key)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per test module: starting a process costs more than most tests."""
    folder = tmp_path_factory.mktemp("shared-server")
    server = launch(folder / "data", folder, "--pace-seconds", str(FAST.pace_seconds))
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "http"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> openai.OpenAI:
    """The same tests through an embedded client and over HTTP against a real server process."""
    if request.param == "embedded":
        return embedded_client(tmp_path / "embedded-data", settings=FAST)
    return request.getfixturevalue("shared_server").client()


def settings_flags(settings: LocalAPISettings) -> list[str]:
    """The command-line flags that reproduce ``settings`` on a server process."""
    flags = []
    for name, value in settings.model_dump(exclude_defaults=True).items():
        if name == "enqueued_token_limits":
            flags += [f"--enqueued-token-limit-for={model}={tokens}" for model, tokens in value.items()]
        elif name == "served_models":
            flags += [f"--served-model={model}" for model in value]
        else:
            flags.append(f"--{name.replace('_', '-')}={value}")
    return flags


class ThreadedServer:
    """uvicorn serving the app on a free port from a thread of the test process.

    Same sockets, same HTTP stack and lifespan as a server process, without paying the
    process start-up (importing the project) for each test that needs its own settings.
    """

    def __init__(self, data_dir: Path, settings: LocalAPISettings) -> None:
        config = uvicorn.Config(create_app(data_dir, settings=settings), host="127.0.0.1", port=free_port(),
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.base_url = f"http://127.0.0.1:{config.port}/v1"
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn")
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


MakeClient = Callable[..., openai.OpenAI]


@pytest.fixture(params=["embedded", "http"])
def make_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeClient]:
    """``make_client(settings, **openai_kwargs)``: an embedded client, or one for a fresh HTTP server."""
    servers: list[ThreadedServer] = []

    def make(settings: LocalAPISettings, **kwargs: Any) -> openai.OpenAI:
        if request.param == "embedded":
            return embedded_client(tmp_path / "embedded-data", settings=settings, **kwargs)
        servers.append(ThreadedServer(tmp_path / f"server-data-{len(servers)}", settings))
        return openai.OpenAI(base_url=servers[-1].base_url, api_key="sk-local-test", **kwargs)

    yield make
    for server in servers:
        server.stop()
