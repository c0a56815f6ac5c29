"""When the batch monitor asks for a partition's run (docs/decisions.md, "Re-asking a run").

The monitor asks for a run (results, or the admission of waiting shards) and then watches the
run it asked for. A partition stays watched until a newer state is recorded (its run succeeded
and materialized), so a run that fails for good never strands paid answers silently: it is asked
again after a backoff that doubles, at most `Rerun.max_failures` times, and then reported as
STRANDED. A results run is also not asked while another run holds the partition's lease: that
run is most often harvesting it right now.

Pure: the monitor reads the run's status from the instance and the lease from the warehouse,
and passes them in with `now`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from batch_pipeline.state.backoff import backoff_seconds
from batch_pipeline.state.machine import Action, Harvest, Resubmit

# What became of the run last asked for: not ended yet (or not started), or how it ended.
RunOutcome = Literal["running", "succeeded", "failed"]
LEASE_HELD = "a run holds it (harvesting it now)"


@dataclass(frozen=True)
class Rerun:
    """How a partition whose requested run failed is asked for again: after a backoff that
    doubles, at most `max_failures` times; then it is reported as stranded (paid answers wait
    at the provider until its files expire)."""

    backoff_seconds: float = 60.0
    max_failures: int = 5


@dataclass(frozen=True)
class RunAsked:
    """A run the monitor requested for a partition's state `record_id` (kept in its cursor)."""

    run_key: str
    record_id: int
    at: float
    failures: int = 0


@dataclass(frozen=True)
class LastRun:
    """The newest run with the asked run key, as the Dagster instance has it."""

    run_id: str
    outcome: RunOutcome


@dataclass(frozen=True)
class Hold:
    """Why the partition waits on the run already asked for (`reason` None: decide afresh), and
    how many runs asked for this state failed (a run asked now gets a run key of its own)."""

    reason: str | None
    failures: int
    stranded: bool = False


def hold(asked: RunAsked | None, record_id: int, last_run: LastRun | None, now: float, rerun: Rerun) -> Hold:
    """Whether the run asked for the partition's state `record_id` still holds it back.

    `last_run` is None when the instance has no run with the asked key yet.
    """
    if asked is None or asked.record_id != record_id:
        return Hold(None, 0)  # nothing asked for this state: a newer state was recorded
    if last_run is None or last_run.outcome == "running":
        return Hold(f"run {asked.run_key} requested", asked.failures)
    if last_run.outcome == "succeeded":
        return Hold(None, asked.failures)  # it recorded nothing new (the partition was left alone)
    failures = asked.failures + 1
    if failures > rerun.max_failures:
        return Hold(f"STRANDED: its run failed {failures} times (last {last_run.run_id}); fix the cause and "
                    "re-execute the partition's results run before the provider's files expire",
                    asked.failures, stranded=True)
    due = asked.at + backoff_seconds(rerun.backoff_seconds, failures)
    if now < due:
        return Hold(f"run {last_run.run_id} failed; asking again from "
                    f"{time.strftime('%H:%M:%S', time.localtime(due))}", asked.failures)
    return Hold(None, failures)


def lease_wait(action: Action, lease_held: bool) -> str | None:
    """Why a run for `action` is not asked now (None: ask it). A results run asked while another
    run holds the lease ("Materialize all", a backfill harvesting it right now) would harvest the
    partition a second time (unpaid, from the raw copies, but a redundant run); the holder records
    it harvested or waiting when its step ends, and the monitor decides again on its next tick.
    An admission run waits for the lease by itself, so it is asked."""
    if isinstance(action, Harvest | Resubmit) and lease_held:
        return LEASE_HELD
    return None
