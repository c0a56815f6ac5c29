"""Input tokens of OpenAI requests, counted offline with the model's BPE encoding (`bpe-openai`:
the o200k/cl100k tables ship inside its wheel): what the OpenAI and Azure adapters' encodings
count for the cost estimate and queue admission."""

from __future__ import annotations

from functools import cache
from typing import Any

import bpe_openai

# Chat formatting adds a few tokens per message and for the reply's priming (OpenAI cookbook).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@cache
def _encoding(model: str) -> Any:
    try:
        return bpe_openai.encoding_for_model(model)
    except (ValueError, bpe_openai.UnsupportedModelError):  # not in its tables: the family's encoding
        return bpe_openai.get_encoding("cl100k_base" if model.startswith("text-embedding") else "o200k_base")


def count_tokens(model: str, texts: list[str]) -> list[int]:
    """Tokens of each text, counted offline with the model's BPE encoding."""
    return list(map(_counter(model), texts))


@cache
def _counter(model: str) -> Any:
    """A function from text to its token count, equal to `len(encoding.encode_ordinary(text))`.

    It calls the Rust tokenizer's own `count` directly: `encode_ordinary_batch` spends about
    four fifths of its time on a thread-pool future per text and on building token lists.
    Anything out of the ordinary (text the fast path refuses, or over the encoding's limits)
    goes through `encode_ordinary`, so errors are the ones the encoding raises.

    bpe-openai has no public count, so this is the one place that reads its private
    `Encoding._backend` and `Encoding._runtime.chunk_limit`; if a release renames them, the
    public `encode_ordinary` is used instead.
    """
    encoding = _encoding(model)
    backend = getattr(encoding, "_backend", None)
    runtime = getattr(encoding, "_runtime", None)
    limit = getattr(runtime, "chunk_limit", None)
    if backend is None or not hasattr(backend, "count") or not isinstance(limit, int):
        return lambda text: len(encoding.encode_ordinary(text))

    def count(text: str) -> int:
        if not text:
            return 0
        if len(text) < 1_000_000:
            try:
                tokens = backend.count(text)
            except UnicodeEncodeError:  # lone surrogates: the encoding sanitizes them first
                tokens = None
            if tokens is not None and tokens <= limit:
                return tokens
        return len(encoding.encode_ordinary(text))

    return count
