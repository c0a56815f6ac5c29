"""Gemini requests in, Gemini responses out: the edge between Gemini's shapes and the engine.

The engine (lifecycle, responders, faults) speaks OpenAI's batch lines. A Gemini
``GenerateContentRequest`` becomes a chat-completions body (``contents`` -> messages,
``systemInstruction`` -> a system message, ``generationConfig`` -> temperature, max_tokens and a
JSON-schema response format) and an ``EmbedContentRequest`` an embeddings body; the engine's
replies are rendered back as ``GenerateContentResponse`` / ``EmbedContentResponse`` and its error
replies as ``google.rpc.Status``. The REST API takes field names in camelCase or snake_case (proto
JSON), so both are read.
"""

from __future__ import annotations

from typing import Any

CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"
# Google's canonical codes: HTTP status -> (gRPC code, status name), for errors and per-request Status.
CANONICAL = {400: (3, "INVALID_ARGUMENT"), 401: (16, "UNAUTHENTICATED"), 403: (7, "PERMISSION_DENIED"),
             404: (5, "NOT_FOUND"), 409: (6, "ALREADY_EXISTS"), 429: (8, "RESOURCE_EXHAUSTED"),
             500: (13, "INTERNAL"), 503: (14, "UNAVAILABLE"), 504: (4, "DEADLINE_EXCEEDED")}
EMBEDDING_DIMENSIONS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}


class InvalidRequest(ValueError):
    """A request the API refuses at create (400 INVALID_ARGUMENT), with the field at fault."""


def field(obj: dict[str, Any], camel: str) -> Any:
    """``obj[camel]``, or its snake_case spelling: proto JSON accepts both."""
    if camel in obj:
        return obj[camel]
    return obj.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


def _text(content: Any, where: str) -> str:
    """The text parts of a ``Content``; other parts (inline data, files, calls) carry no text here."""
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        raise InvalidRequest(f"Invalid value at '{where}': expected a Content with parts.")
    return "\n".join(part["text"] for part in content["parts"] if isinstance(part, dict)
                     and isinstance(part.get("text"), str))


def chat_body(model: str, request: Any, where: str) -> dict[str, Any]:
    """The chat-completions body a ``GenerateContentRequest`` runs as."""
    if not isinstance(request, dict):
        raise InvalidRequest(f"Invalid value at '{where}': expected a GenerateContentRequest object.")
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest(f"* GenerateContentRequest.contents: contents is not specified ({where}).")
    messages: list[dict[str, Any]] = []
    system = field(request, "systemInstruction")
    if system is not None:
        messages.append({"role": "system", "content": _text(system, f"{where}.systemInstruction")})
    for index, content in enumerate(contents):
        role = "assistant" if isinstance(content, dict) and content.get("role") == "model" else "user"
        messages.append({"role": role, "content": _text(content, f"{where}.contents[{index}]")})
    body: dict[str, Any] = {"model": model, "messages": messages}
    config = field(request, "generationConfig") or {}
    if not isinstance(config, dict):
        raise InvalidRequest(f"Invalid value at '{where}.generationConfig': expected an object.")
    if field(config, "temperature") is not None:
        body["temperature"] = field(config, "temperature")
    if field(config, "maxOutputTokens") is not None:
        body["max_tokens"] = field(config, "maxOutputTokens")
    response_format = _response_format(config)
    if response_format is not None:
        body["response_format"] = response_format
    return body


def _response_format(config: dict[str, Any]) -> dict[str, Any] | None:
    """JSON mode with ``responseJsonSchema`` (JSON Schema) or ``responseSchema`` (Gemini's OpenAPI
    subset, upper-case types), as the JSON-schema format the chat responder fills."""
    if field(config, "responseMimeType") != "application/json":
        return None
    schema = field(config, "responseJsonSchema")
    if schema is None and field(config, "responseSchema") is not None:
        schema = json_schema(field(config, "responseSchema"))
    if not isinstance(schema, dict):
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def json_schema(schema: Any) -> Any:
    """Gemini's ``Schema`` as JSON Schema: lower-case types, ``nullable`` as a null type, no
    ``propertyOrdering`` (the SDK adds it; JSON Schema has none)."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("propertyOrdering", "property_ordering", "nullable"):
            continue
        if key == "type" and isinstance(value, str):
            out[key] = [value.lower(), "null"] if schema.get("nullable") else value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = json_schema(value)
    return out


def embedding_body(model: str, request: Any, where: str) -> dict[str, Any]:
    """The embeddings body an ``EmbedContentRequest`` runs as (``outputDimensionality`` as dimensions)."""
    if not isinstance(request, dict):
        raise InvalidRequest(f"Invalid value at '{where}': expected an EmbedContentRequest object.")
    text = _text(request.get("content"), f"{where}.content")
    dimensions = field(request, "outputDimensionality") or EMBEDDING_DIMENSIONS.get(model, 768)
    return {"model": model, "input": text or " ", "dimensions": dimensions}


def generate_response(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat completion as a ``GenerateContentResponse``."""
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "candidates": [{"content": {"parts": [{"text": choice["message"]["content"]}], "role": "model"},
                        "finishReason": _FINISH.get(choice.get("finish_reason"), "STOP"), "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": completion,
                          "totalTokenCount": prompt + completion},
        "modelVersion": model, "responseId": str(body.get("id", "")).removeprefix("chatcmpl-"),
    }


def embed_response(body: dict[str, Any]) -> dict[str, Any]:
    """An embeddings reply as a batch's embed response: the vector and the input's ``tokenCount``
    (what google-genai's ``SingleEmbedContentResponse`` reads; the synchronous API's
    ``usageMetadata`` is not part of it)."""
    usage = body.get("usage") or {}
    return {"embedding": {"values": body["data"][0]["embedding"]}, "tokenCount": usage.get("prompt_tokens", 0)}


def status(http_status: int, message: str) -> dict[str, Any]:
    """A per-request ``google.rpc.Status`` (gRPC code) for an engine error of ``http_status``."""
    code, _ = CANONICAL.get(http_status, CANONICAL[500])
    return {"code": code, "message": message, "details": []}


def error_message(body: Any) -> str:
    """The message of an engine error body (OpenAI's envelope), or a generic one."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return "The request could not be processed."
