"""Driving the real Definitions the way the daemon would, without a daemon."""

from __future__ import annotations

import time

import dagster as dg

from batch_pipeline.demo import execute as _execute
from batch_pipeline.demo import tick


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest):
    """Run what the monitor asked for; it must succeed."""
    result = _execute(defs, instance, request)
    assert result.success, request
    return result


def submit(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition: str):
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, raise_on_error=False
    )
    return result


def tick_until_requested(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None, timeout: float = 60
):
    """Tick until the sensor requests runs; returns (run_requests, cursor, ticks)."""
    deadline, ticks = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        data = tick(defs, instance, cursor)
        cursor = data.cursor
        ticks.append(data)
        if data.run_requests:
            return data.run_requests, cursor, ticks
        time.sleep(0.2)
    raise AssertionError(f"sensor requested nothing in {timeout}s: {[t.skip_message for t in ticks][-3:]}")


def run_until_idle(defs: dg.Definitions, instance: dg.DagsterInstance, timeout: float = 90):
    """Do what the daemon does: tick, execute every requested run, until nothing is in flight."""
    cursor, executed, deadline = None, [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = tick(defs, instance, cursor)
        cursor = data.cursor
        if data.skip_message == "no batches in flight":
            return executed
        for request in data.run_requests:
            assert execute(defs, instance, request).success, request
            executed.append(request)
        if not data.run_requests:
            time.sleep(0.2)
    raise AssertionError(f"still in flight after {timeout}s: {data.skip_message}")
