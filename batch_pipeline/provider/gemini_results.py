"""Gemini's Batch Mode responses file (JSONL, one line per request, each with its `key`) as
neutral rows.

A line holds the request's `response` (a GenerateContentResponse: the first candidate's text
parts are the answer, `usageMetadata` its tokens; or an embed response: its values, `tokenCount`
its tokens) or an `error` (a google.rpc.Status: its `status` name, or the canonical name of its
gRPC `code`, becomes the row's `error_code`, so RESOURCE_EXHAUSTED, INTERNAL and UNAVAILABLE are
retried). A candidate stopped for safety is a refusal (`invalid_output`). A line of an unexpected
shape is a failed row naming its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from batch_pipeline.provider.listing import result_rows

REFUSED = frozenset({"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION"})


def parse_results(files: Sequence[bytes | Path]) -> pa.Table:
    return result_rows(files, _row)


# google.rpc.Code: the canonical name of each gRPC code a per-request Status carries (written out:
# googleapis-common-protos has them as `code_pb2`, a dependency not worth adding for one table).
RPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
             "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
             "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def _error_code(error: dict[str, Any]) -> str:
    """A failed request's code: its status name where the error names one (an HTTP-style error),
    else the canonical name of its google.rpc.Status code (`{"code": 8}` is RESOURCE_EXHAUSTED),
    else the HTTP status it holds."""
    code = error.get("code")
    if error.get("status"):
        return str(error["status"])
    if isinstance(code, int) and 0 <= code < len(RPC_CODES):
        return RPC_CODES[code]
    return f"http_{code}"


def _row(line: bytes, number: int) -> dict[str, Any]:
    parsed: Any = None
    try:
        parsed = orjson.loads(line)
        key = parsed["key"]
        if not isinstance(key, str):
            raise TypeError("key is not a string")
        if parsed.get("error"):
            error = parsed["error"]
            return {"custom_id": key, "status": "failed", "error_code": _error_code(error),
                    "error_message": error.get("message") or "the request failed"}
        return {"custom_id": key, **_response(parsed["response"])}
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, IndexError) as exc:
        key = parsed.get("key") if isinstance(parsed, dict) else None
        why = f"line {number} of the responses has an unexpected shape ({type(exc).__name__}: {exc})"
        return {"custom_id": key if isinstance(key, str) else None, "status": "failed", "error_code": "malformed_line",
                "error_message": why}


def _response(response: dict[str, Any]) -> dict[str, Any]:
    if "embedding" in response:  # an EmbedContentResponse
        values = response["embedding"]["values"]
        if not isinstance(values, list):
            raise TypeError("embedding values are not a list")
        tokens = response.get("tokenCount")  # int64 in JSON: a number or its string
        return {"status": "succeeded", "embedding": [float(v) for v in values],
                "input_tokens": int(tokens) if tokens is not None else None}
    usage = response.get("usageMetadata") or {}
    tokens = {"model": response.get("modelVersion"), "input_tokens": usage.get("promptTokenCount"),
              "output_tokens": _output_tokens(usage), "cached_input_tokens": usage.get("cachedContentTokenCount")}
    candidates = response.get("candidates") or []
    reason = candidates[0].get("finishReason") if candidates else (response.get("promptFeedback") or {}).get(
        "blockReason")
    if not candidates or reason in REFUSED:
        return {"status": "invalid_output", "error_code": "refusal",
                "error_message": f"the model gave no answer ({reason or 'no candidate'})", **tokens}
    parts = (candidates[0].get("content") or {}).get("parts") or []
    texts = [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]
    return {"status": "succeeded", "output": "".join(texts) if texts else None, **tokens}


def _output_tokens(usage: dict[str, Any]) -> int | None:
    """Billed output: the answer's tokens and the model's thinking."""
    parts = [usage.get("candidatesTokenCount"), usage.get("thoughtsTokenCount")]
    return sum(p for p in parts if isinstance(p, int)) if isinstance(parts[0], int) else None
