"""The results step's moves, and when results are written without a results run, as tables."""

from __future__ import annotations

import pytest

from batch_pipeline.state.machine import (
    NOTHING_SUBMITTED,
    Action,
    Admit,
    Blocked,
    Done,
    Harvest,
    Resubmit,
    Wait,
)
from batch_pipeline.state.partition_state import PartitionState, Queued, Submission
from batch_pipeline.state.results import (
    CAPACITY_WAIT,
    Fail,
    HarvestNow,
    LeaveToMonitor,
    PollAgain,
    Step,
    results_step,
    sent_nothing,
    settled,
)

NOW = 1_000.0
RUNNING = Wait("1/2 batches terminal", ("b1",))
BACKOFF = Wait("1 retry shards wait for their backoff or for capacity")


@pytest.mark.parametrize(
    ("action", "now", "deadline", "expected"),
    [
        (Harvest(("b1", "b2")), NOW, NOW + 60, HarvestNow()),
        (Harvest(()), NOW, NOW, HarvestNow()),  # nothing was sent: write the results
        (Resubmit(()), NOW, NOW, HarvestNow()),  # the harvest sends the due round
        (Done(), NOW, NOW, HarvestNow()),
        (RUNNING, NOW, NOW + 60, PollAgain()),  # batches about to end: wait for them
        (RUNNING, NOW + 60, NOW + 60, LeaveToMonitor("1/2 batches terminal")),  # past the deadline
        (RUNNING, NOW, NOW, LeaveToMonitor("1/2 batches terminal")),  # harvest_wait_seconds 0
        (BACKOFF, NOW, NOW + 60, LeaveToMonitor(BACKOFF.reason)),  # nothing running to wait for
        (Admit(()), NOW, NOW + 60, LeaveToMonitor(CAPACITY_WAIT)),  # capacity is the monitor's
        (Blocked(NOTHING_SUBMITTED), NOW, NOW + 60, Fail(NOTHING_SUBMITTED)),
    ],
)
def test_results_step(action: Action, now: float, deadline: float, expected: Step) -> None:
    assert results_step(action, now, deadline) == expected


def _sub(batch_id: str) -> Submission:
    return Submission(0, 1, f"uc/requests/partition=p/{batch_id}.jsonl", batch_id, "file", "key", "validating", 1, 1)


def _state(submissions: tuple[Submission, ...] = (), queued: tuple[Queued, ...] = (), harvested: tuple[str, ...] = (),
           written: bool = False) -> PartitionState:
    return PartitionState("uc", "p", submissions, queued, harvested, written)


CAPACITY = Queued(0, 1, "uc/requests/partition=p/s.jsonl", 1, 1, NOW + 60, "enqueued_token_limit")


@pytest.mark.parametrize(
    ("state", "results_run_idle"),
    [
        (_state(), False),  # nothing sent (every row rejected or kept): a results step writes them
        (_state(written=True), True),  # and then a results run has nothing to do
        (_state((_sub("b1"),)), False),  # a batch in flight: the monitor asks for results
        (_state((_sub("b1"),), harvested=("b1",), written=True), False),  # harvested by a results run
        (_state(queued=(CAPACITY,)), False),  # a shard waits for capacity
        (None, False),
    ],
)
def test_results_run_with_nothing_to_do(state: PartitionState | None, results_run_idle: bool) -> None:
    assert sent_nothing(state, NOW) is results_run_idle


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (_state(), False),  # nothing sent, results not written yet
        (_state(written=True), True),
        (_state((_sub("b1"),)), False),  # a batch in flight
        (_state((_sub("b1"),), harvested=("b1",), written=True), True),  # harvested, by any process
        (_state((_sub("b1"),), harvested=("b1",), queued=(CAPACITY,), written=True), False),  # a shard waits
        (None, False),  # nothing recorded
    ],
)
def test_settled(state: PartitionState | None, expected: bool) -> None:
    assert settled(state, NOW) is expected
