"""Submission intents: when each idempotency key was first about to be sent.

An intent is written to the warehouse before the first upload of its shard, so no batch
carrying that key can be older than its intent. Looking for existing batches therefore reads
the provider's list back to the earliest intent of the keys it looks for, however many
unrelated batches the organisation created since, and no further. Keys with no intent were
never sent, so a first submission needs no lookup at all. Written under the partition's lease
(`state/lease.py`), so two writers never lose each other's intents.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from upath import UPath

from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse

_VERSION = 1


@dataclass
class IntentLog:
    """The intents of one partition, in `<requests folder>/intents.json`."""

    wh: Warehouse
    path: UPath

    def _read(self) -> dict[str, float]:
        if not self.path.exists():
            return {}
        return dict(json.loads(self.path.read_bytes()).get("intents", {}))

    def recorded(self, keys: Iterable[str]) -> dict[str, float]:
        """The intents recorded for `keys`: a key absent here was never about to be sent."""
        intents = self._read()
        return {k: intents[k] for k in keys if k in intents}

    def record(self, keys: Iterable[str]) -> None:
        """Record now as the intent of every key that has none yet (before its first upload)."""
        intents = self._read()
        new = {k: time.time() for k in keys if k not in intents}
        if new:
            document = {"version": _VERSION, "intents": {**intents, **new}}
            self.wh.write_bytes(self.path, json.dumps(document, sort_keys=True).encode())


def intents_of(wh: Warehouse, use_case: str, partition: str) -> IntentLog:
    return IntentLog(wh, wh.partition_dir(use_case, layout.REQUESTS, partition) / layout.INTENTS_FILE)
