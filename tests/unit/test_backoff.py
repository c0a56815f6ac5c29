"""The one backoff formula as a table of base, round and cap -> seconds, with every caller's use."""

from __future__ import annotations

import pytest

from batch_pipeline.state.backoff import backoff_seconds


@pytest.mark.parametrize(
    ("base", "round", "cap", "expected"),
    [
        (60.0, 1, None, 60.0),  # the first wait is the base
        (60.0, 2, None, 120.0),
        (60.0, 5, None, 960.0),  # doubling each round
        (0.0, 3, None, 0.0),  # tests switch waiting off
        (2.0, 1, 30.0, 2.0),  # a batch create failed in transit: 2, 4, 8, 16, then 30 at most
        (2.0, 4, 30.0, 16.0),
        (2.0, 5, 30.0, 30.0),
        (2.0, 40, 30.0, 30.0),
        (300.0, 1, None, 300.0),  # a quota refusal waits a flat base: always round 1
    ],
)
def test_backoff_seconds(base: float, round: int, cap: float | None, expected: float) -> None:
    assert backoff_seconds(base, round, cap) == expected


def test_rounds_count_from_one() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        backoff_seconds(60.0, 0)
