"""A lease on one partition of one use case, held while a run builds, submits or harvests it.

Two runs of one partition can overlap (a schedule tick and a backfill, a range run and a
single-partition run, a run retry beside a hung first attempt, the CLI bypassing the run
queue); Dagster's queue limits and pools reduce that but cannot guarantee it (docs/decisions.md,
"The partition lease"). So the guarantee is held here, in the warehouse, the one store every run
of a deployment must share anyway:

- a local warehouse: an OS file lock (`filelock`, flock on Linux) on
  `<partition's requests folder>/.lease`. The kernel grants it to one process at a time and
  releases it when the holder exits, even by SIGKILL, so a crash never blocks the partition.
- an object store: a claim object created with an exclusive create (S3 `If-None-Match: *`,
  fsspec mode "xb"), carrying its owner and an expiry. Claims are numbered; a newcomer may only
  create the next number, and exclusive create lets exactly one contender win it. A claim whose
  holder died blocks the partition until it expires.

Why it cannot race: between taking the lease and releasing it, no other run of the partition
runs its lookup, upload or create; and every holder looks at the provider again after taking
the lease (submission reads the intent log and looks its keys up first), so work that another holder
finished just before is reused, not repeated.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout
from upath import UPath

from batch_pipeline.errors import PartitionBusy
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse

CLAIM_TTL_SECONDS = 3600.0  # an object-store claim left by a dead holder blocks this long
_POLL_SECONDS = 0.5


@contextmanager
def partition_lease(
    wh: Warehouse, use_case: str, partition: str, wait_seconds: float, ttl_seconds: float = CLAIM_TTL_SECONDS
) -> Iterator[None]:
    """Hold the partition while the block runs; wait up to `wait_seconds` for another holder."""
    folder = wh.partition_dir(use_case, layout.REQUESTS, partition)
    local = wh.local_path(folder)
    if local is not None:
        local.mkdir(parents=True, exist_ok=True)
        lock = FileLock(local / layout.LEASE_FILE, timeout=wait_seconds)
        try:
            lock.acquire(poll_interval=_POLL_SECONDS)
        except Timeout:
            raise PartitionBusy(_busy(use_case, partition, wait_seconds)) from None
        try:
            yield
        finally:
            lock.release()
        return
    busy = _busy(use_case, partition, wait_seconds)
    claim = _take_claim(folder / layout.CLAIMS_FOLDER, wait_seconds, ttl_seconds, busy)
    try:
        yield
    finally:
        claim.unlink(missing_ok=True)


def lease_held(wh: Warehouse, use_case: str, partition: str) -> bool:
    """Whether a run holds the partition right now (a glance: taken and let go at once when free).

    A dead holder never counts on a local warehouse (the kernel dropped its lock); on an object
    store its claim counts until it expires, as it does for runs."""
    folder = wh.partition_dir(use_case, layout.REQUESTS, partition)
    local = wh.local_path(folder)
    if local is None:
        newest, _ = _newest_claim(folder / layout.CLAIMS_FOLDER) if (folder / layout.CLAIMS_FOLDER).exists() \
            else (None, 0)
        return newest is not None and not _expired(newest)
    if not (local / layout.LEASE_FILE).exists():
        return False
    lock = FileLock(local / layout.LEASE_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def _busy(use_case: str, partition: str, wait_seconds: float) -> str:
    return (
        f"{use_case} {partition}: already in flight: another run has held this partition for "
        f"{wait_seconds:.0f} s; nothing was uploaded by this run. Its batches are reused when it ends; "
        "rerun this partition then if it is still needed"
    )


def _take_claim(folder: UPath, wait_seconds: float, ttl_seconds: float, busy: str) -> UPath:
    """Create the next numbered claim exclusively once the newest one is released or expired."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_seconds
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        newest, number = _newest_claim(folder)
        if newest is None or _expired(newest):
            path = folder / f"claim-{number + 1:012d}.json"
            try:
                with path.open("xb") as f:
                    f.write(json.dumps({"owner": owner, "expires_at": time.time() + ttl_seconds}).encode())
                return path
            except FileExistsError:
                pass  # another contender won this number; look again
        if time.monotonic() >= deadline:
            raise PartitionBusy(busy)
        time.sleep(_POLL_SECONDS)


def _newest_claim(folder: UPath) -> tuple[UPath | None, int]:
    """The highest-numbered claim (a released claim is deleted; an expired one stays)."""
    claims = sorted(folder.glob("claim-*.json"))
    if not claims:
        return None, 0
    newest = claims[-1]
    return newest, int(newest.stem.removeprefix("claim-"))


def _expired(claim: UPath) -> bool:
    try:
        return json.loads(claim.read_bytes())["expires_at"] < time.time()
    except FileNotFoundError:
        return True
