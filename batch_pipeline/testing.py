"""Run use cases end to end without a daemon: what tests, notebooks and the demo need.

Each helper drives the real `Definitions` the way the Dagster daemon would: a submit job per
partition, ticks of the real batch monitor sensor (with the Definitions' resources), and the runs
the sensor asks for, executed in process and tagged as the daemon would tag them. A use case is
passed as declared: its names under the `Definitions`' key prefix are found there (`as_defined`).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import dagster as dg
import pyarrow as pa

from batch_pipeline.dagster.definitions import as_defined
from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.dagster.sensor import MONITOR_NAME
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse import layout

IDLE = "no batches in flight"


def monitor_name(defs: dg.Definitions) -> str:
    """The batch monitor's name: `batch_monitor`, after the key prefix `definitions_for` was given."""
    names = [s.name for s in defs.sensors or () if s.name.endswith(MONITOR_NAME)]
    if len(names) != 1:
        raise ValueError(f"expected one batch monitor sensor in the definitions, found {names}")
    return names[0]


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> Any:
    """One evaluation of the batch monitor, as the daemon evaluates it."""
    name = monitor_name(defs)
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        cursor=cursor,
        resources=defs.resources,
        repository_def=defs.get_repository_def(),
        sensor_name=name,
    ) as context:
        # Dagster's tick result (`run_requests`, `skip_message`, `cursor`, `asset_events`); its
        # class is not exported by dagster 1.13, hence `Any`.
        return defs.resolve_sensor_def(name).evaluate_tick(context)


def execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    request: dg.RunRequest,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Run what the monitor asked for, tagged as the daemon would tag it."""
    tags = {**request.tags, "dagster/run_key": request.run_key or "", "dagster/sensor_name": monitor_name(defs)}
    return defs.resolve_job_def(request.job_name or "").execute_in_process(
        instance=instance, partition_key=request.partition_key, tags=tags, run_config=run_config,
        raise_on_error=False,
    )


def submit(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: UseCase | str,
    partition: str | None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Run a use case's submit job (requests, then batches) for one partition (None for an
    unpartitioned use case); `job` is the use case, or a job's name."""
    name = job if isinstance(job, str) else submit_job(as_defined(defs, job)).name
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance, partition_key=partition, run_config=run_config, raise_on_error=False
    )


def tick_until_requested(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None, timeout: float = 120
) -> tuple[list[dg.RunRequest], str | None, list]:
    """Tick until the sensor requests runs; returns (run_requests, cursor, ticks)."""
    deadline, ticks = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        data = tick(defs, instance, cursor)
        cursor = data.cursor
        ticks.append(data)
        if data.run_requests:
            return list(data.run_requests), cursor, ticks
        time.sleep(0.2)
    raise TimeoutError(f"sensor requested nothing in {timeout}s: {[t.skip_message for t in ticks][-3:]}")


def run_until_idle(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    timeout: float = 180,
    run_config: dict | None = None,
    on_run=None,
) -> list[tuple[dg.RunRequest, dg.ExecuteInProcessResult]]:
    """Tick and execute every requested run until nothing is in flight; returns what ran.

    `on_run(request, result)` is called after each run (the demo prints progress with it).
    """
    executed: list[tuple[dg.RunRequest, dg.ExecuteInProcessResult]] = []
    cursor, deadline = None, time.monotonic() + timeout
    message = None
    while time.monotonic() < deadline:
        data = tick(defs, instance, cursor)
        cursor, message = data.cursor, data.skip_message
        if message == IDLE:
            return executed
        for request in data.run_requests or []:
            result = execute(defs, instance, request, run_config)
            executed.append((request, result))
            if on_run is not None:
                on_run(request, result)
        if not data.run_requests:
            time.sleep(0.2)
    raise TimeoutError(f"still in flight after {timeout}s: {message}")


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The first step failure's own message (the library's `SpecError: ...`), not Dagster's
    wrapper around it ("Error occurred while executing op ..."); else the run failure's (a run can
    fail before any step does, e.g. on the instance's storage)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            return _own_message(event.step_failure_data.error)
    for event in result.all_events:
        if event.is_run_failure:
            return (event.message or "run failed")[:_MESSAGE_CHARS]
    return "run failed"


_MESSAGE_CHARS = 1000


class _ErrorInfo(Protocol):
    """What is read of a step failure's error (Dagster's `SerializableErrorInfo`, whose class
    `dagster` does not export)."""

    @property
    def message(self) -> str: ...
    @property
    def cls_name(self) -> str | None: ...
    @property
    def cause(self) -> _ErrorInfo | None: ...


def _own_message(error: _ErrorInfo) -> str:
    """The error a Dagster wrapper (`DagsterExecutionStepExecutionError`, a failed input load)
    carries as its cause, as `Class: message` without the module path."""
    while error.cause is not None and error.cls_name and error.cls_name.startswith("Dagster"):
        error = error.cause
    text = error.message.strip()
    head, sep, rest = text.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == error.cls_name:
        text = f"{error.cls_name}: {rest}"
    return text[:_MESSAGE_CHARS]


def results(defs: dg.Definitions, use_case: UseCase, partition: str | None = None) -> pa.Table:
    """A partition's results Parquet (no partition for an unpartitioned use case), read back from
    the warehouse the Definitions use."""
    uc = as_defined(defs, use_case)
    warehouse = (defs.resources or {})[uc.resource_keys.warehouse].warehouse()
    path = warehouse.partition_dir(uc.name, layout.RESULTS, uc.partition_of(partition)) / layout.RESULTS_FILE
    return warehouse.read_parquet(path)
