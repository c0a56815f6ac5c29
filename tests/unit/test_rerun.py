"""The monitor's re-ask and STRANDED policy, and the lease rule, as tables."""

from __future__ import annotations

import time

import pytest

from batch_pipeline.state.machine import Action, Admit, Done, Harvest, Resubmit, Wait
from batch_pipeline.state.rerun import (
    LEASE_HELD,
    Hold,
    LastRun,
    Rerun,
    RunAsked,
    hold,
    lease_wait,
)

NOW = 1_000_000.0
RERUN = Rerun(backoff_seconds=60.0, max_failures=2)
ASKED = RunAsked("uc:p:abc", record_id=7, at=NOW - 30)
ASKED_AGAIN = RunAsked("uc:p:abc:again-1", record_id=7, at=NOW - 90, failures=1)
ASKED_TWICE = RunAsked("uc:p:abc:again-2", record_id=7, at=NOW - 10_000, failures=2)


def _from(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


STRANDED = ("STRANDED: its run failed 3 times (last r3); fix the cause and re-execute the partition's "
            "results run before the provider's files expire")


@pytest.mark.parametrize(
    ("asked", "record_id", "last_run", "expected"),
    [
        (None, 7, None, Hold(None, 0)),  # nothing asked yet: decide
        (ASKED, 8, LastRun("r1", "failed"), Hold(None, 0)),  # a newer state was recorded: decide afresh
        (ASKED, 7, None, Hold("run uc:p:abc requested", 0)),  # not in the instance yet
        (ASKED, 7, LastRun("r1", "running"), Hold("run uc:p:abc requested", 0)),
        (ASKED, 7, LastRun("r1", "succeeded"), Hold(None, 0)),  # it left the partition alone
        (ASKED_AGAIN, 7, LastRun("r2", "succeeded"), Hold(None, 1)),
        # failed 30 s ago: asked again 60 s after it was asked
        (ASKED, 7, LastRun("r1", "failed"), Hold(f"run r1 failed; asking again from {_from(NOW + 30)}", 0)),
        # failed twice, 90 s ago: the wait doubled to 120 s
        (ASKED_AGAIN, 7, LastRun("r2", "failed"), Hold(f"run r2 failed; asking again from {_from(NOW + 30)}", 1)),
        (RunAsked("k", 7, NOW - 60), 7, LastRun("r1", "failed"), Hold(None, 1)),  # due: ask again
        (ASKED_TWICE, 7, LastRun("r3", "failed"), Hold(STRANDED, 2, stranded=True)),  # past max_failures
    ],
)
def test_hold(asked: RunAsked | None, record_id: int, last_run: LastRun | None, expected: Hold) -> None:
    assert hold(asked, record_id, last_run, NOW, RERUN) == expected


def test_no_reruns_strands_at_the_first_failure() -> None:
    held = hold(ASKED, 7, LastRun("r1", "failed"), NOW, Rerun(backoff_seconds=0, max_failures=0))
    assert held.stranded and held.reason is not None and held.reason.startswith("STRANDED: its run failed 1 times")


@pytest.mark.parametrize(
    ("action", "lease_held", "expected"),
    [
        (Harvest(("b1",)), True, LEASE_HELD),  # a run is harvesting it right now
        (Harvest(("b1",)), False, None),
        (Harvest(()), True, LEASE_HELD),
        (Resubmit(()), True, LEASE_HELD),
        (Resubmit(()), False, None),
        (Admit(()), True, None),  # the admission run waits for the lease by itself
        (Wait("1/2 batches terminal"), True, None),
        (Done(), False, None),
    ],
)
def test_lease_wait(action: Action, lease_held: bool, expected: str | None) -> None:
    assert lease_wait(action, lease_held) == expected
