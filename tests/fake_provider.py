"""A minimal in-memory Batch API written for the contract suite: it holds no idempotency key
(like Anthropic's Message Batches, which keep no metadata), names a line's id `key`, and moves
each batch one status further every time it is looked at."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from batch_pipeline.provider.contract import (
    RESULT_ROWS,
    GeneratedImage,
    ProviderBatch,
    RequestCounts,
    shard_limits,
)
from batch_pipeline.spec import BatchSpec

_NEXT = {"validating": "in_progress", "in_progress": "finalizing", "cancelling": "cancelled"}


@dataclass(frozen=True)
class FakeEncoding:
    model: str
    max_requests: int
    max_bytes: int
    tokens_per_message: int = 1
    tokens_per_reply: int = 0

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]

    @property
    def signature(self) -> bytes:
        return b'"model":' + json.dumps(self.model).encode()

    def line(self, custom_id: str, texts: Mapping[str, str]) -> dict[str, Any]:
        return {"key": custom_id, "model": self.model, "texts": dict(texts)}


@dataclass
class FakeClient:
    """The fake's "SDK": the batches it holds."""

    batches: dict[str, dict] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class FakeProvider:
    client_state: FakeClient
    fail_every: int = 0  # every n-th request fails (0: none)
    expire: bool = False
    name: str = "fake"
    deployments: Mapping[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        return "fake"

    def describe(self) -> str:
        return "an in-memory fake"

    def encoding(self, spec: BatchSpec) -> FakeEncoding:
        return FakeEncoding(spec.model, *shard_limits(spec, 1000, 1 << 20))

    def at(self, origin: str, api_key: str) -> FakeProvider:
        return self

    def connect(self, http_client: Any = None, **options: Any) -> FakeBatchAPI:
        return FakeBatchAPI(self)


@dataclass
class FakeBatchAPI:
    provider: FakeProvider
    calls: int = 0
    holds_keys: bool = False

    @property
    def client(self) -> FakeClient:
        return self.provider.client_state

    def _batch(self, batch_id: str, advance: bool = True) -> ProviderBatch:
        held = self.client.batches[batch_id]
        if advance and held["status"] == "finalizing":
            held["status"] = "expired" if self.provider.expire else "completed"
        elif advance:
            held["status"] = _NEXT.get(held["status"], held["status"])
        n = len(held["lines"])
        files = {"output": held["output"]} if held["status"] == "completed" else {}
        return ProviderBatch(batch_id, held["status"], held["created_at"], RequestCounts(n, n, 0), files=files)

    def submit(self, data: bytes, encoding: Any, key: str, tags: Mapping[str, str], earlier_attempt: bool,
               log: Callable[[str], None]) -> ProviderBatch:
        self.calls += 1
        batch_id = f"fake_{hashlib.sha256(data + str(len(self.client.batches)).encode()).hexdigest()[:12]}"
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        self.client.batches[batch_id] = {"status": "validating", "created_at": time.time(), "lines": lines,
                                         "output": f"{batch_id}-out"}
        self.client.files.add(f"{batch_id}-out")
        return self._batch(batch_id, advance=False)

    def find(self, keys: set[str], since: float) -> dict[str, ProviderBatch]:
        raise NotImplementedError("the fake holds no keys")

    def created_since(self, since: float) -> list[ProviderBatch]:
        return [self._batch(b, advance=False) for b, held in self.client.batches.items() if held["created_at"] >= since]

    def enqueued_tokens(self, model: str) -> int:
        return 0

    def batches(self, batch_ids: set[str], since: float) -> dict[str, ProviderBatch]:
        self.calls += 1
        return {b: self._batch(b) for b in batch_ids if b in self.client.batches}

    def retrieve(self, batch_id: str) -> ProviderBatch:
        self.calls += 1
        return self._batch(batch_id)

    def result_kinds(self, batch: ProviderBatch) -> Sequence[str]:
        return list(batch.files)

    def download(self, batch: ProviderBatch, kind: str) -> bytes:
        held = self.client.batches[batch.id]
        lines = enumerate(held["lines"])
        return b"".join(json.dumps({"key": line["key"], "n": i}).encode() + b"\n" for i, line in lines)

    def parse_results(self, files: Sequence[bytes | Path]) -> pa.Table:
        rows = []
        for data in files:
            for raw in (data if isinstance(data, bytes) else data.read_bytes()).splitlines():
                line = json.loads(raw)
                failed = bool(self.provider.fail_every) and line["n"] % self.provider.fail_every == 0
                rows.append({"custom_id": line["key"], "status": "failed" if failed else "succeeded",
                             "output": None if failed else f"answer {line['key']}", "input_tokens": 3,
                             "output_tokens": None if failed else 2, "error_code": "server_error" if failed else None,
                             "error_message": "the fake failed it" if failed else None})
        return pa.Table.from_pylist(rows, schema=RESULT_ROWS)

    def images(self, files: Sequence[bytes | Path]) -> Iterator[GeneratedImage]:
        return iter(())  # the fake answers text only

    def cancel(self, batch_id: str) -> ProviderBatch:
        held = self.client.batches[batch_id]
        if held["status"] in ("validating", "in_progress", "finalizing"):
            held["status"] = "cancelling"
        return self._batch(batch_id, advance=False)

    def delete_file(self, file_id: str) -> bool:
        if file_id not in self.client.files:
            return False
        self.client.files.discard(file_id)
        return True


def fake(fail_every: int = 0, expire: bool = False) -> FakeProvider:
    return dataclasses.replace(FakeProvider(FakeClient()), fail_every=fail_every, expire=expire)
