"""The two-phase intent log of a partition's submissions: the intent before the paid call, the
provider's batch id right after it.

An intent (the shard's idempotency key and when it was first about to be sent) is written to the
warehouse before the shard's upload and create; the batch id is added as soon as the create
returns. A rerun therefore finds a shard's batch from the log first. Only an intent with no id
yet (the process died between the create and the record) needs the provider: looked up by key
where the provider holds one, no further back than the intent's time; where it holds none, the
batches it created since the intent are the candidates, and sending again is refused until an
operator says which one is ours (`resolve`) or that none is (`release`): a gap between the two
phases is never closed by paying again. Written under the partition's lease
(`state/lease.py`), so two writers never lose each other's records. docs/provider-port.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from upath import UPath

from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse

_VERSION = 2  # version 1 held only the intent's time per key


@dataclass(frozen=True)
class Intent:
    """When a key was first about to be sent, and the batch its create returned (None: unknown)."""

    at: float
    batch_id: str | None = None


@dataclass
class IntentLog:
    """The intents of one partition, in `<requests folder>/intents.json`."""

    wh: Warehouse
    path: UPath

    def _read(self) -> dict[str, Intent]:
        if not self.path.exists():
            return {}
        document = json.loads(self.path.read_bytes())
        if document.get("version", 1) > _VERSION:
            raise ValueError(f"{self.path} is intent log version {document['version']}; this code reads up to "
                             f"{_VERSION}: upgrade batch_pipeline before submitting this partition")
        return {key: Intent(value) if isinstance(value, int | float) else Intent(value["at"], value.get("batch_id"))
                for key, value in document.get("intents", {}).items()}

    def _write(self, intents: dict[str, Intent]) -> None:
        records = {key: {"at": i.at, "batch_id": i.batch_id} for key, i in intents.items()}
        self.wh.write_bytes(self.path, json.dumps({"version": _VERSION, "intents": records}, sort_keys=True).encode())

    def keys(self) -> set[str]:
        return set(self._read())

    def recorded(self, keys: Iterable[str]) -> dict[str, Intent]:
        """The intents recorded for `keys`: a key absent here was never about to be sent."""
        intents = self._read()
        return {k: intents[k] for k in keys if k in intents}

    def batch_ids(self) -> set[str]:
        """Every batch id the log records, whichever key it belongs to."""
        return {i.batch_id for i in self._read().values() if i.batch_id}

    def record(self, keys: Iterable[str]) -> None:
        """Record now as the intent of every key that has none yet (before its first upload)."""
        intents = self._read()
        new = {k: Intent(time.time()) for k in keys if k not in intents}
        if new:
            self._write({**intents, **new})

    def resolve(self, found: dict[str, str]) -> None:
        """Record the batch id of each key's intent (right after its create, or once found)."""
        intents = self._read()
        changed = {k: Intent(intents[k].at if k in intents else time.time(), batch_id)
                   for k, batch_id in found.items() if k not in intents or intents[k].batch_id != batch_id}
        if changed:
            self._write({**intents, **changed})

    def release(self, key: str) -> bool:
        """Forget a key's intent (an operator found that none of its candidates is ours): the
        next submission sends it afresh. False when there was none."""
        intents = self._read()
        if intents.pop(key, None) is None:
            return False
        self._write(intents)
        return True


def intents_of(wh: Warehouse, use_case: str, partition: str) -> IntentLog:
    return IntentLog(wh, wh.partition_dir(use_case, layout.REQUESTS, partition) / layout.INTENTS_FILE)
