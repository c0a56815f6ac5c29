"""Request shards to provider batches, never paying twice for the same shard.

Each shard's idempotency key is derived from the use case, the partition, the shard's content and
the attempt, so it is the same on every rerun of the same work. Before uploading, the provider's
batch metadata is swept for that key; a batch that exists is reused. An upload whose batch was
never created (a crash between the two calls) is found by its file name and reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

from batch_pipeline.gateway import PIPELINE, BatchGateway


@dataclass(frozen=True)
class Shard:
    """One request file of a partition, as written to the warehouse."""

    index: int
    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def requests(self) -> int:
        return self.data.count(b"\n")


@dataclass(frozen=True)
class Submission:
    """A shard's batch at the provider, as recorded in the batches asset's metadata."""

    shard: int
    batch_id: str
    input_file_id: str
    idempotency_key: str
    status: str
    requests: int
    reused: bool

    def record(self) -> dict:
        return asdict(self)


def idempotency_key(use_case: str, partition: str, shard: Shard, attempt: int) -> str:
    """Same work, same key: on every rerun, retry and machine."""
    material = f"{PIPELINE}|{use_case}|{partition}|{shard.index}|{shard.sha256}|{attempt}"
    return hashlib.sha256(material.encode()).hexdigest()[:40]


def batch_metadata(use_case: str, partition: str, shard: Shard, attempt: int) -> dict[str, str]:
    """The batch's metadata; with it alone the provider can tell what was submitted."""
    return {
        "pipeline": PIPELINE,
        "use_case": use_case,
        "partition": partition,
        "shard": str(shard.index),
        "attempt": str(attempt),
        "idempotency_key": idempotency_key(use_case, partition, shard, attempt),
    }


def submit_shards(
    gateway: BatchGateway,
    *,
    use_case: str,
    partition: str,
    endpoint: str,
    shards: list[Shard],
    attempt: int = 1,
    log: Callable[[str], None] = print,
) -> list[Submission]:
    """Make sure each shard has exactly one batch; create only the missing ones."""
    metadata = {s.index: batch_metadata(use_case, partition, s, attempt) for s in shards}
    wanted = {m["idempotency_key"] for m in metadata.values()}
    existing = gateway.find_batches(wanted) if wanted else {}
    submissions = []
    for shard in shards:
        meta = metadata[shard.index]
        key = meta["idempotency_key"]
        batch = existing.get(key)
        reused = batch is not None
        if batch is None:
            filename = f"{key}.jsonl"
            file_id = gateway.find_input_file(filename)
            if file_id is None:
                file_id = gateway.upload(filename, shard.data)
                log(f"shard {shard.index}: uploaded {shard.requests} requests as {file_id}")
            else:
                log(f"shard {shard.index}: reusing upload {file_id} left by an earlier attempt")
            batch = gateway.create_batch(input_file_id=file_id, endpoint=endpoint, metadata=meta)
            log(f"shard {shard.index}: created batch {batch.id}")
        else:
            log(f"shard {shard.index}: batch {batch.id} already submitted ({batch.status}); reused")
        submissions.append(
            Submission(
                shard=shard.index,
                batch_id=batch.id,
                input_file_id=batch.input_file_id,
                idempotency_key=key,
                status=batch.status,
                requests=shard.requests,
                reused=reused,
            )
        )
    return submissions
