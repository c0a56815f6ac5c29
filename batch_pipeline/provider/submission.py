"""Request shards to provider batches, never paying twice for the same shard.

Each shard's idempotency key is derived from the use case, the partition, the shard's content and
the attempt, so it is the same on every rerun of the same work. The partition's two-phase intent
log (`state/intent.py`) says which keys were about to be sent and the batch each create returned:
a recorded batch is reused; an intent with no batch id is looked up at the provider by key
where it holds one, and where it holds none the partition is blocked with the candidates named
(`SubmissionBlocked`) unless no batch was created since the intent at all.

A shard that would push the model's enqueued tokens over the configured limit is not sent: it is
returned as `Queued`, and the batch monitor asks for it to be submitted once capacity frees,
instead of letting the provider fail the batch with `token_limit_exceeded`. A shard the provider
refuses at create for its quota (Azure's fail-fast 400) is queued the same way, after a backoff,
and so are the run's shards after it: the provider just said its queue is full.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from batch_pipeline.failpoints import failpoint
from batch_pipeline.provider.contract import (
    PIPELINE,
    BatchAPI,
    ProviderBatch,
    ProviderSettingError,
    QuotaRefused,
    RequestEncoding,
    SubmissionBlocked,
)
from batch_pipeline.state.admission import TOKEN_LIMIT, Queue, Reuse, Send, admit_shard
from batch_pipeline.state.intent import Intent, IntentLog
from batch_pipeline.state.partition_state import Queued, Submission

_METADATA_VALUE_CHARS = 512
QUOTA_BACKOFF_SECONDS = 300.0  # before a shard the provider refused for its quota is offered again


@dataclass(frozen=True)
class Shard:
    """One request file of a partition; `path` is relative to the warehouse root."""

    index: int
    path: str
    data: bytes
    attempt: int = 1
    estimated_tokens: int = 0
    parent_batch_ids: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def requests(self) -> int:
        return self.data.count(b"\n")


def idempotency_key(use_case: str, partition: str, shard: Shard, deployment: str = "") -> str:
    """Same work, same key: on every rerun, retry and machine of one deployment.

    The deployment name keeps staging and production apart when they share one OpenAI project;
    the default deployment ("") keeps the keys of batches created before names existed.
    """
    scope = f"{PIPELINE}|{deployment}" if deployment else PIPELINE
    material = f"{scope}|{use_case}|{partition}|{shard.index}|{shard.sha256}|{shard.attempt}"
    return hashlib.sha256(material.encode()).hexdigest()[:40]


def batch_metadata(use_case: str, partition: str, model: str, shard: Shard, deployment: str = "") -> dict[str, str]:
    """The batch's metadata; with it alone the provider can tell what was submitted."""
    metadata = {
        "pipeline": PIPELINE,
        **({"deployment": deployment} if deployment else {}),
        "use_case": use_case,
        "partition": partition,
        "shard": str(shard.index),
        "attempt": str(shard.attempt),
        "idempotency_key": idempotency_key(use_case, partition, shard, deployment),
        "model": model,
        "estimated_tokens": str(shard.estimated_tokens),
    }
    if shard.parent_batch_ids:
        parents = ",".join(shard.parent_batch_ids)
        metadata["parent_batch_ids"] = parents[:_METADATA_VALUE_CHARS].rsplit(",", 1)[0] if len(
            parents) > _METADATA_VALUE_CHARS else parents
    return metadata


@dataclass(frozen=True)
class Sending:
    """Where and how a run sends shards, first rounds and retry rounds alike."""

    api: BatchAPI
    token_limit: int | None = None  # the model's enqueued-token limit, if the organisation set one
    deployment: str = ""  # keeps staging's and production's idempotency keys apart
    log: Callable[[str], None] = print
    quota_backoff_seconds: float = QUOTA_BACKOFF_SECONDS  # after the provider refused a batch for its quota
    # the connection to a provider other than `api`, by settings fingerprint (None: not configured)
    elsewhere: Callable[[str], BatchAPI | None] = lambda fingerprint: None

    def api_for(self, sub: Submission) -> BatchAPI:
        """The provider that holds `sub`'s batch: the one it was sent to, whichever is configured now."""
        fingerprint = sub.provider_fingerprint
        if not fingerprint or fingerprint == self.api.provider.fingerprint():
            return self.api
        api = self.elsewhere(fingerprint)
        if api is None:
            raise ProviderSettingError(
                f"batch {sub.batch_id} was sent to {sub.provider or 'another provider'} (settings {fingerprint}), "
                f"which is not configured now ({self.api.provider.describe()} is); configure it again to "
                "watch and harvest its batches")
        return api


@dataclass(frozen=True)
class Submitted:
    """What `submit_shards` did: one submission per shard sent or reused, and the shards held back."""

    submissions: list[Submission]
    queued: list[Queued]


def submit_shards(
    sending: Sending, intents: IntentLog, *, use_case: str, partition: str, encoding: RequestEncoding,
    model: str, shards: list[Shard],
) -> Submitted:
    """Make sure each shard has exactly one batch; create only the missing ones that fit.

    `encoding` is how the provider wants the lines; `model` the spec's model, recorded in the
    tags. Call it holding the partition's lease (`state/lease.py`): the lookup, the intents, the
    upload and the create then run with no other run of the partition in between.
    """
    api, token_limit, log = sending.api, sending.token_limit, sending.log
    metadata = {s.index: batch_metadata(use_case, partition, model, s, sending.deployment) for s in shards}
    wanted = {m["idempotency_key"] for m in metadata.values()}
    earlier = intents.recorded(wanted)
    found = _existing(api, intents, earlier, f"{use_case} {partition}")
    intents.record(wanted - found.keys())
    enqueued = api.enqueued_tokens(model) if token_limit is not None and wanted - found.keys() else 0
    done = Submitted([], [])
    refused_at: float | None = None  # when the provider refused a batch of this run for its quota
    for shard in shards:
        meta = metadata[shard.index]
        key = meta.pop("idempotency_key")
        batch = found.get(key)
        move = admit_shard(batch is not None, shard.estimated_tokens, enqueued, token_limit, refused_at,
                           time.time(), sending.quota_backoff_seconds)
        if isinstance(move, Send):
            try:
                batch = _create(sending, intents, encoding, shard, key, meta, key in earlier)
                enqueued += shard.estimated_tokens
            except QuotaRefused:
                refused_at = time.time()
                move = admit_shard(False, shard.estimated_tokens, enqueued, token_limit, refused_at, refused_at,
                                   sending.quota_backoff_seconds)
        if isinstance(move, Queue):
            log(f"shard {shard.index}: queued; " + (
                f"{shard.estimated_tokens:,} tokens would exceed the {token_limit:,} enqueued-token limit of "
                f"{model} ({enqueued:,} in flight)" if move.reason == TOKEN_LIMIT else
                f"the provider's enqueued-token quota for {model} is full (token_limit_exceeded); offered again "
                f"in {sending.quota_backoff_seconds:.0f} s"))
            done.queued.append(_queued(shard, move.not_before, move.reason))
            continue
        assert batch is not None  # reused, or created just now
        if isinstance(move, Reuse):
            log(f"shard {shard.index}: batch {batch.id} already submitted ({batch.status}); reused")
        done.submissions.append(_submission(shard, key, batch, isinstance(move, Reuse), api))
    return done


def _existing(api: BatchAPI, intents: IntentLog, earlier: dict[str, Intent], where: str) -> dict[str, ProviderBatch]:
    """The batches of keys with an intent: from the log's batch ids first; for an intent with no
    id (or an id the provider no longer knows), by key at the provider, or, where it holds no
    key, blocked when any batch the log does not record was created since the intent
    (`SubmissionBlocked`)."""
    ids = {key: i.batch_id for key, i in earlier.items() if i.batch_id}
    states = api.batches(set(ids.values()), since=min(i.at for i in earlier.values())) if ids else {}
    found = {key: states[batch_id] for key, batch_id in ids.items() if batch_id in states}
    open_keys = set(earlier) - found.keys()
    if not open_keys:
        return found
    since = min(earlier[k].at for k in open_keys)
    if api.holds_keys:
        by_key = api.find(open_keys, since)
        intents.resolve({key: batch.id for key, batch in by_key.items()})
        return found | by_key
    # A batch the log records for another key (a sibling shard, an operator's resolve) is that
    # key's, not a candidate: counting it would block the partition again after every resolve.
    recorded = intents.batch_ids()
    candidates = [b for b in api.created_since(since) if b.id not in recorded]
    if candidates:
        raise SubmissionBlocked(_blocked(where, {k: earlier[k] for k in open_keys}, candidates, api))
    return found


def _blocked(where: str, open_intents: dict[str, Intent], candidates: list[ProviderBatch], api: BatchAPI) -> str:
    def when(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

    intents = ", ".join(f"{key} (intent {when(i.at)})" for key, i in sorted(open_intents.items()))
    named = ", ".join(f"{b.id} (created {when(b.created_at)}, {b.status})" for b in candidates[:20])
    more = f" and {len(candidates) - 20} more" if len(candidates) > 20 else ""
    return (
        f"{where}: blocked: a submission was interrupted between its paid create and recording the batch id, "
        f"and {api.provider.name} holds no key to find the batch by. Intents with no batch id: {intents}. "
        f"Batches created at the provider since: {named}{more}. Sending again could pay twice, so nothing was "
        "sent. If one of them is the shard's batch, record it with `batch-pipeline intents resolve`; if none is, "
        "release the intent with `batch-pipeline intents release`; then materialize the batches again "
        "(docs/provider-port.md, 'A blocked partition')"
    )


def _queued(shard: Shard, not_before: float, reason: str) -> Queued:
    return Queued(shard.index, shard.attempt, shard.path, shard.requests, shard.estimated_tokens, not_before,
                  reason, list(shard.parent_batch_ids))


def _create(sending: Sending, intents: IntentLog, encoding: RequestEncoding, shard: Shard, key: str,
            tags: dict[str, str], earlier_attempt: bool) -> ProviderBatch:
    """Upload (where the provider needs it) and create the shard's batch, then record its id."""
    _check_encoding(shard, encoding)
    batch = sending.api.submit(shard.data, encoding, key, tags, earlier_attempt,
                               lambda text: sending.log(f"shard {shard.index}: {text}"))
    failpoint("submission.created")
    intents.resolve({key: batch.id})
    sending.log(f"shard {shard.index} attempt {shard.attempt}: created batch {batch.id}")
    return batch


def _check_encoding(shard: Shard, encoding: RequestEncoding) -> None:
    """Refuse, before its upload, a shard written for another provider (the provider setting
    changed between building the requests and sending them): its lines would fail there."""
    first = shard.data[: shard.data.find(b"\n")]
    if encoding.signature not in first:
        raise ProviderSettingError(
            f"shard {shard.index} ({shard.path}) was written for another provider or model: its lines do not "
            f"hold {encoding.signature.decode(errors='replace')}; materialize the requests asset again; "
            "nothing was uploaded"
        )


def _submission(shard: Shard, key: str, batch: ProviderBatch, reused: bool, api: BatchAPI) -> Submission:
    return Submission(
        shard=shard.index,
        attempt=shard.attempt,
        path=shard.path,
        batch_id=batch.id,
        input_file_id=batch.files.get("input", ""),
        idempotency_key=key,
        status=batch.status,
        requests=shard.requests,
        estimated_tokens=shard.estimated_tokens,
        reused=reused,
        parent_batch_ids=list(shard.parent_batch_ids),
        provider=api.provider.name,
        provider_fingerprint=api.provider.fingerprint(),
    )
