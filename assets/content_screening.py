"""Content screening: OpenAI's moderation scores for every document before it is published.

The trust and safety team holds back a document whose result is `flagged`, and reviews the
ones with a high `<category>_score` by hand. Moderations are free, so screening every
document costs nothing but the wait for the batch.
"""

from assets.content_analysis import daily, documents
from batch_pipeline import BatchSpec, UseCase

screening = UseCase(
    spec=BatchSpec(
        name="content_screening",
        description="Moderation flags and per-category scores for each document before publication.",
        endpoint="/v1/moderations",
        model="omni-moderation-latest",
        prompt="{title}\n\n{text}",
        owners=("team:trust-safety",),
    ),
    source=documents,
    partitions_def=daily,
)
