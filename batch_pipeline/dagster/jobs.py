"""A use case's asset keys and jobs: Dagster's names for it, derived here so `UseCase` builds none.

Each job is built once (`functools.cache`, keyed by all it is built from: names only): the
definitions, the schedule and the batch monitor must hold the same job object.
"""

import functools
from typing import Any

import dagster as dg

from batch_pipeline.use_case import UseCase

# A job's asset stages and what it does, by kind.
_JOBS = {
    "submit": (("requests", "batches"), "Build and submit {name} batch requests for a partition."),
    "admit": (("batches",), "Submit {name} shards that waited for enqueued-token capacity."),
    "results": (("results",), "Harvest finished {name} batches into Parquet."),
}


def asset_key(uc: UseCase, stage: str) -> dg.AssetKey:
    """The key of one stage's asset (`source`, `requests`, `batches`, `results`)."""
    return dg.AssetKey([*uc.key_prefix, uc.spec.name, stage])


def record_keys(uc: UseCase) -> list[dg.AssetKey]:
    """The assets whose materializations record what was submitted for a partition."""
    return [asset_key(uc, "batches"), asset_key(uc, "results")]


# The job class is not public in dagster 1.13, hence `Any` for the jobs below.
def submit_job(uc: UseCase) -> Any:
    """Requests, then batches, for a partition: `<name>_submit`."""
    return _use_case_job(uc, "submit")


def admit_job(uc: UseCase) -> Any:
    """The batches of shards that waited for enqueued-token capacity: `<name>_admit`."""
    return _use_case_job(uc, "admit")


def results_job(uc: UseCase) -> Any:
    """The harvest of a partition's finished batches: `<name>_results`."""
    return _use_case_job(uc, "results")


def _use_case_job(uc: UseCase, kind: str) -> Any:
    stages, description = _JOBS[kind]
    return _job(f"{uc.name}_{kind}", tuple(asset_key(uc, stage) for stage in stages),
                description.format(name=uc.name))


@functools.cache
def _job(name: str, selection: tuple[dg.AssetKey, ...], description: str) -> Any:
    """The job, once for each name, selection and description. Its steps run in one process
    (`in_process_executor`): they wait on I/O for milliseconds to seconds, while a process per
    step (Dagster's default) costs seconds of start-up each."""
    return dg.define_asset_job(name, selection=list(selection), executor_def=dg.in_process_executor,
                               description=description)
