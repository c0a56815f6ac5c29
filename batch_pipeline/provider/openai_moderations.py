"""An OpenAI moderation result (one `results` item of `/v1/moderations`) as typed columns:
`flagged`, `flagged_categories` and one score per category the `openai` SDK scores."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from batch_pipeline.provider.openai_wire import moderation_categories

MODERATION_CATEGORIES = moderation_categories()


def moderation_fields() -> list[pa.Field]:
    """The typed columns of a moderation: `flagged`, `flagged_categories`, one float per score."""
    return [pa.field("flagged", pa.bool_()), pa.field("flagged_categories", pa.list_(pa.string())),
            *(pa.field(f"{stem}_score", pa.float64()) for stem in MODERATION_CATEGORIES.values())]


def parse_moderation(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(column values, None) for a moderation result (one `results` item as JSON), or (None, reason)."""
    if text is None:
        return None, "the answer has no moderation result"
    try:
        result = orjson.loads(text)
        flagged, categories, scores = result["flagged"], result["categories"], result["category_scores"]
        if not isinstance(flagged, bool) or not isinstance(categories, dict) or not isinstance(scores, dict):
            raise TypeError("flagged, categories or category_scores has the wrong type")
        values: dict[str, Any] = {"flagged": flagged,
                                  "flagged_categories": sorted(k for k, v in categories.items() if v is True)}
        for wire, stem in MODERATION_CATEGORIES.items():
            score = scores.get(wire)
            if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
                raise TypeError(f"score of '{wire}' is {type(score).__name__}")
            values[f"{stem}_score"] = None if score is None else float(score)
        return values, None
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return None, f"the moderation result does not have OpenAI's shape: {type(exc).__name__}: {exc}"
