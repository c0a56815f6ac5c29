"""Manuscript review: a structured peer-review report for each submitted manuscript."""

from enum import StrEnum
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, Field

from batch_pipeline import BatchSpec, CsvSource, UseCase


class Decision(StrEnum):
    accept = "accept"
    minor_revision = "minor_revision"
    major_revision = "major_revision"
    reject = "reject"


class ManuscriptReview(BaseModel):
    originality: int = Field(description="1 (derivative) to 5 (highly original)")
    methodology: int = Field(description="1 (unsound) to 5 (rigorous)")
    clarity: int = Field(description="1 (unclear) to 5 (very clear)")
    significance: int = Field(description="1 (minor) to 5 (field-changing)")
    decision: Decision
    strengths: list[str]
    weaknesses: list[str]
    summary: str


use_case = UseCase(
    spec=BatchSpec(
        name="manuscript_review",
        description="A structured review of each submitted manuscript: scores, decision, strengths, weaknesses.",
        model="gpt-4o-mini",
        models={"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"},
        system_prompt="You are a rigorous, fair peer reviewer for a multidisciplinary journal.",
        prompt="Review this submission.\n\nTitle: {title}\n\nAbstract: {abstract}\n\nExcerpt: {body_excerpt}",
        response_model=ManuscriptReview,
        parameters={"temperature": 0.2, "max_tokens": 800},
        expected_output_tokens=350,
        owners=("team:editorial",),
    ),
    source=CsvSource(
        path=Path(__file__).parents[1] / "data" / "manuscripts.csv",
        key="manuscript_id",
        partition_column="submitted_date",
    ),
    partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-20", timezone="UTC"),
)
