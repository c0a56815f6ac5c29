"""Content analysis at scale: a classification and an embedding for every published document."""

from enum import StrEnum
from pathlib import Path

import dagster as dg
from pydantic import BaseModel

from batch_pipeline import BatchSpec, CsvSource, UseCase


class Sentiment(StrEnum):
    positive = "positive"
    neutral = "neutral"
    negative = "negative"
    mixed = "mixed"


class Flag(StrEnum):
    spam = "spam"
    personal_data = "personal_data"
    medical_claim = "medical_claim"
    abusive = "abusive"


class ContentLabels(BaseModel):
    topics: list[str]
    sentiment: Sentiment
    language: str
    flags: list[Flag]


documents = CsvSource(
    path=Path(__file__).parents[1] / "data" / "documents.csv",
    key="doc_id",
    partition_column="published_date",
)
daily = dg.DailyPartitionsDefinition(start_date="2026-11-20", timezone="UTC")

classification = UseCase(
    spec=BatchSpec(
        name="content_classification",
        description="Topics, sentiment, language (ISO 639-1) and moderation flags per document.",
        model="gpt-4o-mini",
        models={"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"},
        system_prompt="You label user-generated content for a trust and safety team.",
        prompt="Source: {source}\nTitle: {title}\n\n{text}",
        response_model=ContentLabels,
        parameters={"temperature": 0, "max_tokens": 200},
        expected_output_tokens=60,
        owners=("team:trust-safety",),
    ),
    source=documents,
    partitions_def=daily,
)

embeddings = UseCase(
    spec=BatchSpec(
        name="content_embeddings",
        description="A 256-dimension embedding per document for search and clustering.",
        endpoint="/v1/embeddings",
        model="text-embedding-3-small",
        models={"gemini": "gemini-embedding-001"},
        prompt="{title}\n\n{text}",
        parameters={"dimensions": 256},
        max_prompt_chars=24_000,
        owners=("team:trust-safety",),
    ),
    source=documents,
    partitions_def=daily,
)
