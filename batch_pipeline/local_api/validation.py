"""Validation of a batch input file, the way OpenAI reports it: line by line, all at once.

The batch was already accepted at create time; problems found here move it from
``validating`` to ``failed`` with one ``errors.data`` entry per bad line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batch_pipeline.local_api.responders import embedding_inputs, prompt_tokens
from batch_pipeline.local_api.settings import LocalAPISettings

# A broken 50,000-line file would otherwise make a multi-megabyte Batch object.
MAX_REPORTED_ERRORS = 1000

_REQUIRED_BODY_FIELD = {
    "/v1/chat/completions": ("messages", "Messages parameter is required."),
    "/v1/responses": ("input", "Input parameter is required."),
    "/v1/embeddings": ("input", "Input parameter is required."),
    "/v1/completions": ("prompt", "Prompt parameter is required."),
}
_ENDPOINT_NAMES = {
    "/v1/chat/completions": "Chat Completions", "/v1/responses": "Responses",
    "/v1/embeddings": "Embeddings", "/v1/completions": "Completions",
}


@dataclass
class Validation:
    """What validating an input file found."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    model: str | None = None
    prompt_tokens: int = 0  # counted only when an enqueued-token limit applies

    def add(self, code: str, message: str, line: int | None = None, param: str | None = None) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"code": code, "line": line, "message": message, "param": param})


def batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "line": line, "message": message, "param": param}


def validate_input(path: Path, endpoint: str, settings: LocalAPISettings) -> Validation:
    """Check every line of the input file against the batch's endpoint and the limits."""
    result = Validation()
    size = path.stat().st_size
    if size > settings.max_batch_input_bytes:
        result.add("file_too_large", f"The batch input file is larger than the {settings.max_batch_input_bytes}"
                   " byte maximum. Please try again with a smaller file.")
        return result
    count_tokens = settings.enqueued_token_limit is not None or bool(settings.enqueued_token_limits)
    checker = _LineChecker(result, endpoint, count_tokens)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                checker.check(number, raw)
    if result.total == 0:
        result.add("empty_file", "The input file contains no requests.")
    if result.total > settings.max_requests_per_batch:
        result.add("too_many_tasks", f"The input file contains {result.total} requests; the maximum per batch is"
                   f" {settings.max_requests_per_batch}.")
    if checker.embedding_count > settings.max_embedding_inputs:
        result.add("too_many_embedding_inputs", f"The batch contains {checker.embedding_count} embedding inputs;"
                   f" the maximum is {settings.max_embedding_inputs}.", param="body.input")
    return result


class _LineChecker:
    """Checks one request line at a time, remembering what the file-wide checks need.

    Those are unique custom ids, one model per batch, and the embedding inputs and prompt
    tokens summed over the file.
    """

    def __init__(self, result: Validation, endpoint: str, count_tokens: bool) -> None:
        self.result = result
        self.endpoint = endpoint
        self.required = _REQUIRED_BODY_FIELD.get(endpoint)
        self.count_tokens = count_tokens
        self.seen: set[str] = set()
        self.models: set[str] = set()
        self.embedding_count = 0

    def check(self, number: int, raw: bytes) -> None:
        """Check the non-blank line ``number``: its envelope first, then its body."""
        result = self.result
        result.total += 1
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            line = None
        if not isinstance(line, dict):
            result.add("invalid_json_line", "This line is not parseable as valid JSON.", number)
            return
        if not ("custom_id" in line and "method" in line and "url" in line and "body" in line):
            for key in ("custom_id", "method", "url", "body"):
                if key not in line:
                    result.add("missing_required_parameter", f"Missing required parameter: '{key}'.", number, key)
            return
        self._check_custom_id(number, line["custom_id"])
        if line["method"] != "POST":
            result.add("invalid_request", "Only the POST method is supported.", number, "method")
        if line["url"] != self.endpoint:
            result.add("invalid_url", "The URL provided for this request does not match the batch endpoint.",
                       number, "url")
            return
        body = line["body"]
        if not isinstance(body, dict):
            result.add("invalid_request", "The 'body' must be a JSON object.", number, "body")
            return
        self._check_body(number, body)

    def _check_custom_id(self, number: int, custom_id: Any) -> None:
        if not isinstance(custom_id, str) or not custom_id:
            self.result.add("invalid_request", "The 'custom_id' must be a non-empty string.", number, "custom_id")
        elif custom_id in self.seen:
            self.result.add("duplicate_custom_id", f"The custom_id '{custom_id}' is used by more than one request"
                            " in this file; each must be unique.", number, "custom_id")
        else:
            self.seen.add(custom_id)

    def _check_body(self, number: int, body: dict[str, Any]) -> None:
        result, endpoint = self.result, self.endpoint
        if body.get("stream") is True:
            name = _ENDPOINT_NAMES.get(endpoint, "This endpoint")
            result.add("streaming_unsupported", f"{name}: Streaming is not supported in the Batch API.",
                       number, "body.stream")
        self._check_model(number, body.get("model"))
        if self.required and self.required[0] not in body:
            result.add("invalid_request", self.required[1], number, f"body.{self.required[0]}")
            return
        if endpoint == "/v1/embeddings":
            self.embedding_count += len(embedding_inputs(body.get("input")) or [])
        if self.count_tokens:
            result.prompt_tokens += prompt_tokens(endpoint, body)

    def _check_model(self, number: int, model: Any) -> None:
        """The first model seen becomes the batch's; any other one is a mismatch."""
        result = self.result
        if model == result.model and model is not None:
            return  # the batch's model again (the common case): nothing new to record
        if not isinstance(model, str) or not model:
            result.add("invalid_request", "Model parameter is required.", number, "body.model")
            return
        self.models.add(model)
        if len(self.models) > 1 and model != result.model:
            result.add("model_mismatch", f"All requests in a batch must use the same model; found"
                       f" '{model}' after '{result.model}'.", number, "body.model")
        result.model = result.model or model
