"""Driving the real Definitions the way the daemon would, without a daemon."""

from __future__ import annotations

import time

import dagster as dg

from batch_pipeline.monitor import MONITOR_NAME


def submit(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, partition: str):
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, raise_on_error=False
    )
    return result


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    """One evaluation of the real batch monitor sensor, with the Definitions' resources."""
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources=defs.resources,
        repository_def=defs.get_repository_def(),
        sensor_name=MONITOR_NAME,
    ) as context:
        return defs.resolve_sensor_def(MONITOR_NAME).evaluate_tick(context)


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


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest):
    tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": MONITOR_NAME}
    return defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=tags
    )


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
