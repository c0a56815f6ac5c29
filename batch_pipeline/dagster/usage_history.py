"""What earlier harvests of a use case used, recorded on the results asset and read back for the
next estimate.

Each results materialization records its answered requests' tokens with the model they were
sent to and the spec's fingerprint (`BatchSpec.fingerprint`: prompts, parameters, response
schema) and the run whose harvest they come from (a re-run that answered nothing carries its last
harvest's figures: `state.usage`); an estimate reads the newest record of each of the last
`LOOKBACK_PARTITIONS` harvested partitions of the same use case, model and fingerprint (the
Dagster instance is the truth for what was materialized: docs/decisions.md, "Learning from
harvests"), so the estimate follows what the model writes for the prompt it is sent now, not
`max_tokens` and not an earlier prompt. Records written before fingerprints existed count as the
current spec's.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from batch_pipeline.cost import History, UsageRecord
from batch_pipeline.dagster.jobs import asset_key
from batch_pipeline.state.usage import usage_from
from batch_pipeline.use_case import UseCase

LOOKBACK_PARTITIONS = 10
_RECORDS = 50  # results materializations searched for them (waiting runs record no usage)
_MODEL = "usage/model"
_SPEC = "usage/spec_fingerprint"
_HARVEST_RUN = "usage/harvest_run_id"
_CHANGED = "spec changed"
_FIELDS = {"requests": "usage/answered_requests", "output_tokens": "usage/output_tokens",
           "input_tokens": "usage/input_tokens", "counted_input_tokens": "usage/counted_input_tokens"}


def usage_metadata(uc: UseCase, usage: UsageRecord, harvest_run_id: str) -> dict[str, dg.MetadataValue]:
    """The results metadata later estimates learn from, naming the run whose harvest they come from."""
    per_request = usage.output_tokens / usage.requests if usage.requests else 0.0
    return {
        _MODEL: dg.MetadataValue.text(uc.spec.model),
        _SPEC: dg.MetadataValue.text(uc.spec.fingerprint()),
        **{key: dg.MetadataValue.int(getattr(usage, name)) for name, key in _FIELDS.items()},
        "usage/output_tokens_per_request": dg.MetadataValue.float(round(per_request, 1)),
        _HARVEST_RUN: dg.MetadataValue.text(harvest_run_id),
    }


def recorded_usage(instance: dg.DagsterInstance, uc: UseCase, run_id: str, partition: str | None,
                   answered: UsageRecord) -> tuple[UsageRecord, str]:
    """The usage a results record of `partition` carries, and the run whose harvest it comes from
    (`state.usage.usage_from`): this run's answered requests, else the partition's last harvest
    that answered any with the current model and spec."""
    earlier = None if answered.requests else _last_harvest(instance, uc, partition)
    source = usage_from(answered.requests, run_id, earlier[1] if earlier else None)
    return (earlier[0], source) if earlier and source == earlier[1] else (answered, source)


def _last_harvest(instance: dg.DagsterInstance, uc: UseCase, partition: str | None
                  ) -> tuple[UsageRecord, str] | None:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=asset_key(uc, "results"), asset_partitions=None if partition is None else [partition]),
        limit=_RECORDS).records
    for record in records:
        materialization = record.asset_materialization
        usage = _usage(materialization.metadata, uc) if materialization else None
        if isinstance(usage, UsageRecord):
            return usage, _text(materialization.metadata, _HARVEST_RUN) or record.run_id  # type: ignore[union-attr]
    return None


def usage_history(instance: dg.DagsterInstance, uc: UseCase) -> History:
    """The usage of the use case's latest harvested partitions with its current model and spec,
    newest first, one record per partition (its latest harvest that answered requests: a record
    with none, written before re-runs carried their harvest's figures, teaches nothing)."""
    found: dict[str | None, UsageRecord] = {}
    changed = False
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key(uc, "results")), limit=_RECORDS)
    for record in records.records:
        materialization = record.asset_materialization
        if materialization is None or materialization.partition in found:
            continue
        usage = _usage(materialization.metadata, uc)
        changed = changed or usage == _CHANGED
        if isinstance(usage, UsageRecord):
            found[materialization.partition] = usage
        if len(found) == LOOKBACK_PARTITIONS:
            break
    return History(tuple(found.values()), changed)


def _usage(meta: Mapping[str, dg.MetadataValue], uc: UseCase) -> UsageRecord | str | None:
    """A record's usage when it answered requests with the use case's model and spec; `_CHANGED`
    for an earlier version of the spec; None otherwise (another model, nothing answered, a
    record of a waiting partition)."""
    if _text(meta, _MODEL) != uc.spec.model:
        return None
    if _text(meta, _SPEC) not in (uc.spec.fingerprint(), None):
        return _CHANGED
    usage = UsageRecord(**{name: int(meta[key].value) for name, key in _FIELDS.items()})  # type: ignore[arg-type]
    return usage if usage.requests else None


def _text(meta: Mapping[str, dg.MetadataValue], key: str) -> str | None:
    value = meta[key].value if key in meta else None
    return value if isinstance(value, str) else None
