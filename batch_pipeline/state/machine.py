"""The one decision of the pipeline: given a partition's state and an event, what happens next.

Every stage asks `next_action` instead of deciding on its own: the requests asset before it
rebuilds (`RebuildAsked`), the batches asset before it submits (`SubmitAsked`), the sensor and the
results asset with what the provider reports (`ProviderReport`), and the results asset after it
harvested (`Harvested`). It is pure: no Dagster, no provider, no clock (the caller passes `now`),
so the whole table of states and events is unit-tested (tests/unit/test_partition_state.py).

Actions:
- `Build`: (re)build the partition's request shards;
- `Submit`: send the built shards (submission itself reuses any batch that exists);
- `Wait`: batches are in flight, or shards wait for capacity or a retry backoff;
- `Harvest`: every batch is terminal: write the results (the listed batches are new to them);
- `QueueRetry`: these rows failed for retryable reasons: queue them as the next attempt;
- `Admit`: first-round shards held back for enqueued-token capacity now fit: send them;
- `Resubmit`: a queued retry round is due and fits: send it (from a results run);
- `Done`: everything sent is harvested and written; nothing waits;
- `Blocked`: the partition must be left as it is, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batch_pipeline.state.partition_state import TERMINAL, PartitionState, Queued

# Events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RebuildAsked:
    """The requests asset wants to rebuild. `stray_rounds`: retry files no state records."""

    stray_rounds: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubmitAsked:
    """The batches asset wants to send the built shards."""

    stray_rounds: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderReport:
    """What the provider says of the partition's batches (absent: not seen), and capacity."""

    statuses: Mapping[str, str]
    now: float
    enqueued_tokens: int = 0  # our batches of this model not terminal yet
    token_limit: int | None = None


@dataclass(frozen=True)
class Harvested:
    """A results run assembled the answers: rows worth another attempt, and those already queued."""

    retryable: tuple[str, ...]
    already_queued: frozenset[str] = field(default_factory=frozenset)


Event = RebuildAsked | SubmitAsked | ProviderReport | Harvested


# Actions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    pass


@dataclass(frozen=True)
class Submit:
    pass


@dataclass(frozen=True)
class Wait:
    reason: str
    in_flight: tuple[str, ...] = ()


@dataclass(frozen=True)
class Harvest:
    batch_ids: tuple[str, ...]


@dataclass(frozen=True)
class QueueRetry:
    custom_ids: tuple[str, ...]
    attempt: int


@dataclass(frozen=True)
class Admit:
    shards: tuple[Queued, ...]


@dataclass(frozen=True)
class Resubmit:
    rounds: tuple[Queued, ...]


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class Blocked:
    reason: str


Action = Build | Submit | Wait | Harvest | QueueRetry | Admit | Resubmit | Done | Blocked

STRAY_ROUND = (
    "a results run prepared a retry round that was never recorded; re-execute the partition's "
    "results run (run retries do this by themselves)"
)
RETRY_IN_FLIGHT = "a retry round is in flight; the batch monitor finishes it"
NOT_HARVESTED = (
    "its batches are not harvested yet: a rebuild now would send their requests again (a changed row "
    "changes its shard, and the shard's other rows would be paid twice). The batch monitor harvests "
    "them; rebuild then, and only new or changed rows are sent"
)
NOTHING_SUBMITTED = "no batches submitted for this partition yet; materialize its batches first"


def next_action(state: PartitionState | None, event: Event) -> Action:
    """The next action for a partition in `state` (None: nothing recorded yet) on `event`."""
    if isinstance(event, RebuildAsked | SubmitAsked):
        return _rebuild_or_submit(state, event)
    if isinstance(event, Harvested):
        return _after_harvest(state, event)
    if state is None:
        return Blocked(NOTHING_SUBMITTED)
    return _on_report(state, event)


def _rebuild_or_submit(state: PartitionState | None, event: RebuildAsked | SubmitAsked) -> Action:
    """Rebuilding or resubmitting mid-retry could send a round's requests a second time, and so
    could rebuilding before the first round is harvested: carry-over keeps harvested answers only.
    Submitting again is safe (the same shards find their batches)."""
    if event.stray_rounds:
        return Blocked(STRAY_ROUND)
    if state is not None and state.retrying:
        return Blocked(RETRY_IN_FLIGHT)
    if isinstance(event, RebuildAsked) and state is not None and state.unharvested:
        return Blocked(NOT_HARVESTED)
    return Build() if isinstance(event, RebuildAsked) else Submit()


def _after_harvest(state: PartitionState | None, event: Harvested) -> Action:
    again = tuple(c for c in event.retryable if c not in event.already_queued)
    if not again:
        return Done()
    return QueueRetry(again, state.next_attempt if state is not None else 2)


def admits(tokens: int, enqueued: int, limit: int | None) -> bool:
    """Admission under the enqueued-token limit: a shard may go when it fits, or when nothing of
    ours is enqueued (a shard bigger than the whole limit goes alone rather than wait forever)."""
    return limit is None or not enqueued or enqueued + tokens <= limit


def _fits(shards: list[Queued], report: ProviderReport) -> bool:
    """The smallest due shard is admitted."""
    if not shards:
        return False
    return admits(min(q.estimated_tokens for q in shards), report.enqueued_tokens, report.token_limit)


def _on_report(state: PartitionState, report: ProviderReport) -> Action:
    due = [q for q in state.queued if q.not_before <= report.now]
    first_round = [q for q in due if q.attempt == 1]
    if _fits(first_round, report):
        return Admit(tuple(first_round))
    pending = [s.batch_id for s in state.unharvested]
    running = tuple(b for b in pending if report.statuses.get(b) not in TERMINAL)
    if running:
        return Wait(f"{len(pending) - len(running)}/{len(pending)} batches terminal", running)
    if any(q.attempt == 1 for q in state.queued):
        return Wait(f"{sum(q.attempt == 1 for q in state.queued)} shards wait for enqueued-token capacity")
    if pending or not state.results_written:
        return Harvest(tuple(pending))
    rounds = [q for q in due if q.attempt > 1]
    if _fits(rounds, report):
        return Resubmit(tuple(rounds))
    if state.queued:
        return Wait(f"{len(state.queued)} retry shards wait for their backoff or for capacity")
    return Done()
