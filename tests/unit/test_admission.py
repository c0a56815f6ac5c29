"""Per-shard admission in a submission as a table: found, capacity, a quota refusal -> decision."""

from __future__ import annotations

import pytest

from batch_pipeline.state.admission import (
    PROVIDER_QUOTA,
    TOKEN_LIMIT,
    Admission,
    Queue,
    Reuse,
    Send,
    admit_shard,
)

NOW = 1_000.0
BACKOFF = 300.0


@pytest.mark.parametrize(
    ("found", "tokens", "enqueued", "limit", "refused_at", "expected"),
    [
        (False, 100, 0, None, None, Send()),  # no limit configured
        (False, 100, 800, 1000, None, Send()),  # it fits
        (False, 300, 800, 1000, None, Queue(TOKEN_LIMIT, NOW)),  # over the enqueued-token limit
        (False, 5000, 0, 1000, None, Send()),  # bigger than the limit: goes alone, never waits forever
        (True, 300, 800, 1000, None, Reuse()),  # its batch exists: reused whatever the capacity
        (True, 100, 0, None, NOW - 5, Reuse()),  # even after a quota refusal in this run
        # the provider refused this shard's create (asked again with refused_at=now), or an earlier one's
        (False, 100, 0, None, NOW, Queue(PROVIDER_QUOTA, NOW + BACKOFF)),
        (False, 100, 0, None, NOW - 5, Queue(PROVIDER_QUOTA, NOW - 5 + BACKOFF)),
        (False, 300, 800, 1000, NOW - 5, Queue(TOKEN_LIMIT, NOW)),  # the configured limit is checked first
    ],
)
def test_admit_shard(found: bool, tokens: int, enqueued: int, limit: int | None, refused_at: float | None,
                     expected: Admission) -> None:
    assert admit_shard(found, tokens, enqueued, limit, refused_at, NOW, BACKOFF) == expected


def test_a_quota_wait_of_zero_offers_the_shard_again_at_once() -> None:
    assert admit_shard(False, 1, 0, None, NOW, NOW, 0.0) == Queue(PROVIDER_QUOTA, NOW)
