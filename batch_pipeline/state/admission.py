"""Per-shard admission in a submission (docs/decisions.md, "Admission").

Each shard of a run is, in order: reused when its batch exists already (found by its idempotency
key); queued when it would push the model's enqueued tokens over the configured limit (the
provider would fail the batch with `token_limit_exceeded`); queued after a backoff when the
provider refused a batch of this run for its quota (its queue is full: every later shard of the
run is queued too, without asking); else sent. Pure: the submission passes what it found and
counted, and `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

from batch_pipeline.state.backoff import backoff_seconds
from batch_pipeline.state.machine import admits

TOKEN_LIMIT = "enqueued_token_limit"  # `Queued.reason`s
PROVIDER_QUOTA = "provider_quota"


@dataclass(frozen=True)
class Send:
    """Upload the shard (where the provider needs it) and create its batch."""


@dataclass(frozen=True)
class Reuse:
    """The shard's batch exists: record it, create nothing."""


@dataclass(frozen=True)
class Queue:
    """Hold the shard back (`Queued.reason`); the monitor offers it again from `not_before`."""

    reason: str
    not_before: float


Admission = Send | Reuse | Queue


def admit_shard(
    found: bool, tokens: int, enqueued: int, token_limit: int | None, refused_at: float | None, now: float,
    quota_backoff: float,
) -> Admission:
    """What becomes of one shard of `tokens` estimated tokens.

    `found`: its batch exists; `enqueued`: our tokens of the model in flight, with the shards this
    run created; `refused_at`: when the provider refused a batch of this run for its quota (None:
    it did not), `quota_backoff` how long a refused shard waits. A shard whose create is refused
    is asked about again with `refused_at=now`.
    """
    if found:
        return Reuse()
    if not admits(tokens, enqueued, token_limit):
        return Queue(TOKEN_LIMIT, now)
    if refused_at is not None:
        return Queue(PROVIDER_QUOTA, refused_at + backoff_seconds(quota_backoff, 1))  # a flat wait
    return Send()
