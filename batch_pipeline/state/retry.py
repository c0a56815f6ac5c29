"""Which failed rows are worth another attempt (docs/decisions.md, "Retry eligibility").

A row is sent again when its latest failure is transient (rate limits, server errors, expiry,
the provider's queue limit, an answer missing from the output) and it has attempts left; any
other error is the row's own (a bad request, a refusal) and would fail the same way again.
"""

from __future__ import annotations

RETRYABLE_CODES = frozenset({
    "rate_limit_exceeded", "server_error", "internal_error", "service_unavailable", "http_429",
    "http_500", "http_502", "http_503", "http_504", "batch_expired", "token_limit_exceeded",
    "missing_result",
    # Anthropic's error types of an `errored` request that another attempt can fix
    "rate_limit_error", "api_error", "overloaded_error",
    # Gemini's per-request statuses (google.rpc) that another attempt can fix
    "RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED",
})


def retryable(error_code: str | None, attempts: int, max_attempts: int) -> bool:
    """True when a row that failed with `error_code` after `attempts` attempts goes again."""
    return error_code in RETRYABLE_CODES and attempts < max_attempts
