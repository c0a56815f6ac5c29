"""What a results step does with the state machine's answer (docs/decisions.md, "The results
step"), and when a results run has nothing to do.

A results run harvests the partitions of its run whose batches are terminal. It may wait a
little for batches about to end (the resource's `harvest_wait_seconds`, so "Materialize all"
harvests in one go); past that, waiting is the batch monitor's job, which asks for the results
run again when they end. Pure: the asset body polls the provider, asks `next_action`, and loops
by asking `results_step`.
"""

from __future__ import annotations

from dataclasses import dataclass

from batch_pipeline.state.machine import (
    Action,
    Admit,
    Blocked,
    Done,
    ProviderReport,
    Wait,
    next_action,
)
from batch_pipeline.state.partition_state import PartitionState

CAPACITY_WAIT = "shards wait for enqueued-token capacity"


@dataclass(frozen=True)
class HarvestNow:
    """Every batch is terminal (or there is none): write the results."""


@dataclass(frozen=True)
class PollAgain:
    """Batches are still running and the step may wait for them: ask the provider again."""


@dataclass(frozen=True)
class LeaveToMonitor:
    """Nothing to harvest in this run: the batch monitor asks for a run when there is."""

    reason: str


@dataclass(frozen=True)
class Fail:
    """The partition cannot be harvested (nothing was submitted, or it must be left alone)."""

    reason: str


Step = HarvestNow | PollAgain | LeaveToMonitor | Fail


def results_step(action: Action, now: float, deadline: float) -> Step:
    """The results step's move on `action` at `now` (the step waits for batches until `deadline`,
    on the same clock). Admission of waiting shards is the monitor's (it knows the capacity in
    flight), so `Admit` leaves the partition to it, as a wait past the deadline does."""
    if isinstance(action, Blocked):
        return Fail(action.reason)
    if isinstance(action, Wait):
        return PollAgain() if action.in_flight and now < deadline else LeaveToMonitor(action.reason)
    if isinstance(action, Admit):
        return LeaveToMonitor(CAPACITY_WAIT)
    return HarvestNow()


def sent_nothing(state: PartitionState | None, now: float) -> bool:
    """Whether a results run has nothing to do for the partition: its build sent no request and
    a results step has written the results since."""
    return state is not None and not state.submissions and isinstance(
        next_action(state, ProviderReport({}, now)), Done)


def settled(state: PartitionState | None, now: float) -> bool:
    """Whether the partition's recorded state says its results are written and nothing waits,
    whichever run or process harvested it (the batch monitor stops watching it then)."""
    return state is not None and isinstance(next_action(state, ProviderReport({}, now)), Done)
