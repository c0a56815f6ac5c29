"""Injected faults, reproducible from ``LocalAPISettings.fault_seed``.

Per-request faults are a pure function of (seed, input file content, custom_id): the same
batch fails on the same lines in every run and every process, while a follow-up batch
(different content) draws again. API-call faults come from one seeded stream per app.
"""

from __future__ import annotations

import hashlib
import random
import threading
from typing import Literal

from batch_pipeline.local_api.errors import APIError, error_body
from batch_pipeline.local_api.responders import Reply
from batch_pipeline.local_api.settings import LocalAPISettings

ApiFault = Literal["rate_limit", "server_error", "overloaded", "timeout"]
# OpenAI's 503 when it is overloaded (type server_error, no code); the Anthropic routes show it as
# 529 overloaded_error, the Gemini routes as 503 UNAVAILABLE (docs/local-api-*.md).
OVERLOADED_MESSAGE = "The server is overloaded or not ready yet."


def _uniform(*parts: object) -> float:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def line_fault(settings: LocalAPISettings, input_sha256: str, custom_id: str) -> Reply | None:
    """The error reply a request line gets instead of running, if its draw says so."""
    u = _uniform(settings.fault_seed, input_sha256, custom_id)
    threshold = settings.line_rate_limit_fraction
    if u < threshold:
        return 429, error_body("Rate limit reached for requests. Please try again later.", "requests", None,
                               "rate_limit_exceeded")
    threshold += settings.line_server_error_fraction
    if u < threshold:
        return 500, error_body("The server had an error while processing your request. Sorry about that!",
                               "server_error", None, "server_error")
    threshold += settings.line_invalid_request_fraction
    if u < threshold:
        return 400, error_body("The request could not be processed: invalid parameters.", "invalid_request_error",
                               None, "invalid_request_error")
    threshold += settings.line_overloaded_fraction  # drawn last: the older kinds keep their draws
    if u < threshold:
        return 503, error_body(OVERLOADED_MESSAGE, "server_error")
    return None


class ApiFaults:
    """Draws which API calls fail at the HTTP level."""

    def __init__(self, settings: LocalAPISettings) -> None:
        self._settings = settings
        self._random = random.Random(settings.fault_seed)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        s = self._settings
        return bool(s.api_rate_limit_fraction or s.api_server_error_fraction or s.api_timeout_fraction
                    or s.api_overloaded_fraction)

    def draw(self) -> ApiFault | None:
        s = self._settings
        with self._lock:
            u = self._random.random()
        kinds: list[tuple[ApiFault, float]] = [
            ("rate_limit", s.api_rate_limit_fraction), ("server_error", s.api_server_error_fraction),
            ("timeout", s.api_timeout_fraction), ("overloaded", s.api_overloaded_fraction)]
        threshold = 0.0
        for kind, fraction in kinds:
            threshold += fraction
            if u < threshold:
                return kind
        return None


def api_fault_error(fault: ApiFault) -> APIError:
    if fault == "rate_limit":
        return APIError(429, "Rate limit reached for requests. Please try again in 1s.", type="requests",
                        code="rate_limit_exceeded", headers={"retry-after": "1"})
    if fault == "overloaded":
        return APIError(503, OVERLOADED_MESSAGE, type="server_error")
    return APIError(500, "The server had an error while processing your request. Sorry about that!",
                    type="server_error", code="server_error")
