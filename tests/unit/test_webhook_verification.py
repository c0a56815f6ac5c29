"""A delivery is told apart as forged (401), stale or malformed (400), or taken, with the openai
client's own verification; the local API's signing is what that verification accepts."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from batch_pipeline.provider.openai_webhooks import (
    TOLERANCE_SECONDS,
    WebhookRefused,
    WebhookVerifier,
)

SECRET = "whsec_" + base64.b64encode(b"unit test secret for webhooks..").decode()
# The openai client checks the timestamp against the clock too: deliveries are signed "now".
NOW = int(time.time())
VERIFIER = WebhookVerifier(SECRET)


def _headers(body: bytes, at: int = NOW, webhook_id: str = "wh_1", secret: str = SECRET) -> dict[str, str]:
    moment = datetime.fromtimestamp(at, UTC)
    return {"Webhook-Id": webhook_id, "Webhook-Timestamp": str(at),
            "Webhook-Signature": Webhook(secret).sign(webhook_id, moment, body.decode())}


def _body(kind: str = "batch.expired", data: object = None) -> bytes:
    return json.dumps({"id": "evt_1", "object": "event", "created_at": NOW, "type": kind,
                       "data": {"id": "batch_1"} if data is None else data}).encode()


def test_a_signed_batch_event_is_read_with_its_batch_and_webhook_id():
    delivery = VERIFIER.delivery(_body(), _headers(_body()), now=NOW)
    assert (delivery.webhook_id, delivery.event_type, delivery.batch_id, delivery.created_at) == (
        "wh_1", "batch.expired", "batch_1", NOW)


def test_other_events_are_read_without_a_batch():
    body = _body("response.completed", {"id": "resp_1"})
    assert VERIFIER.delivery(body, _headers(body), now=NOW).batch_id is None


@pytest.mark.parametrize(("headers", "now", "status", "reason"), [
    (lambda b: _headers(b, secret="whsec_" + base64.b64encode(b"another secret").decode()), NOW, 401, "match"),
    (lambda b: _headers(b), NOW + TOLERANCE_SECONDS + 1, 400, "from now"),
    (lambda b: _headers(b), NOW - TOLERANCE_SECONDS - 1, 400, "from now"),  # from the future
    (lambda b: {**_headers(b), "Webhook-Timestamp": "12.5"}, NOW, 400, "Unix time"),
    (lambda b: {k: v for k, v in _headers(b).items() if k != "Webhook-Id"}, NOW, 400, "missing"),
], ids=["forged", "stale", "from-the-future", "not-unix-time", "no-webhook-id"])  # NOW is no stable id: xdist
# workers must collect the same names
def test_forged_stale_and_malformed_deliveries_are_refused(headers, now, status, reason):
    with pytest.raises(WebhookRefused) as refused:
        VERIFIER.delivery(_body(), headers(_body()), now=now)
    assert refused.value.status == status and reason in refused.value.reason
    assert SECRET not in refused.value.reason


def test_a_signed_body_that_is_no_batch_event_is_refused_as_malformed():
    for body in (b"[1, 2]", _body(data={})):
        with pytest.raises(WebhookRefused) as refused:
            VERIFIER.delivery(body, _headers(body), now=NOW)
        assert refused.value.status == 400
