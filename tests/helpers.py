"""Driving the real Definitions the way the daemon would: the public testing helpers, strict."""

from __future__ import annotations

import dagster as dg

from batch_pipeline import testing
from batch_pipeline.testing import submit, tick, tick_until_requested

__all__ = ["execute", "run_until_idle", "submit", "tick", "tick_until_requested"]


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
