"""Batch API prices from the maintained `genai-prices` package, with the batch discount applied."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import bpe_openai
from genai_prices import Usage, calc_price

BATCH_DISCOUNT = 0.5  # the Batch API bills half the synchronous price (reference §7)
_PER = 1_000_000


@cache
def batch_price_per_token(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token at batch prices, or None when the package does not know it."""
    try:
        price = calc_price(Usage(input_tokens=_PER, output_tokens=_PER), model, provider_id="openai")
    except LookupError:
        return None
    return (
        float(price.input_price) / _PER * BATCH_DISCOUNT,
        float(price.output_price) / _PER * BATCH_DISCOUNT,
    )


def batch_prices(models: list[str]) -> dict[str, tuple[float, float]]:
    """Per-token batch prices of the models that have one."""
    return {m: p for m in set(models) if m and (p := batch_price_per_token(m)) is not None}


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


def price_for(model: str, configured: tuple[float, float] | None) -> tuple[float, float]:
    """Per-token batch price: configured (USD per million) first, else `genai-prices`."""
    if configured is not None:
        return configured[0] / _PER, configured[1] / _PER
    price = batch_price_per_token(model)
    if price is None:
        raise LookupError(
            f"model '{model}' has no price in genai-prices; set the spec's "
            "price_per_million_tokens=(input_usd, output_usd) at batch prices"
        )
    return price


@dataclass(frozen=True)
class Estimate:
    """What a partition's requests should cost, before anything is sent."""

    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float

    def metadata(self) -> dict[str, float | int]:
        return {
            "estimated_input_tokens": self.input_tokens,
            "estimated_output_tokens": self.output_tokens,
            "estimated_cost_usd": round(self.cost_usd, 6),
        }


def estimate(model: str, configured: tuple[float, float] | None, input_tokens: list[int],
             output_tokens_per_request: int) -> Estimate:
    """Counted input tokens plus the expected output tokens of every request, at batch prices."""
    requests = sum(1 for t in input_tokens if t)
    tokens_in, tokens_out = sum(input_tokens), requests * output_tokens_per_request
    price_in, price_out = price_for(model, configured)
    return Estimate(requests, tokens_in, tokens_out, tokens_in * price_in + tokens_out * price_out)
