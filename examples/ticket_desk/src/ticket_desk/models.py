"""The answer ticket_triage asks for (`response_model: ticket_desk.models.Triage` in its
defs.yaml): each field lands as a typed column of the results."""

from enum import StrEnum

from pydantic import BaseModel, Field


class Category(StrEnum):
    billing = "billing"
    account = "account"
    bug = "bug"
    other = "other"


class Triage(BaseModel):
    category: Category
    urgency: int = Field(description="1 (can wait a week) to 4 (answer within the hour)")
    suggested_reply: str
