"""Assembling a code location from use cases: their assets and jobs, one monitor, the resources."""

from collections.abc import Sequence

import dagster as dg

from batch_pipeline.dagster.assets import use_case_definitions
from batch_pipeline.dagster.resources import BatchAPIResource, WarehouseResource
from batch_pipeline.dagster.sensor import Rerun, build_batch_monitor
from batch_pipeline.use_case import UseCase


def definitions_for(
    use_cases: Sequence[UseCase],
    batch_api: BatchAPIResource | None = None,
    warehouse: WarehouseResource | None = None,
    monitor_interval_seconds: int = 30,
    rerun: Rerun | None = None,
) -> dg.Definitions:
    """One `Definitions` for the given use cases; resources default to the environment's.

    `rerun` says how the batch monitor asks again for a partition whose requested run failed.
    """
    names = [uc.name for uc in use_cases]
    if len(set(names)) != len(names):
        raise ValueError(f"use case names must be unique: {names}")
    return dg.Definitions.merge(
        *(use_case_definitions(uc) for uc in use_cases),
        dg.Definitions(
            sensors=[build_batch_monitor(use_cases, monitor_interval_seconds, rerun)],
            resources={
                "batch_api": batch_api or BatchAPIResource(),
                "warehouse": warehouse or WarehouseResource(),
            },
        ),
    )
