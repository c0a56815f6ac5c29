"""Anthropic's Message Batches shapes, translated to and from the engine's OpenAI chat form.

The lifecycle, responders and faults answer OpenAI chat-completion bodies. Rather than a second
engine, each Anthropic request (``{custom_id, params}``) becomes one internal chat request line,
and each internal result line becomes Anthropic's result line when the batch ends. Everything
here is pure (no store, no HTTP): ``anthropic_routes.py`` does the I/O.

What is translated, what is not: docs/local-api-anthropic.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from batch_pipeline.local_api.errors import error_body

CHAT_ENDPOINT = "/v1/chat/completions"
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ROLES = ("user", "assistant")

# Anthropic's error type for an HTTP status (its errors page); any other 5xx is an api_error. The
# engine's 503 (its overloaded fault, or an upstream's) is Anthropic's overloaded_error.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               503: "overloaded_error", 529: "overloaded_error"}
# The engine's error code for a request that never ran, and Anthropic's result type for it.
NEVER_RAN = {"batch_cancelled": "canceled", "batch_expired": "expired"}
RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")


class EnvelopeError(ValueError):
    """The create body itself is invalid: the whole create answers 400 invalid_request_error."""


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_error(error_kind: str, message: str, request_id: str) -> dict[str, Any]:
    """Anthropic's error shape, for HTTP answers and ``errored`` results alike."""
    return {"type": "error", "error": {"type": error_kind, "message": message}, "request_id": request_id}


def rfc3339(timestamp: int | float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def check_envelope(body: Any, max_requests: int) -> list[dict[str, Any]]:
    """The create body's ``requests``, or ``EnvelopeError`` with a message in the API's style.

    Only the envelope is checked here (as the real API does synchronously); each request's
    ``params`` are checked by ``translate`` and a bad one ends that request ``errored``.
    """
    if not isinstance(body, dict) or "requests" not in body:
        raise EnvelopeError("requests: Field required")
    requests = body["requests"]
    if not isinstance(requests, list):
        raise EnvelopeError("requests: Input should be a valid list")
    if not requests:
        raise EnvelopeError("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > max_requests:
        raise EnvelopeError(f"requests: List should have at most {max_requests} items after validation,"
                            f" not {len(requests)}")
    seen: set[str] = set()
    for index, item in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(item, dict):
            raise EnvelopeError(f"{where}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str):
            raise EnvelopeError(f"{where}.custom_id: Field required" if custom_id is None
                                else f"{where}.custom_id: Input should be a valid string")
        if len(custom_id) > 64:
            raise EnvelopeError(f"{where}.custom_id: String should have at most 64 characters")
        if not CUSTOM_ID.match(custom_id):
            raise EnvelopeError(f"{where}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise EnvelopeError(f"{where}.custom_id: Duplicate custom_id '{custom_id}': each request in a"
                                " Message Batch must have a unique custom_id")
        seen.add(custom_id)
        if not isinstance(item.get("params"), dict):
            raise EnvelopeError(f"{where}.params: Field required" if item.get("params") is None
                                else f"{where}.params: Input should be a valid dictionary")
    return requests


@dataclass(frozen=True)
class Translated:
    """One Anthropic request as the engine runs it: a chat body, or the error it ends with."""

    body: dict[str, Any]
    tool: str | None = None  # the forced tool whose ``tool_use`` block answers it
    error: tuple[int, str] | None = None  # (HTTP status, message) of a request that ends errored

    def line(self, custom_id: str) -> dict[str, Any]:
        """The internal request line (the lifecycle's ``preset_reply`` carries an error)."""
        line: dict[str, Any] = {"custom_id": custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": self.body}
        if self.error is not None:
            status, message = self.error
            line["preset_reply"] = [status, error_body(message, error_type(status))]
        return line


def _text(content: Any) -> str | None:
    """The text of a message's content (a string or content blocks); None when it has no valid form."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not all(isinstance(b, dict) and isinstance(b.get("type"), str)
                                                for b in content):
        return None
    parts = []
    for block in content:
        inner = block.get("text", block.get("content"))
        parts.append(inner if isinstance(inner, str) else _text(inner) or "")
    return " ".join(p for p in parts if p)


def _messages(params: dict[str, Any]) -> list[dict[str, Any]] | str:
    """The chat messages (system first), or the invalid_request_error message."""
    chat: list[dict[str, Any]] = []
    system = params.get("system")
    if system is not None:
        text = _text(system)
        if text is None:
            return "system: Input should be a valid string or a list of text blocks"
        chat.append({"role": "system", "content": text})
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required" if messages is None else "messages: at least one message is required"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{index}: Input should be a valid dictionary"
        if message.get("role") not in ROLES:
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        text = _text(message.get("content"))
        if text is None:
            return f"messages.{index}.content: Input should be a valid string or a list of content blocks"
        chat.append({"role": message["role"], "content": text})
    return chat


def _schema(params: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None] | str:
    """The JSON Schema the answer must satisfy and the forced tool's name, or an error message.

    ``output_config.format`` (or the older ``output_format``) asks for JSON text; a ``tool_choice``
    of type ``tool`` (or ``any``) forces a tool call whose input satisfies that tool's schema.
    """
    output = params.get("output_config")
    fmt = output.get("format") if isinstance(output, dict) else params.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            return "output_config.format.schema: Field required"
        return fmt["schema"], None
    choice = params.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") not in ("tool", "any"):
        return None, None
    tools = [t for t in params.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]
    wanted = choice.get("name") if choice["type"] == "tool" else (tools[0]["name"] if tools else None)
    tool = next((t for t in tools if t["name"] == wanted), None)
    if tool is None:
        return f"tool_choice: tool '{wanted}' is not in tools" if wanted else "tools: Field required"
    if not isinstance(tool.get("input_schema"), dict):
        return f"tools.{tools.index(tool)}.input_schema: Field required"
    return tool["input_schema"], tool["name"]


def translate(params: dict[str, Any], served: Collection[str] | None) -> Translated:
    """An Anthropic request's ``params`` as a chat body, or the error the request ends with
    (``served`` None: any model)."""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        return Translated({}, error=(400, "model: Field required"))
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        return Translated({}, error=(400, "max_tokens: Field required"))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return Translated({}, error=(400, "max_tokens: Input should be greater than or equal to 1"))
    if params.get("stream"):
        return Translated({}, error=(400, "stream: streaming is not supported in Message Batches"))
    temperature = params.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
                                    or not 0 <= temperature <= 1):
        return Translated({}, error=(400, "temperature: Input should be a number between 0 and 1"))
    messages = _messages(params)
    schema = _schema(params)
    if isinstance(messages, str) or isinstance(schema, str):
        return Translated({}, error=(400, messages if isinstance(messages, str) else str(schema)))
    if served is not None and model not in served:
        return Translated({}, error=(404, f"model: {model}"))
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    if schema[0] is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": schema[1] or "output",
                                                                           "schema": schema[0]}}
    return Translated(body, tool=schema[1])


def _short_id(prefix: str, *parts: str) -> str:
    """A stable id for a result's message or tool call (unique per batch and custom_id)."""
    return prefix + hashlib.blake2b(":".join(parts).encode(), digest_size=12).hexdigest()


def _content(text: str, cut: bool, tool: str | None, ids: tuple[str, str]) -> tuple[list[dict[str, Any]], str]:
    """The message's content blocks and stop reason: a ``tool_use`` block for a forced tool (its
    JSON input parsed), else one text block."""
    if tool is not None and not cut:
        try:
            return [{"type": "tool_use", "id": _short_id("toolu_", *ids), "name": tool,
                     "input": orjson.loads(text)}], "tool_use"
        except orjson.JSONDecodeError:
            pass
    return [{"type": "text", "text": text}], "max_tokens" if cut else "end_turn"


def message(body: dict[str, Any], tool: str | None, ids: tuple[str, str]) -> dict[str, Any]:
    """Anthropic's ``Message`` for the engine's chat completion ``body`` (ids: batch, custom_id)."""
    choice = body["choices"][0]
    text = choice["message"].get("content") or ""
    content, stop_reason = _content(text, choice.get("finish_reason") == "length", tool, ids)
    usage = body.get("usage") or {}
    return {
        "id": _short_id("msg_", *ids), "type": "message", "role": "assistant", "model": body.get("model"),
        "content": content, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0),
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "batch"},
    }


def result_line(line: dict[str, Any], batch_id: str, tools: dict[str, str]) -> dict[str, Any]:
    """Anthropic's result line for one of the engine's output or error lines."""
    custom_id = line["custom_id"]
    response = line.get("response")
    if response is None:
        code = (line.get("error") or {}).get("code")
        return {"custom_id": custom_id, "result": {"type": NEVER_RAN.get(code or "", "expired")}}
    status, body = response["status_code"], response["body"]
    if 200 <= status < 300:
        return {"custom_id": custom_id, "result": {
            "type": "succeeded", "message": message(body, tools.get(custom_id), (batch_id, custom_id))}}
    error = body.get("error") if isinstance(body, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    request_id = response.get("request_id") or "req_local"
    return {"custom_id": custom_id, "result": {
        "type": "errored", "error": anthropic_error(error_type(status), text or "Internal server error", request_id)}}


def processing_status(internal_status: str) -> str:
    """The engine's status as Anthropic's: every stage before the end is in_progress."""
    if internal_status == "cancelling":
        return "canceling"
    if internal_status in ("completed", "failed", "expired", "cancelled"):
        return "ended"
    return "in_progress"
