"""The batches a provider holds, read through its official SDK, each named by the piece of work it
carries: what the fault matrix and the concurrency test count "one batch per piece" on.

- OpenAI: (use case, partition, shard, attempt), from the batch's metadata.
- Gemini: the job's display name, which is the shard's idempotency key (derived from the use case,
  partition, shard content and attempt); `first_keys` tells the first round's keys apart.
- Anthropic holds no metadata: a batch is named by the custom ids in its results and its attempt,
  1 + the most earlier batches (by creation) in which one of those ids did not succeed. A batch
  sending the same rows again after they were answered carries the same piece twice.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
from google import genai


@dataclass(frozen=True)
class Held:
    """One batch at the provider: the piece it carries, whether that is the first round's, and
    the requests it answered (billed; None where the provider reports no counts)."""

    piece: tuple
    first_round: bool
    answered: int | None


def held(client: Any, first_keys: frozenset[str] = frozenset()) -> list[Held]:
    """Every batch `client`'s provider holds (the SDK pages through them all)."""
    if isinstance(client, anthropic.Anthropic):
        return _anthropic(client)
    if isinstance(client, genai.Client):
        return [Held((job.display_name,), job.display_name in first_keys, None) for job in client.batches.list()]
    assert isinstance(client, openai.OpenAI), type(client)
    return [Held((b.metadata["use_case"], b.metadata["partition"], b.metadata["shard"], b.metadata["attempt"]),
                 b.metadata["attempt"] == "1", b.request_counts.completed)
            for b in client.batches.list(limit=100)]


def pieces(client: Any, first_keys: frozenset[str] = frozenset()) -> Counter:
    """Batches per piece of work."""
    return Counter(h.piece for h in held(client, first_keys))


def _anthropic(client: anthropic.Anthropic) -> list[Held]:
    batches = sorted(ended(client), key=lambda b: (b.created_at, b.id))
    failed_before: dict[str, int] = defaultdict(int)  # per custom id: earlier batches it did not succeed in
    out = []
    for batch in batches:
        outcomes = {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}
        attempt = 1 + max((failed_before[i] for i in outcomes), default=0)
        out.append(Held((frozenset(outcomes), attempt), attempt == 1, batch.request_counts.succeeded))
        for custom_id, outcome in outcomes.items():
            failed_before[custom_id] += outcome != "succeeded"
    return out


def ended(client: anthropic.Anthropic, timeout: float = 180) -> list:
    """Every Message Batch, once all have ended (results exist only then)."""
    deadline = time.monotonic() + timeout
    while True:
        batches = list(client.messages.batches.list(limit=100))
        if all(b.processing_status == "ended" for b in batches):
            return batches
        assert time.monotonic() < deadline, [(b.id, b.processing_status) for b in batches]
        time.sleep(0.2)
