"""Batch API prices from the maintained `genai-prices` package, and the cost estimate built on them.

Modelled: genai-prices' batch rates (its `processing: batch` price variant; half the synchronous
rates for a model without one), cached input at the cache-read rate that variant resolves to,
and long-context tiers (a request whose input tokens pass a tier's start pays that tier's rate
on all its tokens, input and output, as genai-prices prices them), and a generated image's output
tokens at the model's output image rate where genai-prices has one (`gpt-image-1.5`), else at
its output rate. Not modelled: cache writes (OpenAI bills none), audio, input image (an image
edit's), web-search and tool units, and, in the estimate, cached
input: it cannot be known before sending, so the estimate assumes none (its input cost is an
upper bound; the actual cost uses the `cached_tokens` the provider reports).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from genai_prices import Usage, calc_price
from genai_prices.types import TieredPrices

BATCH_DISCOUNT = 0.5  # the Batch API bills half the synchronous price
_PER = 1_000_000
_BATCH_CONTEXT = {"processing": "batch"}  # genai-prices' price variant for the Batch API


@dataclass(frozen=True)
class Rate:
    """USD per token: `base`, or the rate of the highest tier whose start the request's input
    tokens pass (genai-prices' threshold tiers: a tier's rate applies to all the request's tokens)."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()  # (start, rate), ascending

    def at(self, input_tokens: int) -> float:
        """The rate for a request of `input_tokens` input tokens."""
        return next((rate for start, rate in reversed(self.tiers) if input_tokens > start), self.base)

    def per_row(self, input_tokens: pa.ChunkedArray) -> pa.ChunkedArray | pa.Scalar:
        """The rate of each request (a scalar when the rate has no tiers)."""
        rate: pa.ChunkedArray | pa.Scalar = pa.scalar(self.base)
        for start, tier in self.tiers:
            rate = pc.if_else(pc.greater(input_tokens, start), tier, rate)
        return rate


@dataclass(frozen=True)
class BatchPrice:
    """One model's per-token batch rates."""

    input: Rate
    cached_input: Rate
    output: Rate
    output_image: Rate | None = None  # a generated image's tokens, where the model prices them apart

    def for_images(self) -> BatchPrice:
        """The rates of an images request, whose output tokens are image tokens: what its
        estimate assumes."""
        return dataclasses.replace(self, output=self.output_image or self.output)

    @classmethod
    def per_million(cls, input_usd: float, output_usd: float) -> BatchPrice:
        """Flat rates given in USD per million tokens (a spec's `price_per_million_tokens`)."""
        return cls(Rate(input_usd / _PER), Rate(input_usd / _PER), Rate(output_usd / _PER))

    def thresholds(self) -> list[int]:
        """Every tier start of the three rates, ascending: the edges of the price bands."""
        return sorted({start for rate in (self.input, self.cached_input, self.output) for start, _ in rate.tiers})

    def row_costs(self, input_tokens: pa.ChunkedArray, cached_tokens: pa.ChunkedArray,
                  output_tokens: pa.ChunkedArray, output_image_tokens: pa.Array | None = None) -> pa.ChunkedArray:
        """Each request's cost from its usage (null without input tokens); cached input tokens
        are part of the input tokens, billed at the cached rate, and output image tokens part of
        the output tokens, billed at the image rate."""
        cached = pc.fill_null(cached_tokens, 0)
        output = pc.fill_null(output_tokens, 0)
        cost = pc.add(
            pc.add(pc.multiply(pc.subtract(input_tokens, cached), self.input.per_row(input_tokens)),
                   pc.multiply(cached, self.cached_input.per_row(input_tokens))),
            pc.multiply(output, self.output.per_row(input_tokens)),
        )
        if output_image_tokens is None or self.output_image is None:
            return cost
        images = pc.fill_null(output_image_tokens, 0)
        extra = pc.subtract(self.output_image.per_row(input_tokens), self.output.per_row(input_tokens))
        return pc.add(cost, pc.multiply(images, extra))


def _rate(value: Any, scale: float) -> Rate | None:
    """A genai-prices price (USD per million, flat or tiered) as a per-token `Rate`."""
    if value is None:
        return None
    if isinstance(value, TieredPrices):
        tiers = tuple((tier.start, float(tier.price) * scale / _PER) for tier in value.tiers)
        return Rate(float(value.base) * scale / _PER, tiers)
    return Rate(float(value) * scale / _PER)


@cache
def batch_price(model: str) -> BatchPrice | None:
    """`model`'s batch rates from genai-prices, or None when it does not know the model."""
    nothing = Usage(input_tokens=0, output_tokens=0)
    for provider in ("openai", None):  # OpenAI's price first (Azure bills the same); else the model's maker's
        try:
            batch = calc_price(nothing, model, provider_id=provider, price_context=_BATCH_CONTEXT).model_price
            standard = calc_price(nothing, model, provider_id=provider).model_price
            break
        except LookupError:
            continue
    else:
        return None
    scale = BATCH_DISCOUNT if batch == standard else 1.0  # no batch variant: half the synchronous rates
    input_rate = _rate(batch.input_mtok, scale) or Rate(0.0)
    return BatchPrice(input_rate, _rate(batch.cache_read_mtok, scale) or input_rate,
                      _rate(batch.output_mtok, scale) or Rate(0.0),
                      _rate(getattr(batch, "output_image_mtok", None), scale))


def batch_prices(models: list[str]) -> dict[str, BatchPrice]:
    """Batch rates of the models that have one."""
    return {m: p for m in set(models) if m and (p := batch_price(m)) is not None}


def price_for(model: str, configured: tuple[float, float] | None) -> BatchPrice:
    """The model's batch rates: configured (USD per million) first, else `genai-prices`."""
    if configured is not None:
        return BatchPrice.per_million(*configured)
    price = batch_price(model)
    if price is None:
        raise LookupError(
            f"model '{model}' has no price in genai-prices; set the spec's "
            "price_per_million_tokens=(input_usd, output_usd) at batch prices"
        )
    return price


@dataclass(frozen=True)
class UsageRecord:
    """The tokens of one harvest's answered requests (sent, answered, paid): what later
    estimates of the use case learn from."""

    requests: int = 0
    output_tokens: int = 0
    input_tokens: int = 0
    counted_input_tokens: int = 0  # the same requests' input tokens as counted offline

    def __add__(self, other: UsageRecord) -> UsageRecord:
        return UsageRecord(self.requests + other.requests, self.output_tokens + other.output_tokens,
                           self.input_tokens + other.input_tokens,
                           self.counted_input_tokens + other.counted_input_tokens)


@dataclass(frozen=True)
class History:
    """The earlier harvests an estimate learns from: those of the use case's current model and
    spec (`BatchSpec.fingerprint`), and whether harvests of an earlier version were left out."""

    records: tuple[UsageRecord, ...] = ()
    spec_changed: bool = False


NO_HISTORY = History()


@dataclass(frozen=True)
class Basis:
    """What the estimate assumes per request, and where that came from (shown beside it)."""

    output_tokens_per_request: float
    source: str
    input_scale: float = 1.0  # actual input tokens / those counted offline

    @classmethod
    def learned(cls, prior: tuple[int, str], history: History) -> Basis:
        """The mean of earlier harvests weighted by requests; the prior before there are any
        (saying so when harvests of an earlier version of the spec were left out).

        Output length is the spec's to cap but the model's to choose: `max_tokens` alone put the
        estimate several times over the bill. The input scale learns what the offline count
        misses (a response schema, the provider's own message framing).
        """
        records = [r for r in history.records if r.requests]
        requests = sum(r.requests for r in records)
        if not requests:
            changed = "; the spec's prompts or parameters changed since the last harvest"
            return cls(float(prior[0]), f"prior: {prior[1]}{changed if history.spec_changed else ''}")
        counted = sum(r.counted_input_tokens for r in records)
        actual = sum(r.input_tokens for r in records)
        scale = actual / counted if counted and actual else 1.0
        plural = "s" if len(records) > 1 else ""
        return cls(sum(r.output_tokens for r in records) / requests,
                   f"learned from {len(records)} partition{plural} ({requests:,} requests)", scale)

    def describe(self) -> str:
        text = f"output tokens: {self.output_tokens_per_request:,.0f}/request, {self.source}"
        if self.input_scale != 1.0:
            text += f"; input tokens: {self.input_scale:.2f} x the offline count, learned"
        return text + "; cached input: none assumed"


@dataclass(frozen=True)
class Band:
    """The requests whose input tokens are over `start`, up to the next tier's start."""

    start: int
    requests: int
    input_tokens: int


def bands(tokens: pa.ChunkedArray, thresholds: Sequence[int], scale: float = 1.0) -> list[Band]:
    """Requests and their input tokens (times `scale`) per price band, with pyarrow.compute:
    a pass over the column per band, never a Python list of every request's tokens."""
    if not thresholds:
        return [Band(0, len(tokens) - tokens.null_count, round((pc.sum(tokens).as_py() or 0) * scale))]
    found = []
    for low, high in zip([None, *thresholds], [*thresholds, None], strict=True):
        mask = pc.is_valid(tokens) if low is None else pc.greater(tokens, low / scale)
        if high is not None:
            mask = pc.and_(mask, pc.less_equal(tokens, high / scale))
        inside = tokens.filter(mask)
        found.append(Band(low or 0, len(inside), round((pc.sum(inside).as_py() or 0) * scale)))
    return found


@dataclass(frozen=True)
class Estimate:
    """What a partition's requests should cost, before anything is sent, and on what basis."""

    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    basis: Basis


def estimate(price: BatchPrice, requests: Sequence[Band], basis: Basis) -> Estimate:
    """The requests' input tokens plus their expected output tokens, at each band's batch rates."""
    cost, tokens_out = 0.0, 0.0
    for band in requests:
        out = band.requests * basis.output_tokens_per_request
        cost += band.input_tokens * price.input.at(band.start + 1) + out * price.output.at(band.start + 1)
        tokens_out += out
    return Estimate(sum(b.requests for b in requests), sum(b.input_tokens for b in requests),
                    round(tokens_out), cost, basis)
