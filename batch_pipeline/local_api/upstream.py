"""Forward request lines to an OpenAI-compatible synchronous server (vLLM, Ollama, llama.cpp, OpenAI).

This turns any such server into a Batch API: each chunk of lines is sent with bounded
concurrency (a thread pool that lives only for the chunk, so nothing lingers), and 429,
5xx and connection failures are retried with exponential backoff before the line is
recorded as failed.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import orjson

from batch_pipeline.local_api.errors import error_body
from batch_pipeline.local_api.lifecycle import Executor, ServedModels
from batch_pipeline.local_api.responders import EncodedReply, Reply
from batch_pipeline.local_api.settings import LocalAPISettings

log = logging.getLogger(__name__)
MODELS_TTL_SECONDS = 60.0
_RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def upstream_executor(settings: LocalAPISettings) -> Executor:
    base = (settings.upstream_url or "").rstrip("/")
    headers = {"content-type": "application/json"}
    if settings.upstream_api_key:
        headers["authorization"] = f"Bearer {settings.upstream_api_key}"
    client = httpx2.Client(timeout=settings.upstream_timeout_seconds, headers=headers)

    def send(endpoint: str, body: dict[str, Any]) -> Reply:
        # The batch endpoint carries the /v1 prefix; the upstream base URL already ends with it.
        url = base + endpoint.removeprefix("/v1")
        payload = orjson.dumps(body)
        delay = 0.5
        for attempt in range(settings.upstream_max_retries + 1):
            last = attempt == settings.upstream_max_retries
            try:
                response = client.post(url, content=payload)
            except httpx2.HTTPError as exc:
                if last:
                    return 500, error_body(f"Upstream server failed: {type(exc).__name__}: {exc}", "server_error",
                                           None, "upstream_error")
            else:
                if response.status_code not in _RETRY_STATUSES or last:
                    try:
                        parsed = response.json()
                    except ValueError:
                        parsed = error_body(response.text[:1000], "server_error", None, "upstream_error")
                    return response.status_code, parsed if isinstance(parsed, dict) else {"data": parsed}
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def execute(endpoint: str, bodies: list[dict[str, Any]]) -> list[Reply | EncodedReply]:
        if len(bodies) <= 1:
            return [send(endpoint, body) for body in bodies]
        with ThreadPoolExecutor(max_workers=min(settings.upstream_concurrency, len(bodies))) as pool:
            return list(pool.map(lambda body: send(endpoint, body), bodies))

    return execute


def upstream_models(settings: LocalAPISettings) -> ServedModels:
    """The upstream's ``/models`` ids, asked at most once a minute.

    The upstream decides which models exist, as OpenAI does for its own; an upstream that
    cannot list them (no such route, unreachable) leaves the model check to its own answers.
    """
    url = (settings.upstream_url or "").rstrip("/") + "/models"
    headers = {"authorization": f"Bearer {settings.upstream_api_key}"} if settings.upstream_api_key else {}
    lock = threading.Lock()
    cached: list[tuple[float, frozenset[str] | None]] = []

    def served() -> frozenset[str] | None:
        with lock:
            if cached and time.monotonic() - cached[0][0] < MODELS_TTL_SECONDS:
                return cached[0][1]
            models: frozenset[str] | None = None
            try:
                response = httpx2.get(url, headers=headers, timeout=min(settings.upstream_timeout_seconds, 10.0))
                response.raise_for_status()
                models = frozenset(m["id"] for m in response.json()["data"] if isinstance(m.get("id"), str))
            except (httpx2.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("local Batch API: upstream %s lists no models (%s); any model is accepted", url, exc)
            cached[:] = [(time.monotonic(), models)]
            return models

    return served
