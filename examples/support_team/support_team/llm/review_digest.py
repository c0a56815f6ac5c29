"""Review digest: what each product review of the week asks for, over the reviews Parquet dataset."""

import dagster as dg
from batch_pipeline import BatchSpec, FileSource, UseCase

from support_team.lake import REVIEWS

use_case = UseCase(
    spec=BatchSpec(
        name="review_digest",
        description="One line on what each review praises or asks for, for the weekly product meeting.",
        model="gpt-4o-mini",
        system_prompt="You summarise customer reviews for a product team, in one factual sentence.",
        prompt="Product: {product}\nRating: {rating}/5\n\n{text}",
        parameters={"temperature": 0.2, "max_tokens": 80},
        expected_output_tokens=40,
        owners=("team:support",),
    ),
    # the week's days are Hive folders (reviewed_on=...): the others are never opened
    source=FileSource(str(REVIEWS), key="review_id", partition_column="reviewed_on"),
    partitions_def=dg.WeeklyPartitionsDefinition(start_date="2026-11-02", day_offset=1, timezone="UTC"),
)
