"""Google Gemini's Batch Mode (the Gemini Developer API), on the official `google-genai` client:
an adapter of the provider port (`contract.py`).

A shard is uploaded through the Files API as JSONL lines `{"key", "request"}` and a batch job is
created from that file, so results come back keyed (never joined by position) in a responses
file, whatever the batch's size. The job's display name is our idempotency key: the one label
Gemini keeps and lists, so a batch is found by its key after a crash. The client retries
rate limits and server errors on every call but the create: a retried create would be a second,
billed job, so after a failed create the job is looked up by its key before trying again. A job
as the SDK reads it names no input file, so a shard's file is uploaded under a name made from its
key and the job names it (cleanup deletes the files a batch names).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pyarrow as pa
from google import genai
from google.genai import errors, types

from batch_pipeline.failpoints import failpoint
from batch_pipeline.provider.contract import (
    GeneratedImage,
    ProviderBatch,
    ProviderSettingError,
    ProviderUnavailable,
    RequestEncoding,
    shard_limits,
)
from batch_pipeline.provider.gemini_results import parse_results
from batch_pipeline.provider.listing import CLOCK_SLACK_SECONDS
from batch_pipeline.provider.openai_api import public_url
from batch_pipeline.spec import BatchSpec
from batch_pipeline.state.backoff import backoff_seconds

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
MAX_REQUESTS = 50_000  # per job: no documented cap; kept at OpenAI's so a shard fits every provider
MAX_BYTES = 2 * 1024**3  # an input file
LIST_PAGE_SIZE = 100
CHAT_ENDPOINTS = ("/v1/chat/completions", "/v1/responses")
EMBEDDINGS = "/v1/embeddings"
RETRIED_STATUSES = (408, 429, 500, 502, 503, 504)  # the SDK's own list when retries are on
CREATE_ATTEMPTS = 4
KEY_SHAPE = re.compile(r"[0-9a-f]{40}")  # our idempotency keys (`submission.idempotency_key`)
PARAMETERS = {"max_tokens": "maxOutputTokens", "max_completion_tokens": "maxOutputTokens",
              "max_output_tokens": "maxOutputTokens", "temperature": "temperature", "top_p": "topP",
              "top_k": "topK", "stop": "stopSequences"}
# The SDK's job states (`JOB_STATE_*`) in the pipeline's vocabulary.
STATES = {"JOB_STATE_QUEUED": "validating", "JOB_STATE_PENDING": "validating", "JOB_STATE_RUNNING": "in_progress",
          "JOB_STATE_UPDATING": "in_progress", "JOB_STATE_PAUSED": "in_progress",
          "JOB_STATE_CANCELLING": "cancelling", "JOB_STATE_SUCCEEDED": "completed",
          "JOB_STATE_PARTIALLY_SUCCEEDED": "completed", "JOB_STATE_FAILED": "failed",
          "JOB_STATE_CANCELLED": "cancelled", "JOB_STATE_EXPIRED": "expired"}


@dataclass(frozen=True)
class GeminiEncoding:
    """Request lines as a Batch Mode input file holds them: `{"key", "request"}`, the request a
    GenerateContentRequest (one user turn, the system instruction, the generation config), or
    for embeddings an EmbedContentRequest (the text, `outputDimensionality` from `config`)."""

    model: str
    max_requests: int
    max_bytes: int
    config: Mapping[str, Any]
    embed: bool = False
    tokens_per_reply: int = 0

    @property
    def tokens_per_message(self) -> int:
        return 0 if self.embed else 1

    @property
    def signature(self) -> bytes:
        return b'"request":{"content":' if self.embed else b'"request":{"contents":'

    def line(self, custom_id: str, texts: Mapping[str, str]) -> dict[str, Any]:
        if self.embed:
            return {"key": custom_id, "request": {"content": {"parts": [{"text": texts["user"]}]}, **self.config}}
        request: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": texts["user"]}]}]}
        if "system" in texts:
            request["systemInstruction"] = {"parts": [{"text": texts["system"]}]}
        return {"key": custom_id, "request": {**request, "generationConfig": dict(self.config)}}

    def count_tokens(self, texts: list[str]) -> list[int]:
        """An offline approximation (Gemini's tokenizer does not ship): about 4 characters a token;
        the estimate's learned correction from harvested partitions absorbs the difference."""
        return [-(-len(text) // 4) for text in texts]


def generation_config(spec: BatchSpec) -> dict[str, Any]:
    """The spec's parameters as Gemini names them, and a response model as JSON output with its
    JSON schema (`responseJsonSchema`)."""
    unknown = sorted(set(spec.parameters) - PARAMETERS.keys())
    if unknown:
        raise ProviderSettingError(f"spec '{spec.name}': gemini takes no parameter {unknown} "
                                   f"(it takes {sorted(PARAMETERS)})")
    config = {PARAMETERS[name]: ([value] if name == "stop" and isinstance(value, str) else value)
              for name, value in spec.parameters.items()}
    if spec.response_model is not None:
        config |= {"responseMimeType": "application/json",
                   "responseJsonSchema": spec.response_model.model_json_schema()}
    return config


def embedding_config(spec: BatchSpec) -> dict[str, Any]:
    """An embeddings spec's parameters as an EmbedContentRequest names them."""
    unknown = sorted(set(spec.parameters) - {"dimensions"})
    if unknown:
        raise ProviderSettingError(f"spec '{spec.name}': gemini embeddings take no parameter {unknown} "
                                   "(they take ['dimensions'])")
    return {"outputDimensionality": spec.parameters["dimensions"]} if "dimensions" in spec.parameters else {}


@dataclass(frozen=True)
class GeminiProvider:
    """Gemini's Batch Mode; an unset key is read by the client from GEMINI_API_KEY or GOOGLE_API_KEY."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    name: str = field(default="gemini", init=False)
    deployments: Mapping[str, str] = field(default_factory=dict, init=False)

    def client(self, http_client: Any = None, timeout: float | None = None, max_retries: int = 2,
               **_: Any) -> genai.Client:
        """The client retries 408/429/5xx and dropped connections `max_retries` times (it retries
        nothing unless told); the create call opts out (`GeminiBatchAPI._create`)."""
        retries = types.HttpRetryOptions(attempts=max_retries + 1, http_status_codes=list(RETRIED_STATUSES))
        options = types.HttpOptions(base_url=self.base_url, httpx_client=http_client,
                                    timeout=int(timeout * 1000) if timeout else None, retry_options=retries)
        return genai.Client(api_key=self.api_key, http_options=options)

    def connect(self, http_client: Any = None, **options: Any) -> GeminiBatchAPI:
        return GeminiBatchAPI(self, self.client(http_client, **options))

    def at(self, origin: str, api_key: str) -> GeminiProvider:
        return dataclasses.replace(self, base_url=origin.rstrip("/"), api_key=api_key)

    def encoding(self, spec: BatchSpec) -> RequestEncoding:
        if spec.endpoint not in (*CHAT_ENDPOINTS, EMBEDDINGS):
            raise ProviderSettingError(f"use case '{spec.name}': gemini has no batch endpoint for {spec.endpoint} "
                                       "(it batches generateContent and embedContent requests)")
        requests, size = shard_limits(spec, MAX_REQUESTS, MAX_BYTES)
        if spec.endpoint == EMBEDDINGS:
            return GeminiEncoding(spec.model_for(self.name), requests, size, embedding_config(spec), embed=True)
        return GeminiEncoding(spec.model_for(self.name), requests, size, generation_config(spec))

    def describe(self) -> str:
        return f"Gemini {public_url(self.base_url or DEFAULT_BASE_URL)}"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.name}|{self.describe()}".encode()).hexdigest()[:16]


def input_file(key: str) -> str:
    """The input file of the job whose display name is `key`: uploaded under that name (a file
    id is up to 40 lowercase letters, digits and dashes; a key is 40 hex digits), because a job
    as the SDK reads it from the Developer API names no source, and cleanup deletes the files a
    batch names."""
    return f"files/{key}"


def provider_batch(job: types.BatchJob) -> ProviderBatch:
    """A batch job in the pipeline's vocabulary; its display name is our key where we set it."""
    state = job.state.name if job.state is not None else "JOB_STATE_PENDING"
    source = job.src.file_name if job.src else None
    if source is None and job.display_name and KEY_SHAPE.fullmatch(job.display_name):
        source = input_file(job.display_name)
    files = {"input": source, "output": job.dest.file_name if job.dest else None}
    error = job.error
    return ProviderBatch(
        id=job.name or "", status=STATES.get(state, "in_progress"),
        created_at=job.create_time.timestamp() if job.create_time else 0.0,
        key=job.display_name, files={kind: name for kind, name in files.items() if name},
        error_code=str(error.code) if error and error.code else None, error_message=error.message if error else None,
    )


@dataclass
class GeminiBatchAPI:
    """The contract's operations on one `google-genai` client."""

    provider: GeminiProvider
    client: genai.Client
    calls: int = 0
    holds_keys: bool = field(default=True, init=False)

    def pages(self) -> Iterator[list[ProviderBatch]]:
        self.calls += 1
        pager = self.client.batches.list(config={"page_size": LIST_PAGE_SIZE})
        while True:
            yield [provider_batch(job) for job in pager.page]
            if not pager.config.get("page_token"):  # the pager keeps the next page's token there
                return
            self.calls += 1
            pager.next_page()

    def _scan(self, since: float, enough: Callable[[list[ProviderBatch]], bool]) -> list[ProviderBatch]:
        """Batches created after `since`, page by page until `enough` says so. Gemini documents no
        order for its list, so an older page proves nothing about the next: the scan reads on
        (a lookup that stopped early could pass for "not found" and pay twice). It only runs for
        an intent whose batch id was never recorded."""
        found: list[ProviderBatch] = []
        for page in self.pages():
            found += [b for b in page if b.created_at >= since - CLOCK_SLACK_SECONDS]
            if enough(found):
                break
        return found

    def find(self, keys: set[str], since: float) -> dict[str, ProviderBatch]:
        found: dict[str, ProviderBatch] = {}
        for batch in self._scan(since, lambda seen: {b.key for b in seen} >= keys):
            if batch.key in keys:
                found.setdefault(batch.key, batch)
        return found

    def created_since(self, since: float) -> list[ProviderBatch]:
        return self._scan(since, lambda seen: False)

    def enqueued_tokens(self, model: str) -> int:
        return 0  # jobs hold no tags to count ours by

    def batches(self, batch_ids: set[str], since: float) -> dict[str, ProviderBatch]:
        states: dict[str, ProviderBatch] = {}
        try:
            for batch_id in sorted(batch_ids):
                try:
                    states[batch_id] = self.retrieve(batch_id)
                except errors.ClientError as exc:
                    if exc.code != 404:
                        raise
        except errors.APIError as exc:  # its text may echo request details: only its type is kept
            raise ProviderUnavailable(f"reading batches failed: {type(exc).__name__} {exc.code}") from None
        return states

    def retrieve(self, batch_id: str) -> ProviderBatch:
        self.calls += 1
        return provider_batch(self.client.batches.get(name=batch_id))

    def submit(self, data: bytes, encoding: RequestEncoding, key: str, tags: Mapping[str, str],
               earlier_attempt: bool, log: Callable[[str], None]) -> ProviderBatch:
        assert isinstance(encoding, GeminiEncoding)  # made by this provider's `encoding`
        uploaded = self._upload(data, key, earlier_attempt, log)
        return self._create(encoding, uploaded, key)

    def _create(self, encoding: GeminiEncoding, uploaded: str, key: str) -> ProviderBatch:
        """Create the job exactly once: the SDK does not retry this call (a retried create is a
        second, billed job); after a refused or failed attempt the job is looked up by its key
        before trying again."""
        config = {"display_name": key, "http_options": {"retry_options": {"attempts": 1}}}
        started = time.time()  # a job this call created is newer
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                self.calls += 1
                if encoding.embed:
                    return provider_batch(self.client.batches.create_embeddings(
                        model=encoding.model, src={"file_name": uploaded}, config=config))  # type: ignore[arg-type]
                return provider_batch(self.client.batches.create(
                    model=encoding.model, src=uploaded, config=config))  # type: ignore[arg-type]
            except (errors.APIError, httpx2.TransportError) as exc:
                if isinstance(exc, errors.APIError) and exc.code not in RETRIED_STATUSES:
                    raise
                existing = self.find({key}, since=started).get(key)
                if existing is not None:
                    return existing
                if attempt == CREATE_ATTEMPTS:
                    raise
                time.sleep(backoff_seconds(2.0, attempt, cap=30.0))
        raise AssertionError("unreachable")

    def _upload(self, data: bytes, key: str, earlier_attempt: bool, log: Callable[[str], None]) -> str:
        """The shard's input file, named after its key; reused when an attempt that died before
        its create left it."""
        name = input_file(key)
        if earlier_attempt:
            try:
                self.calls += 1
                self.client.files.get(name=name)
                log(f"reusing upload {name} left by an earlier attempt")
                return name
            except errors.ClientError as exc:
                if exc.code != 404:
                    raise
        self.calls += 1
        try:
            file = self.client.files.upload(file=io.BytesIO(data), config={
                "name": name, "display_name": f"{key}.jsonl", "mime_type": "application/jsonl"})
        except errors.ClientError as exc:
            if exc.code != 409:
                raise
            log(f"reusing upload {name}, already at the provider (the name holds the key, so the same requests)")
            return name
        requests = data.count(b"\n")
        log(f"uploaded {requests} requests as {file.name}")
        failpoint("submission.uploaded")
        return file.name or name

    def result_kinds(self, batch: ProviderBatch) -> Sequence[str]:
        return ["output"] if batch.files.get("output") else []

    def download(self, batch: ProviderBatch, kind: str) -> bytes:
        self.calls += 1
        return self.client.files.download(file=batch.files[kind]) or b""

    def parse_results(self, files: Sequence[bytes | Path]) -> pa.Table:
        return parse_results(files)

    def images(self, files: Sequence[bytes | Path]) -> Iterator[GeneratedImage]:
        return iter(())  # no image endpoint here: `encoding` refuses one before anything is built

    def cancel(self, batch_id: str) -> ProviderBatch:
        self.calls += 1
        self.client.batches.cancel(name=batch_id)
        return self.retrieve(batch_id)

    def delete_file(self, file_id: str) -> bool:
        self.calls += 1
        try:
            self.client.files.delete(name=file_id)
        except errors.APIError as exc:
            if exc.code == 404:
                return False
            raise ProviderUnavailable(f"{type(exc).__name__}, HTTP {exc.code}") from None
        return True
