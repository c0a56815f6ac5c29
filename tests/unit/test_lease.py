"""The partition lease: one holder at a time, in a local folder and on object storage."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from batch_pipeline.state.lease import PartitionBusy, partition_lease
from batch_pipeline.warehouse.storage import Warehouse


@pytest.fixture(params=["local", "object_store"])
def wh(request, tmp_path) -> Warehouse:
    # memory:// stands for an object store: no file locks, exclusive create ("xb") only
    return Warehouse(tmp_path / "wh" if request.param == "local" else f"memory://lease-{uuid.uuid4().hex}/wh")


def test_one_holder_at_a_time(wh):
    inside, overlaps = [], []

    def hold(name: str) -> None:
        with partition_lease(wh, "uc", "p", wait_seconds=30):
            if inside:
                overlaps.append(name)
            inside.append(name)
            time.sleep(0.05)
            inside.remove(name)

    threads = [threading.Thread(target=hold, args=(str(i),)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_a_held_partition_refuses_after_the_wait_with_a_clear_message(wh):
    with partition_lease(wh, "uc", "p", wait_seconds=30):
        failure: list[Exception] = []
        other = threading.Thread(target=lambda: _try(wh, failure))
        other.start()
        other.join()
    assert "uc p: already in flight" in str(failure[0])
    with partition_lease(wh, "uc", "p", wait_seconds=0):  # released: free again
        pass


def _try(wh: Warehouse, failure: list[Exception]) -> None:
    try:
        with partition_lease(wh, "uc", "p", wait_seconds=0.2):
            pass
    except PartitionBusy as exc:
        failure.append(exc)


def test_a_claim_left_by_a_dead_holder_is_taken_once_it_expires():
    wh = Warehouse(f"memory://lease-{uuid.uuid4().hex}/wh")
    dead = partition_lease(wh, "uc", "p", wait_seconds=0, ttl_seconds=0.5)
    dead.__enter__()  # a holder that dies: it never releases its claim
    with pytest.raises(PartitionBusy):
        with partition_lease(wh, "uc", "p", wait_seconds=0):
            pass
    with partition_lease(wh, "uc", "p", wait_seconds=10):  # waits out the expiry, then holds
        pass
