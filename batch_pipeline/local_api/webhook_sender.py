"""Signed webhook deliveries from the served local Batch API, as OpenAI sends them.

When a batch ends (completed, failed, expired or cancelled, in whichever process moved it), the
served API's sender thread finds it (a terminal OpenAI batch with no row in `webhook_events`),
writes its event once, and POSTs it to `webhook_url` until an answer is 2xx or
`webhook_max_attempts` tries have failed, the wait doubling from `webhook_retry_seconds`. The
event keeps one `webhook-id` on every try, as a Standard Webhooks sender's retries do; each try is
signed afresh with its own timestamp. The outbox lives in the store's SQLite, so a restart
neither loses an unsent event nor sends a sent one again. Batches that ended before the data
dir's first sender started are not announced. Two served processes on one data dir may both send
a due event; the second copy carries the same `webhook-id`, which a receiver takes as a replay.

For tests, `webhook_drop_fraction` of events are never sent (a lost delivery) and
`webhook_duplicate_fraction` are sent twice, both drawn from `fault_seed` and the batch id.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx2
import orjson
from standardwebhooks.webhooks import Webhook

from batch_pipeline.local_api.faults import _uniform as uniform
from batch_pipeline.local_api.settings import LocalAPISettings
from batch_pipeline.local_api.store import OPENAI, TERMINAL_STATUSES, Store

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_events (
    batch_id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,  -- pending, sent, dropped, failed, or before (ended before the first sender)
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_events_by_state ON webhook_events(state, next_at);
CREATE TABLE IF NOT EXISTS webhook_meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
MAX_RETRY_SECONDS = 60.0
_PER_ROUND = 50


class WebhookSender:
    """The outbox of one data dir and the deliveries from it."""

    def __init__(self, store: Store, settings: LocalAPISettings) -> None:
        if not settings.webhook_url or not settings.webhook_secret:  # the settings' own check requires both
            raise ValueError("webhooks need both webhook_url and webhook_secret")
        self.store, self.settings, self.url = store, settings, settings.webhook_url
        self.signer = Webhook(settings.webhook_secret)
        self.floor = 0  # every batch below this seq ended and has its event: not read again
        with store.connect() as conn:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO webhook_meta (key, value) VALUES ('since', ?)", (time.time(),))
            self.since = conn.execute("SELECT value FROM webhook_meta WHERE key = 'since'").fetchone()["value"]

    def enqueue_ended(self) -> int:
        """Write the event of every OpenAI batch that ended since the last look; how many. Only
        batches from the oldest one still running at the last look on are read."""
        terminal = ",".join("?" * len(TERMINAL_STATUSES))
        with self.store.connect() as conn:
            # newest first: a batch created between the two reads is above both
            newest = conn.execute("SELECT MAX(seq) AS seq FROM batches").fetchone()["seq"] or 0
            running = conn.execute(f"SELECT MIN(seq) AS seq FROM batches WHERE status NOT IN ({terminal})",
                                   sorted(TERMINAL_STATUSES)).fetchone()["seq"]
            rows = conn.execute(
                "SELECT b.id, b.status, b.doc FROM batches b LEFT JOIN webhook_events e ON e.batch_id = b.id"
                f" WHERE b.seq >= ? AND e.batch_id IS NULL AND b.flavour = ? AND b.status IN ({terminal})",
                (self.floor, OPENAI, *sorted(TERMINAL_STATUSES))).fetchall()
        events = [self._event(row["id"], row["status"], orjson.loads(row["doc"])) for row in rows]
        if events:
            with self.store.transaction() as conn:
                conn.executemany("INSERT OR IGNORE INTO webhook_events (batch_id, webhook_id, body, state)"
                                 " VALUES (?, ?, ?, ?)", events)
        self.floor = newest + 1 if running is None else running
        return len(events)

    def _event(self, batch_id: str, status: str, doc: dict[str, Any]) -> tuple[str, str, bytes, str]:
        """The event row: OpenAI's `batch.<status>` payload, or `before` for a batch that ended
        before this data dir's first sender started."""
        ended = doc.get(f"{status}_at") or int(time.time())
        body = orjson.dumps({"id": "evt_" + secrets.token_hex(16), "object": "event", "created_at": ended,
                             "type": f"batch.{status}", "data": {"id": batch_id}})
        state = "pending" if ended >= int(self.since) else "before"
        if state == "pending" and uniform(self.settings.fault_seed, batch_id, "webhook-drop") \
                < self.settings.webhook_drop_fraction:
            state = "dropped"
        return batch_id, "wh_" + secrets.token_hex(16), body, state

    def send_due(self, client: httpx2.Client) -> int:
        """Try every pending delivery that is due; how many were tried."""
        now = time.time()
        with self.store.connect() as conn:
            rows = conn.execute("SELECT * FROM webhook_events WHERE state = 'pending' AND next_at <= ?"
                                " ORDER BY next_at LIMIT ?", (now, _PER_ROUND)).fetchall()
        for row in rows:
            ok = self._post(client, row["webhook_id"], row["body"])
            if ok and uniform(self.settings.fault_seed, row["batch_id"], "webhook-duplicate") \
                    < self.settings.webhook_duplicate_fraction:
                self._post(client, row["webhook_id"], row["body"])
            self._settle(row["batch_id"], ok, row["attempts"] + 1)
        return len(rows)

    def _post(self, client: httpx2.Client, webhook_id: str, body: bytes) -> bool:
        """One try: signed now, True on a 2xx answer."""
        now = datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": webhook_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": self.signer.sign(webhook_id, now, body.decode())}
        try:
            answer = client.post(self.url, content=body, headers=headers)
        except httpx2.HTTPError as exc:
            log.warning("webhook %s not delivered: %s", webhook_id, type(exc).__name__)
            return False
        if not answer.is_success:
            log.warning("webhook %s answered %s", webhook_id, answer.status_code)
        return answer.is_success

    def _settle(self, batch_id: str, ok: bool, attempts: int) -> None:
        """Record a try: sent, due again after the doubling wait, or given up."""
        if ok:
            state, next_at = "sent", 0.0
        elif attempts >= self.settings.webhook_max_attempts:
            state, next_at = "failed", 0.0
            log.error("webhook for %s given up after %s tries", batch_id, attempts)
        else:
            wait = min(MAX_RETRY_SECONDS, self.settings.webhook_retry_seconds * 2 ** (attempts - 1))
            state, next_at = "pending", time.time() + wait
        with self.store.transaction() as conn:
            conn.execute("UPDATE webhook_events SET state = ?, attempts = ?, next_at = ? WHERE batch_id = ?",
                         (state, attempts, next_at, batch_id))


def start_sender(store: Store, settings: LocalAPISettings, interval: float) -> threading.Event:
    """Deliver in a daemon thread every `interval` seconds until the returned event is set."""
    sender = WebhookSender(store, settings)
    stop = threading.Event()

    def loop() -> None:
        with httpx2.Client(timeout=10.0) as client:
            while not stop.wait(interval):
                try:
                    sender.enqueue_ended()
                    sender.send_due(client)
                except Exception:
                    log.exception("local Batch API: webhook delivery round failed")

    threading.Thread(target=loop, name="local-batch-api-webhooks", daemon=True).start()
    return stop
