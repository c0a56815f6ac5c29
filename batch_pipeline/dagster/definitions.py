"""Assembling use cases into `Definitions`: their assets and jobs, one monitor, the resources.

A data team merges the result into its own project (`dg.Definitions.merge(theirs, ours)`):
`key_prefix` puts every asset, job and the monitor under a name of its own, and `resource_keys`
names the resources, so two sets of use cases, or the team's own `warehouse`, never clash.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import dagster as dg

from batch_pipeline.dagster.assets import use_case_definitions
from batch_pipeline.dagster.resources import BatchAPIResource, WarehouseResource
from batch_pipeline.dagster.sensor import MONITOR_NAME, WATCHED, build_batch_monitor
from batch_pipeline.state.rerun import Rerun
from batch_pipeline.use_case import ResourceKeys, UseCase


def prefixed(
    use_cases: Sequence[UseCase], key_prefix: str | Sequence[str] = (), resource_keys: ResourceKeys | None = None
) -> list[UseCase]:
    """The use cases as `definitions_for` defines them with this prefix and these resource keys
    (`as_defined` finds them from the `Definitions` instead)."""
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


def as_defined(defs: dg.Definitions, use_case: UseCase) -> UseCase:
    """`use_case` as `defs` defines it, found by its spec's name: its asset keys
    (`asset_key(uc, "results")`), job names (`submit_job(uc).name`), warehouse folder (`uc.name`)
    and resource keys, whatever `key_prefix` and `resource_keys` `definitions_for` was given and
    however its result was merged. A use case already as defined is returned as it is."""
    found = [entry for entry in _watched(defs) if entry["spec"] == use_case.spec.name]
    if use_case.key_prefix:
        found = [entry for entry in found if tuple(entry["key_prefix"]) == use_case.key_prefix]
    if len(found) != 1:
        where = "no batch monitor watches it" if not found else \
            f"it is defined under several prefixes {[e['key_prefix'] for e in found]}; pass one of them"
        raise ValueError(f"use case '{use_case.spec.name}' not found in these Definitions: {where}")
    (entry,) = found
    return replace(use_case, key_prefix=tuple(entry["key_prefix"]),
                   resource_keys=ResourceKeys(**entry["resource_keys"]))


def _watched(defs: dg.Definitions) -> list[dict[str, Any]]:
    """What every batch monitor in `defs` says it watches (`sensor.watched`)."""
    entries: list[dict[str, Any]] = []
    for sensor in defs.sensors or ():
        value = (sensor.metadata or {}).get(WATCHED)
        if isinstance(value, dg.JsonMetadataValue) and isinstance(value.data, list):
            entries += value.data
    return entries
