"""Which failed rows go again, as a table; the vectorised form over a results table agrees."""

from __future__ import annotations

import pyarrow as pa
import pytest

from batch_pipeline.harvest import lines
from batch_pipeline.state.retry import RETRYABLE_CODES, retryable

ROWS = [
    # error_code, attempts, max_attempts, goes again
    ("rate_limit_exceeded", 1, 3, True),
    ("server_error", 2, 3, True),
    ("http_503", 1, 3, True),
    ("batch_expired", 1, 3, True),
    ("token_limit_exceeded", 1, 3, True),
    ("missing_result", 1, 3, True),
    ("rate_limit_error", 1, 3, True),  # Anthropic's errored request types
    ("overloaded_error", 2, 3, True),
    ("api_error", 1, 3, True),
    ("RESOURCE_EXHAUSTED", 1, 3, True),  # Gemini's per-request statuses
    ("UNAVAILABLE", 2, 3, True),
    ("INVALID_ARGUMENT", 1, 3, False),
    ("rate_limit_exceeded", 3, 3, False),  # no attempts left
    ("rate_limit_exceeded", 1, 1, False),  # retries switched off
    ("invalid_request_error", 1, 3, False),  # the row's own error fails the same way again
    ("content_policy_violation", 1, 3, False),
    ("batch_cancelled", 1, 3, False),  # an operator cancelled it
    (None, 1, 3, False),  # succeeded
]


@pytest.mark.parametrize(("code", "attempts", "max_attempts", "expected"), ROWS)
def test_retryable(code: str | None, attempts: int, max_attempts: int, expected: bool) -> None:
    assert retryable(code, attempts, max_attempts) is expected


def test_the_results_table_form_applies_the_same_rule() -> None:
    max_attempts = 3
    rows = [r for r in ROWS if r[2] == max_attempts]
    table = pa.table({
        "custom_id": [f"c{i}" for i in range(len(rows))],
        "error_code": [r[0] for r in rows],
        "attempts": [r[1] for r in rows],
    })
    expected = [f"c{i}" for i, r in enumerate(rows) if retryable(r[0], r[1], max_attempts)]
    assert lines.retryable(table, max_attempts) == expected
    assert lines.RETRYABLE_CODES is RETRYABLE_CODES
