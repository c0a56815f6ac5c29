"""The versioned state of one partition of one use case: what was submitted, queued and harvested.

It is stored as one JSON document (`PartitionState.to_json`) in the materialization metadata of
the batches and results assets: the Dagster instance is the truth for what the pipeline
submitted. Reading is strict about versions: a document of a newer version than this code
knows is refused (`StateVersionError`): read with its new fields dropped and written back, it
would lose what the newer code recorded. Older versions are migrated: fields they lacked take
their defaults, and the unversioned records written before this module existed are read as
version 0. Version 2 added `kept`, version 3 each submission's `provider`
and `provider_fingerprint`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from batch_pipeline.errors import StateVersionError

SCHEMA_VERSION = 3
# Batch statuses after which a batch changes no more (the provider's own vocabulary).
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
STATE_KEY = "partition_state"

_Record = TypeVar("_Record")


def _known(cls: type[_Record], data: dict[str, Any]) -> _Record:
    """Build a record from the fields it knows; other versions' extra fields are dropped."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Submission:
    """A shard's batch at the provider. `path` is the shard file, relative to the warehouse root."""

    shard: int
    attempt: int
    path: str
    batch_id: str
    input_file_id: str
    idempotency_key: str
    status: str
    requests: int
    estimated_tokens: int
    reused: bool = False
    parent_batch_ids: list[str] = field(default_factory=list)
    provider: str = ""  # the provider's name and settings fingerprint: where the batch is watched
    provider_fingerprint: str = ""  # and harvested, whichever provider is configured now ("": v2)


@dataclass(frozen=True)
class Queued:
    """A shard written but not sent: waiting for enqueued-token capacity or a retry backoff."""

    shard: int
    attempt: int
    path: str
    requests: int
    estimated_tokens: int
    not_before: float
    reason: str
    parent_batch_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PartitionState:
    """What the pipeline did for one partition, as of one materialization (`record_id`).

    `kept` are batches of an earlier build whose answers a rebuild kept (carried rows name them):
    harvested, never harvested again, listed so the partition always says which batches its
    answers came from. `record_id` and `recorded_at` come from the Dagster event that stored the
    state; they order states and are not part of the document.
    """

    use_case: str
    partition: str
    submissions: tuple[Submission, ...] = ()
    queued: tuple[Queued, ...] = ()
    harvested: tuple[str, ...] = ()
    results_written: bool = False  # the results Parquet reflects every harvested batch
    kept: tuple[Submission, ...] = ()
    schema_version: int = SCHEMA_VERSION
    record_id: int = 0
    recorded_at: float = 0.0

    @property
    def unharvested(self) -> tuple[Submission, ...]:
        done = set(self.harvested)
        return tuple(s for s in self.submissions if s.batch_id not in done)

    @property
    def batches(self) -> tuple[Submission, ...]:
        """Every batch behind the partition's answers, kept or sent by this build."""
        return self.kept + self.submissions

    def keeping(self, batch_ids: Collection[str]) -> tuple[Submission, ...]:
        """This state's batches among `batch_ids`: those whose answers a rebuild keeps."""
        return tuple(s for s in self.batches if s.batch_id in batch_ids)

    def with_statuses(self, statuses: Mapping[str, str]) -> PartitionState:
        """The state with each submission's status as the provider last reported it, so a record
        made after a batch ended does not say it is still `validating`."""
        return dataclasses.replace(self, submissions=tuple(
            dataclasses.replace(s, status=statuses.get(s.batch_id, s.status)) for s in self.submissions))

    @property
    def retrying(self) -> bool:
        """A follow-up round is in flight or waiting to be sent."""
        return any(s.attempt > 1 for s in self.unharvested) or any(q.attempt > 1 for q in self.queued)

    @property
    def next_attempt(self) -> int:
        return max([s.attempt for s in self.submissions] + [q.attempt for q in self.queued] + [1]) + 1

    def recorded_paths(self) -> set[str]:
        return {s.path for s in self.submissions} | {q.path for q in self.queued}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "use_case": self.use_case,
            "partition": self.partition,
            "submissions": [dataclasses.asdict(s) for s in self.submissions],
            "queued": [dataclasses.asdict(q) for q in self.queued],
            "harvested": list(self.harvested),
            "results_written": self.results_written,
            "kept": [dataclasses.asdict(s) for s in self.kept],
        }

    @classmethod
    def from_json(
        cls, data: dict[str, Any], record_id: int = 0, recorded_at: float = 0.0, results_written: bool = False
    ) -> PartitionState:
        """Read a state document of this version or an older one (missing fields defaulted);
        a newer one raises `StateVersionError`.

        `results_written` is the default for documents that predate the field (version 0): true
        when the document was recorded by the results asset.
        """
        version = int(data.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise StateVersionError(
                f"the state of {data.get('use_case', '?')} partition {data.get('partition', '?')} has "
                f"schema_version {version}, newer than version {SCHEMA_VERSION} this code knows: it was "
                "recorded by a newer batch_pipeline; upgrade this deployment before it reads or writes "
                "the partition")
        return cls(
            use_case=str(data.get("use_case", "")),
            partition=str(data.get("partition", "")),
            submissions=tuple(_known(Submission, s) for s in data.get("submissions") or []),
            queued=tuple(_known(Queued, q) for q in data.get("queued") or []),
            harvested=tuple(data.get("harvested") or data.get("harvested_batch_ids") or []),
            results_written=bool(data.get("results_written", results_written)),
            kept=tuple(_known(Submission, s) for s in data.get("kept") or []),
            schema_version=version,
            record_id=record_id,
            recorded_at=recorded_at,
        )
