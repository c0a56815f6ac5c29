"""Which harvest a partition's usage record comes from, as a table."""

from __future__ import annotations

import pytest

from batch_pipeline.state.usage import usage_from


@pytest.mark.parametrize(
    ("answered_now", "earlier_run", "expected"),
    [
        (14, None, "now"),  # the first harvest
        (14, "before", "now"),  # a harvest that answered requests replaces the earlier figures
        (3, "before", "now"),  # a rebuild that sent only changed rows: its harvest is the newest
        (0, "before", "before"),  # a re-run that sent nothing keeps the last harvest's figures
        (0, None, "now"),  # nothing ever answered (an empty partition): zeros, skipped by estimates
    ],
)
def test_usage_from(answered_now: int, earlier_run: str | None, expected: str) -> None:
    assert usage_from(answered_now, "now", earlier_run) == expected
