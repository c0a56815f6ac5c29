"""What earlier harvests of a use case used, recorded on the results asset and read back for the
next estimate.

Each results materialization records its answered requests' tokens with the model they were
sent to and the spec's fingerprint (`BatchSpec.fingerprint`: prompts, parameters, response
schema); an estimate reads the newest record of each of the last `LOOKBACK_PARTITIONS`
harvested partitions of the same use case, model and fingerprint (the Dagster instance is the
truth for what was materialized: DESIGN.md), so the estimate follows what the model writes for
the prompt it is sent now, not `max_tokens` and not an earlier prompt. Records written before
fingerprints existed count as the current spec's.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from batch_pipeline.cost import History, UsageRecord
from batch_pipeline.dagster.jobs import asset_key
from batch_pipeline.use_case import UseCase

LOOKBACK_PARTITIONS = 10
_RECORDS = 50  # results materializations searched for them (waiting runs record no usage)
_MODEL = "usage/model"
_SPEC = "usage/spec_fingerprint"
_FIELDS = {"requests": "usage/answered_requests", "output_tokens": "usage/output_tokens",
           "input_tokens": "usage/input_tokens", "counted_input_tokens": "usage/counted_input_tokens"}


def usage_metadata(uc: UseCase, usage: UsageRecord) -> dict[str, dg.MetadataValue]:
    """The results metadata later estimates learn from."""
    per_request = usage.output_tokens / usage.requests if usage.requests else 0.0
    return {
        _MODEL: dg.MetadataValue.text(uc.spec.model),
        _SPEC: dg.MetadataValue.text(uc.spec.fingerprint()),
        **{key: dg.MetadataValue.int(getattr(usage, name)) for name, key in _FIELDS.items()},
        "usage/output_tokens_per_request": dg.MetadataValue.float(round(per_request, 1)),
    }


def usage_history(instance: dg.DagsterInstance, uc: UseCase) -> History:
    """The usage of the use case's latest harvested partitions with its current model and spec,
    newest first, one record per partition (its latest harvest)."""
    found: dict[str | None, UsageRecord] = {}
    changed, fingerprint = False, uc.spec.fingerprint()
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key(uc, "results")), limit=_RECORDS)
    for record in records.records:
        materialization = record.asset_materialization
        meta = materialization.metadata if materialization else {}
        if materialization is None or materialization.partition in found or _text(meta, _MODEL) != uc.spec.model:
            continue
        if _text(meta, _SPEC) not in (fingerprint, None):
            changed = True
            continue
        found[materialization.partition] = UsageRecord(
            **{name: int(meta[key].value) for name, key in _FIELDS.items()}  # type: ignore[arg-type]
        )
        if len(found) == LOOKBACK_PARTITIONS:
            break
    return History(tuple(found.values()), changed)


def _text(meta: Mapping[str, dg.MetadataValue], key: str) -> str | None:
    value = meta[key].value if key in meta else None
    return value if isinstance(value, str) else None
