"""Anthropic's Message Batch results (JSONL, one line per request, any order) as neutral rows.

`succeeded` carries the message: its text blocks are the answer (JSON output arrives as text; a
forced tool's `input` is the answer's JSON), `usage` its tokens (cache reads as cached input).
`errored` carries an error object whose type becomes the row's `error_code`; `canceled` and
`expired` requests were never run. A line of an unexpected shape is a failed row naming its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from batch_pipeline.provider.listing import result_rows

_NEVER_RAN = {"canceled": ("cancelled", "batch_cancelled"), "expired": ("expired", "batch_expired")}


def parse_results(files: Sequence[bytes | Path]) -> pa.Table:
    return result_rows(files, _row)


def _row(line: bytes, number: int) -> dict[str, Any]:
    parsed: Any = None
    try:
        parsed = orjson.loads(line)
        return _outcome(parsed["custom_id"], parsed["result"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        custom_id = parsed.get("custom_id") if isinstance(parsed, dict) else None
        return {"custom_id": custom_id if isinstance(custom_id, str) else None, "status": "failed",
                "error_code": "malformed_line",
                "error_message": f"line {number} of the results has an unexpected shape ({type(exc).__name__}: {exc})"}


def _outcome(custom_id: str, result: dict[str, Any]) -> dict[str, Any]:
    kind = result["type"]
    if kind == "succeeded":
        return {"custom_id": custom_id, **_message(result["message"])}
    if kind in _NEVER_RAN:
        status, code = _NEVER_RAN[kind]
        return {"custom_id": custom_id, "status": status, "error_code": code,
                "error_message": f"the batch ended ({kind}) before this request ran"}
    error = (result.get("error") or {}).get("error") or {}
    return {"custom_id": custom_id, "status": "failed", "error_code": error.get("type") or "errored",
            "error_message": error.get("message") or "the request errored"}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    blocks = message.get("content") or []
    texts = [b.get("text") or "" for b in blocks if b.get("type") == "text"]
    tools = [b.get("input") for b in blocks if b.get("type") == "tool_use"]
    output = orjson.dumps(tools[0]).decode() if tools else ("".join(texts) if texts else None)
    usage = message.get("usage") or {}
    refused = message.get("stop_reason") == "refusal"
    return {"status": "invalid_output" if refused else "succeeded", "output": None if refused else output,
            "error_code": "refusal" if refused else None,
            "error_message": (output or "the model refused") if refused else None,
            "model": message.get("model"),
            "input_tokens": _total_input(usage), "output_tokens": usage.get("output_tokens"),
            "cached_input_tokens": usage.get("cache_read_input_tokens")}


def _total_input(usage: dict[str, Any]) -> int | None:
    """Input tokens as billed: uncached, cache writes and cache reads together."""
    parts = [usage.get(k) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    return sum(p for p in parts if isinstance(p, int)) if isinstance(parts[0], int) else None
