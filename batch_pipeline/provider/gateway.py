"""The provider gateway: the few Batch API operations the pipeline needs, on the real `openai` client.

Every Batch it returns is in OpenAI's vocabulary (`contract.normalized_batch`), whichever
provider answered.

Create calls are sent with the client's own retries turned off: the client retries POSTs without
an idempotency key, so a timeout could otherwise create a second, billed batch (reference §9.5).
Instead a failed create is reconciled by looking the batch up by its idempotency key in the
provider's metadata before trying again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import openai
from openai.types import Batch

from batch_pipeline.provider.contract import QuotaRefused, normalized_batch
from batch_pipeline.provider.providers import OPENAI_INPUT_FILE_TTL_SECONDS
from batch_pipeline.state.partition_state import TERMINAL

PIPELINE = "batch_pipeline"
LIST_PAGE_SIZE = 100  # the provider's maximum page size for batches.list
# A batch is terminal within its 24 h completion window (plus finalizing); older ones hold no
# enqueued tokens.
ENQUEUED_WINDOW_SECONDS = 26 * 3600
CLOCK_SLACK_SECONDS = 900  # our clock against the provider's created_at
QUOTA_CODE = "token_limit_exceeded"  # the enqueued-token quota, at create (Azure) or validation


@dataclass(frozen=True)
class Sweep:
    found: dict[str, Batch]
    enqueued_tokens: int


@dataclass
class BatchGateway:
    """Pipeline-level operations on one provider; `calls` counts requests sent, for monitoring.

    `input_file_ttl_seconds` is the provider's (`Provider.input_file_ttl_seconds`).
    """

    client: openai.OpenAI
    input_file_ttl_seconds: int = OPENAI_INPUT_FILE_TTL_SECONDS
    calls: int = field(default=0, init=False)

    def batch_pages(self) -> Iterator[list[Batch]]:
        """Pages of batches, newest first, one list call per page."""
        after: str | None = None
        while True:
            self.calls += 1
            page = self.client.batches.list(limit=LIST_PAGE_SIZE, after=after or openai.omit)
            if not page.data:
                return
            yield [normalized_batch(batch) for batch in page.data]
            if not page.has_more:
                return
            after = page.data[-1].id

    def sweep(self, idempotency_keys: set[str], since: float | None, model: str | None = None) -> Sweep:
        """Our batches carrying any of `idempotency_keys` (the newest wins), and the enqueued
        tokens of our batches of `model` that are not terminal yet.

        Pages are read newest first back to `since`, the earliest submission intent recorded for
        these keys (no batch carrying them can be older), with no page limit; with `model`, back
        over the completion window too. A list call that fails raises: a lookup that cannot
        finish never passes for "not found", so submission fails closed instead of paying twice.
        """
        bounds = ([since] if since is not None else []) + ([time.time() - ENQUEUED_WINDOW_SECONDS] if model else [])
        found: dict[str, Batch] = {}
        enqueued = 0
        if not bounds:
            return Sweep(found, enqueued)
        oldest = min(bounds) - CLOCK_SLACK_SECONDS
        for page in self.batch_pages():
            for batch in page:
                meta = batch.metadata or {}
                if meta.get("pipeline") != PIPELINE:
                    continue
                key = meta.get("idempotency_key")
                if key in idempotency_keys and key not in found:
                    found[key] = batch
                if model and meta.get("model") == model and batch.status not in TERMINAL:
                    enqueued += int(meta.get("estimated_tokens") or 0)
            if (not model and found.keys() >= idempotency_keys) or page[-1].created_at < oldest:
                break
        return Sweep(found, enqueued)

    def states_of(self, batch_ids: set[str], since: float) -> dict[str, Batch]:
        """The current state of our batches `batch_ids` (submitted after `since`), in few calls
        whatever else the organisation's provider holds.

        List pages (100 batches a call, newest first) find many of ours at once while ours are
        among the newest; once a page holds none of them (other batches came after), the rest
        are retrieved one call each. So the calls follow our batches in flight, never the
        organisation's other batches. A batch the provider does not know stays out of the answer.
        """
        states: dict[str, Batch] = {}
        oldest = since - CLOCK_SLACK_SECONDS
        for page in self.batch_pages():
            found = [batch for batch in page if batch.id in batch_ids]
            states.update((batch.id, batch) for batch in found)
            if states.keys() >= batch_ids or not found or page[-1].created_at < oldest:
                break
        for batch_id in sorted(batch_ids - states.keys()):
            try:
                states[batch_id] = self.retrieve(batch_id)
            except openai.NotFoundError:
                continue
        return states

    def input_files(self) -> dict[str, str]:
        """Uploaded batch input files by name (the newest of a name wins), from one listing.

        Covers a process that died between upload and batch create: the upload is reused
        instead of leaked and paid for in storage twice.
        """
        self.calls += 1
        found: dict[str, str] = {}
        for file in self.client.files.list(purpose="batch"):  # newest first
            if file.status != "error":
                found.setdefault(file.filename, file.id)
        return found

    def upload(self, filename: str, data: bytes) -> str:
        """Upload a batch input file that the provider deletes by itself after a while.

        A batch runs within 24 hours and the request lines stay in the warehouse, so the provider's
        copy is not needed for long; expiry keeps a crashed run from leaking storage.
        """
        self.calls += 1
        return self.client.files.create(
            file=(filename, data),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": self.input_file_ttl_seconds},
        ).id

    def create_batch(
        self, *, input_file_id: str, endpoint: str, metadata: dict[str, str], attempts: int = 4
    ) -> Batch:
        """Create a batch exactly once, reconciling by idempotency key after any failed attempt.

        Raises `QuotaRefused` when the provider refuses it for its enqueued-token quota (nothing
        was created; the provider's message is not kept, as it may name deployments).
        """
        key = metadata["idempotency_key"]
        started = time.time()  # a batch this call created cannot be older
        no_retry = self.client.with_options(max_retries=0)
        for attempt in range(1, attempts + 1):
            try:
                self.calls += 1
                return normalized_batch(no_retry.batches.create(
                    input_file_id=input_file_id,
                    endpoint=endpoint,  # type: ignore[arg-type]
                    completion_window="24h",
                    metadata=metadata,
                ))
            except openai.BadRequestError as exc:
                if exc.code == QUOTA_CODE or QUOTA_CODE in str(exc.body):  # the code, or a body naming it
                    raise QuotaRefused(f"the provider refused batch creation: {QUOTA_CODE}") from None
                raise
            except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError):
                existing = self.sweep({key}, since=started).found.get(key)
                if existing is not None:
                    return existing
                if attempt == attempts:
                    raise
                time.sleep(min(2.0**attempt, 30.0))
        raise AssertionError("unreachable")

    def retrieve(self, batch_id: str) -> Batch:
        self.calls += 1
        return normalized_batch(self.client.batches.retrieve(batch_id))

    def download(self, file_id: str) -> bytes:
        self.calls += 1
        return self.client.files.content(file_id).content

    def delete_file(self, file_id: str) -> bool:
        """Delete a provider file; False when it was gone already, so deleting again is harmless."""
        self.calls += 1
        try:
            return bool(self.client.files.delete(file_id).deleted)
        except openai.NotFoundError:
            return False
