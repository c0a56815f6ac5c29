"""Ad copy: headline, body and call-to-action variants for each product launch."""

from pathlib import Path

import dagster as dg
from pydantic import BaseModel

from batch_pipeline import BatchSpec, CsvSource, UseCase


class AdVariant(BaseModel):
    headline: str
    body: str
    call_to_action: str


class AdCopy(BaseModel):
    variants: list[AdVariant]
    tone: str


use_case = UseCase(
    spec=BatchSpec(
        name="ad_copy",
        description="Three ad copy variants per launched product, for A/B tests.",
        endpoint="/v1/responses",
        model="gpt-4o-mini",
        models={"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"},
        system_prompt="You write concise, honest ad copy. No claims the features do not support.",
        prompt=(
            "Write 3 ad variants for {product_name} ({category}), priced ${price_usd}, "
            "for {audience}. Features: {features}."
        ),
        response_model=AdCopy,
        parameters={"temperature": 0.8, "max_output_tokens": 500},
        expected_output_tokens=250,
        owners=("team:growth",),
    ),
    source=CsvSource(
        path=Path(__file__).parents[1] / "data" / "products.csv",
        key="sku",
        partition_column="launch_date",
    ),
    partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-20", timezone="UTC"),
)
