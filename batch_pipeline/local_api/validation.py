"""Validation of a batch input file, the way OpenAI reports it: line by line, all at once.

The batch was already accepted at create time; problems found here move it from
``validating`` to ``failed`` with one ``errors.data`` entry per bad line. A body the
endpoint itself would refuse (an unknown role, a wrong type) does not fail the batch: as on
OpenAI, that request alone fails with a 400 in the error file (``request_error``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batch_pipeline.local_api.errors import error_body
from batch_pipeline.local_api.responders import (
    Reply,
    embedding_inputs,
    prompt_text,
    prompt_tokens,
    responses_input_text,
)
from batch_pipeline.local_api.settings import LocalAPISettings

# A broken 50,000-line file would otherwise make a multi-megabyte Batch object.
MAX_REPORTED_ERRORS = 1000

_REQUIRED_BODY_FIELD = {
    "/v1/chat/completions": ("messages", "Messages parameter is required."),
    "/v1/responses": ("input", "Input parameter is required."),
    "/v1/embeddings": ("input", "Input parameter is required."),
    "/v1/completions": ("prompt", "Prompt parameter is required."),
    "/v1/moderations": ("input", "Input parameter is required."),
    "/v1/images/generations": ("prompt", "Prompt parameter is required."),
}
_ENDPOINT_NAMES = {
    "/v1/chat/completions": "Chat Completions", "/v1/responses": "Responses",
    "/v1/embeddings": "Embeddings", "/v1/completions": "Completions", "/v1/moderations": "Moderations",
    "/v1/images/generations": "Images",
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


def openai_path(url: str) -> str:
    """An endpoint as OpenAI spells it: Azure's `/chat/completions` is `/v1/chat/completions`."""
    return url if url.startswith("/v1/") else "/v1" + url


def validate_input(path: Path, endpoint: str, settings: LocalAPISettings,
                   served_models: Collection[str] | None = None, azure: bool = False) -> Validation:
    """Check every line of the input file against the batch's endpoint, the served models
    (None: any model) and the limits; `azure`: as Azure OpenAI does (its codes, its limit, a
    line `url` in either form, and deployment names as models)."""
    result = Validation()
    size = path.stat().st_size
    if size > settings.max_batch_input_bytes:
        result.add("file_too_large", f"The batch input file is larger than the {settings.max_batch_input_bytes}"
                   " byte maximum. Please try again with a smaller file.")
        return result
    count_tokens = settings.enqueued_token_limit is not None or bool(settings.enqueued_token_limits)
    checker = _LineChecker(result, endpoint, count_tokens, served_models, settings if azure else None)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                checker.check(number, raw)
    if result.total == 0:
        result.add("empty_file", "The input file contains no requests.")
    most = settings.azure_max_requests_per_batch if azure else settings.max_requests_per_batch
    if result.total > most:
        result.add("too_many_tasks", f"The input file contains {result.total} requests; the maximum per batch is"
                   f" {most}.")
    if checker.embedding_count > settings.max_embedding_inputs:
        result.add("too_many_embedding_inputs", f"The batch contains {checker.embedding_count} embedding inputs;"
                   f" the maximum is {settings.max_embedding_inputs}.", param="body.input")
    return result


class _LineChecker:
    """Checks one request line at a time, remembering what the file-wide checks need.

    Those are unique custom ids, one model per batch, and the embedding inputs and prompt
    tokens summed over the file.
    """

    def __init__(self, result: Validation, endpoint: str, count_tokens: bool,
                 served_models: Collection[str] | None = None, azure: LocalAPISettings | None = None) -> None:
        self.result = result
        self.azure = azure  # Azure's rules, with its deployments; None: OpenAI's
        self.served = served_models
        self.unserved: set[str] = set()
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
        if self.azure is not None:
            if not isinstance(line["url"], str) or openai_path(line["url"]) != self.endpoint:
                result.add("url_mismatch", "The url of this request does not match the batch's endpoint.",
                           number, "url")
                return
        elif line["url"] != self.endpoint:
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
            if model in self.unserved:  # one error per line, as OpenAI reports them
                result.add("model_not_found", _not_served(model), number, "body.model")
            return  # the batch's model again (the common case): nothing new to record
        if not isinstance(model, str) or not model:
            result.add("invalid_request", "Model parameter is required.", number, "body.model")
            return
        served = self.azure.azure_model(model) if self.azure is not None else model
        if self.served is not None and served not in self.served:
            self.unserved.add(model)
            result.add("model_not_found", _not_served(model), number, "body.model")
        self.models.add(model)
        if len(self.models) > 1 and model != result.model:
            result.add("model_mismatch", f"All requests in a batch must use the same model; found"
                       f" '{model}' after '{result.model}'.", number, "body.model")
        result.model = result.model or model


def _not_served(model: str) -> str:
    return f"The provided model '{model}' is not supported by the Batch API."


# -- per-request rules: what the synchronous endpoint would answer with a 400 ------------------

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_CONTENT_REQUIRED = frozenset({"system", "developer", "user", "tool"})
_INTEGER, _NUMBER, _STRING, _BOOLEAN, _OBJECT, _ARRAY = "an integer", "a number", "a string", "a boolean", \
    "an object", "an array"
# Top-level parameters every endpoint types the same way: (expected type, minimum, maximum).
_PARAMETERS: dict[str, tuple[str, float | None, float | None]] = {
    "max_tokens": (_INTEGER, 1, None), "max_completion_tokens": (_INTEGER, 1, None),
    "max_output_tokens": (_INTEGER, 1, None), "n": (_INTEGER, 1, 128), "seed": (_INTEGER, None, None),
    "dimensions": (_INTEGER, 1, None), "temperature": (_NUMBER, 0, 2), "top_p": (_NUMBER, 0, 1),
    "frequency_penalty": (_NUMBER, -2, 2), "presence_penalty": (_NUMBER, -2, 2),
    "logprobs": (_BOOLEAN, None, None), "user": (_STRING, None, None), "instructions": (_STRING, None, None),
    "encoding_format": (_STRING, None, None), "response_format": (_OBJECT, None, None),
    "text": (_OBJECT, None, None), "metadata": (_OBJECT, None, None), "tools": (_ARRAY, None, None),
}


def kind_of(value: Any) -> str:
    """How OpenAI's messages name a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return _BOOLEAN
    return {int: _INTEGER, float: "a decimal", str: _STRING, list: _ARRAY, dict: _OBJECT}.get(type(value), "a value")


def _is(expected: str, value: Any) -> bool:
    if expected == _INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return kind_of(value) == expected


def invalid_type(param: str, expected: str, value: Any) -> Reply:
    return 400, error_body(f"Invalid type for '{param}': expected {expected}, but got {kind_of(value)} instead.",
                           "invalid_request_error", param, "invalid_type")


def missing_parameter(param: str) -> Reply:
    return 400, error_body(f"Missing required parameter: '{param}'.", "invalid_request_error", param,
                           "missing_required_parameter")


def supported_values(values: Collection[str]) -> str:
    """``'a', 'b', and 'c'``: the list as OpenAI's invalid_value messages spell it."""
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def invalid_value(param: str, value: Any, allowed: Collection[str]) -> Reply:
    return 400, error_body(f"Invalid value for '{param}': '{value}'. Supported values are:"
                           f" {supported_values(allowed)}.",
                           "invalid_request_error", param, "invalid_value")


def _parameter_error(body: dict[str, Any]) -> Reply | None:
    """A top-level parameter of the wrong type or out of range, if any."""
    for name, value in body.items():
        rule = _PARAMETERS.get(name)
        if rule is None or value is None:
            continue
        expected, low, high = rule
        if not _is(expected, value):
            return invalid_type(name, expected, value)
        word = "integer" if expected == _INTEGER else "decimal"
        if low is not None and value < low:
            return 400, error_body(f"Invalid '{name}': {word} below minimum value. Expected a value >= {low},"
                                   f" but got {value} instead.", "invalid_request_error", name,
                                   f"{word}_below_min_value")
        if high is not None and value > high:
            return 400, error_body(f"Invalid '{name}': {word} above maximum value. Expected a value <= {high},"
                                   f" but got {value} instead.", "invalid_request_error", name,
                                   f"{word}_above_max_value")
    return None


def _message_error(index: int, message: Any) -> Reply | None:
    """One chat message: an object with a known role and, for most roles, content."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        return invalid_type(where, _OBJECT, message)
    role = message.get("role")
    if role is None:
        return missing_parameter(f"{where}.role")
    if role not in CHAT_ROLES:
        return invalid_value(f"{where}.role", role, CHAT_ROLES)
    content = message.get("content")
    if content is None:
        needs = role in _CONTENT_REQUIRED or (role == "assistant" and not message.get("tool_calls")
                                              and not message.get("function_call"))
        return missing_parameter(f"{where}.content") if needs else None
    if isinstance(content, list):
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                return invalid_type(f"{where}.content[{part_index}]", "an object with a 'type'", part)
        return None
    if not isinstance(content, str):
        return invalid_type(f"{where}.content", "one of a string or array of objects", content)
    return None


def _chat_error(body: dict[str, Any]) -> Reply | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return invalid_type("messages", _ARRAY, messages)
    if not messages:
        return 400, error_body("Invalid 'messages': empty array. Expected an array with minimum length 1, but got"
                               " an empty array instead.", "invalid_request_error", "messages", "empty_array")
    for index, message in enumerate(messages):
        error = _message_error(index, message)
        if error is not None:
            return error
    return None


def _items_error(param: str, value: Any, expected: str) -> Reply | None:
    """``input``-like values: a string, or an array of strings or of objects with a 'type' or 'role'."""
    if isinstance(value, str):
        return None
    if not isinstance(value, list) or not value:
        return invalid_type(param, expected, value)
    for index, item in enumerate(value):
        if isinstance(item, dict):
            role = item.get("role")
            if role is not None and role not in CHAT_ROLES[:4]:
                return invalid_value(f"{param}[{index}].role", role, CHAT_ROLES[:4])
        elif not isinstance(item, str):
            return invalid_type(f"{param}[{index}]", "a string or an object", item)
    return None


# JSON mode needs the prompt to ask for JSON: (param, message) of OpenAI's 400 when it does not.
_JSON_WORD_MISSING = {
    "/v1/chat/completions": ("messages", "'messages' must contain the word 'json' in some form, to use"
                             " 'response_format' of type 'json_object'."),
    "/v1/responses": ("text.format", "Response input messages must contain the word 'json' in some form to use"
                      " 'text.format' of type 'json_object'."),
}


def _json_mode_error(endpoint: str, body: dict[str, Any]) -> Reply | None:
    """JSON mode (`json_object`) whose messages never say "json": OpenAI refuses it (the
    instructions of a Responses request do not count)."""
    chat = endpoint == "/v1/chat/completions"
    fmt = body.get("response_format") if chat else (body.get("text") or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_object":
        return None  # checked first: every line of a batch passes here
    text = (prompt_text(endpoint, body) if chat else responses_input_text(body.get("input"))[0]) or ""
    if "json" in text.lower():
        return None
    param, message = _JSON_WORD_MISSING[endpoint]
    return 400, error_body(message, "invalid_request_error", param)


def request_error(endpoint: str, body: dict[str, Any]) -> Reply | None:
    """The 400 the synchronous ``endpoint`` would answer ``body`` with, or None when it would run it.

    Required fields whose absence OpenAI reports at validation (model, messages, input) are
    checked there, not here.
    """
    error = _parameter_error(body)
    if error is not None:
        return error
    if endpoint == "/v1/chat/completions":
        return _chat_error(body) or _json_mode_error(endpoint, body)
    if endpoint == "/v1/responses":
        return (_items_error("input", body.get("input"), "one of a string or array of input items")
                or _json_mode_error(endpoint, body))
    if endpoint == "/v1/moderations":
        return _items_error("input", body.get("input"), "one of a string, array of strings or array of objects")
    if endpoint == "/v1/embeddings" and embedding_inputs(body.get("input")) is None:
        return invalid_type("input", "one of a string, array of strings or array of token arrays", body.get("input"))
    if endpoint == "/v1/completions":
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
            return invalid_type("prompt", "one of a string or array of strings", prompt)
    return None
