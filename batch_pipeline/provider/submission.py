"""Request shards to provider batches, never paying twice for the same shard.

Each shard's idempotency key is derived from the use case, the partition, the shard's content and
the attempt, so it is the same on every rerun of the same work. Before uploading, the provider's
batch metadata is swept for that key; a batch that exists is reused. An upload whose batch was
never created (a crash between the two calls) is found by its file name and reused.

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
from dataclasses import dataclass, field

from openai.types import Batch

from batch_pipeline.failpoints import failpoint
from batch_pipeline.provider.contract import LineForm, Provider, ProviderSettingError, QuotaRefused
from batch_pipeline.provider.gateway import PIPELINE, BatchGateway, Sweep
from batch_pipeline.provider.providers import OpenAIProvider
from batch_pipeline.state.intent import IntentLog
from batch_pipeline.state.machine import admits
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

    gateway: BatchGateway
    token_limit: int | None = None  # the model's enqueued-token limit, if the organisation set one
    deployment: str = ""  # keeps staging's and production's idempotency keys apart
    log: Callable[[str], None] = print
    provider: Provider = field(default_factory=OpenAIProvider)  # whose request lines the gateway sends
    quota_backoff_seconds: float = QUOTA_BACKOFF_SECONDS  # after the provider refused a batch for its quota


@dataclass(frozen=True)
class Submitted:
    """What `submit_shards` did: one submission per shard sent or reused, and the shards held back."""

    submissions: list[Submission]
    queued: list[Queued]


def submit_shards(
    sending: Sending, intents: IntentLog, *, use_case: str, partition: str, form: LineForm, model: str,
    shards: list[Shard],
) -> Submitted:
    """Make sure each shard has exactly one batch; create only the missing ones that fit.

    `form` is how the provider wants the lines (its `url` is the batch's endpoint); `model` the
    spec's model, recorded in the metadata. Call it holding the partition's lease
    (`state/lease.py`): the lookup, the intents, the upload and the create then run with no other
    run of the partition in between.
    """
    gateway, token_limit, log = sending.gateway, sending.token_limit, sending.log
    metadata = {s.index: batch_metadata(use_case, partition, model, s, sending.deployment) for s in shards}
    wanted = {m["idempotency_key"] for m in metadata.values()}
    earlier = intents.recorded(wanted)
    since = min(earlier.values(), default=None)
    sweep = gateway.sweep(wanted, since, model if token_limit is not None else None) if wanted else Sweep({}, 0)
    intents.record(wanted - sweep.found.keys())
    sender = _Sender(gateway, form, log, sweep.enqueued_tokens, maybe_uploaded=set(earlier))
    done = Submitted([], [])
    refused_at: float | None = None  # when the provider refused a batch of this run for its quota
    for shard in shards:
        meta = metadata[shard.index]
        batch = sweep.found.get(meta["idempotency_key"])
        reused = batch is not None
        if batch is not None:
            log(f"shard {shard.index}: batch {batch.id} already submitted ({batch.status}); reused")
        elif not admits(shard.estimated_tokens, sender.enqueued, token_limit):
            log(f"shard {shard.index}: queued; {shard.estimated_tokens:,} tokens would exceed the "
                f"{token_limit:,} enqueued-token limit of {model} ({sender.enqueued:,} in flight)")
            done.queued.append(_queued(shard, time.time(), "enqueued_token_limit"))
            continue
        elif refused_at is None:
            try:
                batch = sender.create(shard, meta)
            except QuotaRefused:
                refused_at = time.time()
        if batch is None:  # refused, now or (quota full) for an earlier shard of this run
            not_before = (refused_at or time.time()) + sending.quota_backoff_seconds
            log(f"shard {shard.index}: queued; the provider's enqueued-token quota for {model} is full "
                f"(token_limit_exceeded); offered again in {sending.quota_backoff_seconds:.0f} s")
            done.queued.append(_queued(shard, not_before, "provider_quota"))
            continue
        done.submissions.append(_submission(shard, meta["idempotency_key"], batch, reused))
    return done


def _queued(shard: Shard, not_before: float, reason: str) -> Queued:
    return Queued(shard.index, shard.attempt, shard.path, shard.requests, shard.estimated_tokens, not_before,
                  reason, list(shard.parent_batch_ids))


@dataclass
class _Sender:
    """Uploads and creates batches; the upload listing is read once, only if a shard may have
    been uploaded by an earlier attempt that died before creating its batch."""

    gateway: BatchGateway
    form: LineForm
    log: Callable[[str], None]
    enqueued: int
    maybe_uploaded: set[str]  # keys with an earlier intent: an upload of theirs may be orphaned
    uploads: dict[str, str] | None = None

    def create(self, shard: Shard, meta: dict[str, str]) -> Batch:
        _check_form(shard, self.form)
        key = meta["idempotency_key"]
        filename = f"{key}.jsonl"
        if self.uploads is None and key in self.maybe_uploaded:
            self.uploads = self.gateway.input_files()
        file_id = (self.uploads or {}).get(filename)
        if file_id is None:
            file_id = self.gateway.upload(filename, shard.data)
            self.log(f"shard {shard.index}: uploaded {shard.requests} requests as {file_id}")
            failpoint("submission.uploaded")
        else:
            self.log(f"shard {shard.index}: reusing upload {file_id} left by an earlier attempt")
        batch = self.gateway.create_batch(input_file_id=file_id, endpoint=self.form.url, metadata=meta)
        failpoint("submission.created")
        self.enqueued += shard.estimated_tokens
        self.log(f"shard {shard.index} attempt {shard.attempt}: created batch {batch.id}")
        return batch


def _check_form(shard: Shard, form: LineForm) -> None:
    """Refuse, before its upload, a shard written for another provider (the provider setting
    changed between building the requests and sending them): its lines would fail there."""
    first = shard.data[: shard.data.find(b"\n")]
    if form.prefix() not in first:
        raise ProviderSettingError(
            f"shard {shard.index} ({shard.path}) was written for another provider: its lines do not name "
            f"url '{form.url}' and model '{form.model}'; materialize the requests asset again; nothing was uploaded"
        )


def _submission(shard: Shard, key: str, batch: Batch, reused: bool) -> Submission:
    return Submission(
        shard=shard.index,
        attempt=shard.attempt,
        path=shard.path,
        batch_id=batch.id,
        input_file_id=batch.input_file_id,
        idempotency_key=key,
        status=batch.status,
        requests=shard.requests,
        estimated_tokens=shard.estimated_tokens,
        reused=reused,
        parent_batch_ids=list(shard.parent_batch_ids),
    )
