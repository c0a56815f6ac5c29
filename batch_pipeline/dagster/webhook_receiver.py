"""The webhook receiver (`batch-pipeline webhooks`): a small ASGI app for OpenAI's batch events.

Each delivery is verified (signature and timestamp, `provider/openai_webhooks.py`), recorded once
per `webhook-id` in the Dagster instance (`webhook_events.py`), and answered; the batch monitor
acts on it at its next tick. Answers follow what a Standard Webhooks sender expects: 2xx once
taken (also for a replay, and for an event type the pipeline has no use for, so it is not sent
again), 400 for a malformed or stale delivery, 401 for a forged one, 413 for an oversized body.
"""

from __future__ import annotations

import logging

import anyio.to_thread
import dagster as dg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batch_pipeline.dagster.webhook_events import record_delivery
from batch_pipeline.provider.openai_webhooks import WebhookRefused, WebhookVerifier

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/openai"
SECRET_VARIABLE = "OPENAI_WEBHOOK_SECRET"  # the variable the openai client reads it from
MAX_BODY_BYTES = 1 << 20  # a batch event is a few hundred bytes


def webhook_app(instance: dg.DagsterInstance, secret: str) -> Starlette:
    """The receiver: `POST /webhooks/openai` takes deliveries, `GET /healthz` answers 200."""
    verifier = WebhookVerifier(secret)

    async def receive(request: Request) -> Response:
        payload = await _body(request)
        if payload is None:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, 413)
        try:
            delivery = verifier.delivery(payload, request.headers)
        except WebhookRefused as refused:  # the reason names headers and times, never the secret
            log.warning("webhook refused with %s: %s", refused.status, refused.reason)
            return JSONResponse({"error": refused.reason}, refused.status)
        if delivery.batch_id is None:
            return JSONResponse({"status": "ignored", "type": delivery.event_type})
        recorded = await anyio.to_thread.run_sync(record_delivery, instance, delivery)
        log.info("webhook %s %s for %s: %s", delivery.webhook_id, delivery.event_type, delivery.batch_id,
                 "recorded" if recorded else "replayed, already recorded")
        return JSONResponse({"status": "recorded" if recorded else "replayed", "batch_id": delivery.batch_id})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route(WEBHOOK_PATH, receive, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


async def _body(request: Request) -> bytes | None:
    """The raw body as sent (the signature is over these bytes), or None past `MAX_BODY_BYTES`."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def serve_webhooks(host: str, port: int, secret: str) -> None:
    """Block serving the receiver on the instance `DAGSTER_HOME` names (the one the daemon uses)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    with dg.DagsterInstance.get() as instance:
        # Access logs show paths and statuses only, never headers.
        uvicorn.run(webhook_app(instance, secret), host=host, port=port, log_level="info",
                    timeout_graceful_shutdown=5)
