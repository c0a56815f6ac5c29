"""Driving the real Definitions the way the daemon would: the public testing helpers, strict."""

from __future__ import annotations

import os
import signal
import subprocess

import dagster as dg

from batch_pipeline import testing
from batch_pipeline.testing import submit, tick, tick_until_requested

__all__ = ["execute", "run_until_idle", "stop_group", "submit", "tick", "tick_until_requested"]


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest):
    """Run what the monitor asked for; it must succeed."""
    result = testing.execute(defs, instance, request)
    assert result.success, (request, testing.failure_message(result))
    return result


def run_until_idle(defs: dg.Definitions, instance: dg.DagsterInstance, timeout: float = 180):
    """Every requested run must succeed; returns the requests executed."""

    def must_succeed(request: dg.RunRequest, result: dg.ExecuteInProcessResult) -> None:
        assert result.success, (request, testing.failure_message(result))

    executed = testing.run_until_idle(defs, instance, timeout, on_run=must_succeed)
    return [request for request, _ in executed]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to a process started in a session of its own (`dagster dev`, `dagster-daemon`: it
    stops what it started), then SIGKILL to anything of its session that outlived it."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
