"""Batch API prices from the maintained `genai-prices` package, with the batch discount applied."""

from __future__ import annotations

from functools import cache

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
