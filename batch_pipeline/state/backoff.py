"""The one backoff formula of the pipeline (docs/decisions.md, "One backoff formula").

Every wait before trying again doubles from a base: a failed results run asked again, a retry
round of failed rows, a shard the provider refused for its quota, a batch create that failed in
transit. One formula means one place to read how long anything waits.
"""

from __future__ import annotations


def backoff_seconds(base: float, round: int, cap: float | None = None) -> float:
    """How long to wait before try number `round` + 1: `base` after the first failure (`round`
    1), doubling each round after it, and never more than `cap` when one is given.

    Callers count rounds from 1: the sensor its failed runs of one state, a retry its round
    (attempt 2 is round 1), a batch create its failed calls; a flat wait is always round 1.
    """
    if round < 1:
        raise ValueError(f"backoff rounds count from 1, not {round}")
    seconds = base * 2.0 ** (round - 1)
    return seconds if cap is None else min(seconds, cap)
