"""Ticket triage: a category, an urgency and a first reply for each day's tickets."""

from enum import StrEnum

from batch_pipeline import AssetSource, BatchSpec, UseCase
from pydantic import BaseModel, Field

from support_team.ingestion import daily, raw_tickets


class Category(StrEnum):
    billing = "billing"
    account = "account"
    bug = "bug"
    performance = "performance"
    cancellation = "cancellation"
    other = "other"


class Triage(BaseModel):
    category: Category
    urgency: int = Field(description="1 (can wait a week) to 4 (answer within the hour)")
    suggested_reply: str


use_case = UseCase(
    spec=BatchSpec(
        name="ticket_triage",
        description="Category, urgency and a suggested first reply for every ticket of the day.",
        model="gpt-4o-mini",
        system_prompt="You triage customer support tickets for a B2B software company.",
        prompt="Channel: {channel}\nSubject: {subject}\n\n{body}",
        response_model=Triage,
        parameters={"temperature": 0, "max_tokens": 300},
        expected_output_tokens=120,
        owners=("team:support",),
    ),
    source=AssetSource(raw_tickets.key, key="ticket_id"),  # the day's rows, loaded by its IO manager
    partitions_def=daily,
)
