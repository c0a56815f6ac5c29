"""The local Batch API's webhook outbox: one event per batch that ends, signed so that the
`openai` client's own verification accepts it, retried until a 2xx answer, with the same
`webhook-id` on every try; dropped or doubled on purpose for tests. The destination is an
httpx2 transport recording what it is sent (the sender is what is under test)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx2
import orjson

from batch_pipeline.local_api import LocalAPISettings, embedded_client
from batch_pipeline.local_api.store import Store
from batch_pipeline.local_api.webhook_sender import WebhookSender
from batch_pipeline.provider.openai_webhooks import WebhookVerifier
from tests.local_api.support import FAST, chat_line, submit, wait_terminal

SECRET = "whsec_" + base64.b64encode(b"local api webhook sender secret").decode()
URL = "http://receiver.test/webhooks/openai"


def _ended_batch(data_dir: Path) -> str:
    client = embedded_client(data_dir, settings=FAST)
    return wait_terminal(client, submit(client, [chat_line("a"), chat_line("b")])).id


def _sender(data_dir: Path, **settings: float) -> WebhookSender:
    return WebhookSender(Store(data_dir), LocalAPISettings(
        pace_seconds=FAST.pace_seconds, webhook_url=URL, webhook_secret=SECRET, webhook_retry_seconds=0.01,
        **settings))


def _destination(answers: list[int]) -> tuple[httpx2.Client, list[httpx2.Request]]:
    """A client whose requests get `answers` in turn (then 200), and the requests it was sent."""
    sent: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(answers.pop(0) if answers else 200)

    return httpx2.Client(transport=httpx2.MockTransport(answer)), sent


def _send_all(sender: WebhookSender, client: httpx2.Client) -> None:
    """Send until no delivery is pending (each sent, dropped or given up)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sender.enqueue_ended()
        sender.send_due(client)
        with sender.store.connect() as conn:
            if not conn.execute("SELECT 1 FROM webhook_events WHERE state = 'pending'").fetchone():
                return
        time.sleep(0.01)
    raise AssertionError("deliveries still pending after 60 s")


def test_an_ended_batch_is_announced_once_signed_as_openai_verifies_and_retried_until_taken(tmp_path: Path):
    sender = _sender(tmp_path)  # started before the batch ends: it is announced
    batch_id = _ended_batch(tmp_path)
    client, sent = _destination([503, 500])
    _send_all(sender, client)
    assert len(sent) == 3 and {r.headers["webhook-id"] for r in sent} == {sent[0].headers["webhook-id"]}
    delivery = WebhookVerifier(SECRET).delivery(sent[-1].content, dict(sent[-1].headers))
    assert (delivery.event_type, delivery.batch_id) == ("batch.completed", batch_id)
    assert orjson.loads(sent[-1].content)["object"] == "event"
    with Store(tmp_path).connect() as conn:
        assert [tuple(r) for r in conn.execute("SELECT state, attempts FROM webhook_events")] == [("sent", 3)]


def test_drop_and_duplicate_and_the_batches_that_ended_before_the_first_sender(tmp_path: Path):
    before = _ended_batch(tmp_path)
    # batch times are whole seconds and one that ended in the sender's first second is announced
    # (a spare announcement is harmless, a missing one is not): start it a second later
    time.sleep(1.1)
    client, sent = _destination([])
    _send_all(_sender(tmp_path), client)
    assert sent == []  # it ended before this data dir's first sender started
    doubled = _ended_batch(tmp_path)
    _send_all(_sender(tmp_path, webhook_duplicate_fraction=1.0), client)
    assert [orjson.loads(r.content)["data"]["id"] for r in sent] == [doubled, doubled]
    assert sent[0].headers["webhook-id"] == sent[1].headers["webhook-id"]
    _ended_batch(tmp_path)
    _send_all(_sender(tmp_path, webhook_drop_fraction=1.0), client)
    assert len(sent) == 2
    with Store(tmp_path).connect() as conn:
        states = dict(tuple(r) for r in conn.execute("SELECT batch_id, state FROM webhook_events"))
    assert states[before] == "before" and states[doubled] == "sent" and sorted(states.values()) == [
        "before", "dropped", "sent"]


def test_a_delivery_never_taken_is_given_up_after_its_tries(tmp_path: Path):
    sender = _sender(tmp_path, webhook_max_attempts=3)
    _ended_batch(tmp_path)
    client, sent = _destination([500] * 10)
    _send_all(sender, client)
    assert len(sent) == 3
    with Store(tmp_path).connect() as conn:
        assert [tuple(r) for r in conn.execute("SELECT state, attempts FROM webhook_events")] == [("failed", 3)]
