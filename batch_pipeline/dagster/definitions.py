"""Assembling use cases into `Definitions`: their assets and jobs, one monitor, the resources.

A data team merges the result into its own project (`dg.Definitions.merge(theirs, ours)`):
`key_prefix` puts every asset, job and the monitor under a name of its own, and `resource_keys`
names the resources, so two sets of use cases, or the team's own `warehouse`, never clash.
"""

from collections.abc import Sequence
from dataclasses import replace

import dagster as dg

from batch_pipeline.dagster.assets import use_case_definitions
from batch_pipeline.dagster.resources import BatchAPIResource, WarehouseResource
from batch_pipeline.dagster.sensor import MONITOR_NAME, build_batch_monitor
from batch_pipeline.state.rerun import Rerun
from batch_pipeline.use_case import ResourceKeys, UseCase


def prefixed(
    use_cases: Sequence[UseCase], key_prefix: str | Sequence[str] = (), resource_keys: ResourceKeys | None = None
) -> list[UseCase]:
    """The use cases as `definitions_for` defines them with this prefix and these resource keys:
    their asset keys, job names and warehouse folders (tests and tools look them up with it)."""
    prefix = (key_prefix,) if isinstance(key_prefix, str) else tuple(key_prefix)
    return [replace(uc, key_prefix=prefix, resource_keys=resource_keys or ResourceKeys()) for uc in use_cases]


def definitions_for(
    use_cases: Sequence[UseCase],
    batch_api: BatchAPIResource | None = None,
    warehouse: WarehouseResource | None = None,
    monitor_interval_seconds: int = 30,
    rerun: Rerun | None = None,
    key_prefix: str | Sequence[str] = (),
    resource_keys: ResourceKeys | None = None,
    webhooks: bool = False,
) -> dg.Definitions:
    """One `Definitions` for the given use cases; resources default to the environment's.

    `rerun` says how the batch monitor asks again for a partition whose requested run failed.
    `key_prefix` (`"llm"` or `["team", "llm"]`) goes before every asset key and in every job and
    pool name and warehouse folder; the monitor is `<prefix>_batch_monitor`. `webhooks=True` makes
    the monitor act within seconds on the batch webhooks `batch-pipeline webhooks` records, and list
    batches every `monitor_interval_seconds` still, for what a lost delivery missed.
    """
    keys = resource_keys or ResourceKeys()
    use_cases = prefixed(use_cases, key_prefix, keys)
    prefix = use_cases[0].key_prefix if use_cases else ()
    names = [uc.name for uc in use_cases]
    if len(set(names)) != len(names):
        raise ValueError(f"use case names must be unique: {names}")
    return dg.Definitions.merge(
        *(use_case_definitions(uc) for uc in use_cases),
        dg.Definitions(
            sensors=[build_batch_monitor(use_cases, monitor_interval_seconds, rerun,
                                         name="_".join([*prefix, MONITOR_NAME]), webhooks=webhooks)],
            resources={
                keys.batch_api: batch_api or BatchAPIResource(),
                keys.warehouse: warehouse or WarehouseResource(),
            },
        ),
    )
