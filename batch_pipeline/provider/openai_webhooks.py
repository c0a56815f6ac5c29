"""OpenAI's batch webhooks, verified and read with the `openai` client's own webhook support.

OpenAI signs each delivery as Standard Webhooks do: `webhook-id`, `webhook-timestamp` and
`webhook-signature` headers, an HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed with the
endpoint's `whsec_` secret. `client.webhooks.unwrap` checks the signature and the timestamp
together and says only "does not match"; the timestamp is read here first so that a stale or
malformed delivery is told apart from a forged one (docs/webhooks.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import openai

# How far a delivery's timestamp may be from now, either way: the openai client's own default.
TOLERANCE_SECONDS = 300
# A batch's terminal status, by the event that reports it.
BATCH_EVENTS = {"batch.completed": "completed", "batch.failed": "failed", "batch.expired": "expired",
                "batch.cancelled": "cancelled"}


class WebhookRefused(Exception):
    """A delivery that is not taken: `status` is the HTTP answer (400 malformed or stale, 401 forged)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WebhookDelivery:
    """A verified delivery: its `webhook-id` (the same on every retry of it), the event's type,
    and for a batch event the batch it is about (None for other events)."""

    webhook_id: str
    event_id: str
    event_type: str
    batch_id: str | None
    created_at: int


class WebhookVerifier:
    """Reads deliveries signed with one endpoint's secret. The `openai` client it holds only
    verifies: it sends nothing and needs no API key."""

    def __init__(self, secret: str) -> None:
        self._client = openai.OpenAI(api_key="unused-by-webhooks", webhook_secret=secret)

    def delivery(self, payload: bytes, headers: Mapping[str, str], now: float | None = None) -> WebhookDelivery:
        """The delivery, once its timestamp is fresh and its signature is OpenAI's; `WebhookRefused` else."""
        headers = {name.lower(): value for name, value in headers.items()}
        _check_timestamp(headers, time.time() if now is None else now)
        try:
            event = self._client.webhooks.unwrap(payload, headers)
        except openai.InvalidWebhookSignatureError:
            raise WebhookRefused(401, "webhook-signature does not match the secret") from None
        except ValueError:  # a signed body that is not JSON
            raise WebhookRefused(400, "the body is not a JSON event") from None
        return _delivery(headers["webhook-id"], event)


def _check_timestamp(headers: Mapping[str, str], now: float) -> None:
    """Refuse (400) a delivery without the three headers or with a timestamp too far from `now`."""
    stamp = headers.get("webhook-timestamp", "")
    if not headers.get("webhook-id") or not stamp or not headers.get("webhook-signature"):
        raise WebhookRefused(400, "missing webhook-id, webhook-timestamp or webhook-signature header")
    if not stamp.isdigit():
        raise WebhookRefused(400, "webhook-timestamp is not a Unix time in seconds")
    age = now - int(stamp)
    if abs(age) > TOLERANCE_SECONDS:
        raise WebhookRefused(400, f"webhook-timestamp is {age:+.0f} s from now (more than {TOLERANCE_SECONDS} s)")


def _delivery(webhook_id: str, event: object) -> WebhookDelivery:
    """The event's fields the pipeline uses; 400 for a signed body that is not an event."""
    event_type, event_id = getattr(event, "type", None), getattr(event, "id", None)
    if not isinstance(event_type, str) or not isinstance(event_id, str):
        raise WebhookRefused(400, "the body is not an event (no id or type)")
    batch_id = getattr(getattr(event, "data", None), "id", None) if event_type in BATCH_EVENTS else None
    if event_type in BATCH_EVENTS and not isinstance(batch_id, str):
        raise WebhookRefused(400, f"{event_type} event {event_id} names no batch (data.id)")
    created_at = getattr(event, "created_at", 0)
    return WebhookDelivery(webhook_id, event_id, event_type, batch_id, created_at if isinstance(created_at, int) else 0)
