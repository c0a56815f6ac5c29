"""The one code location: every use case, the batch monitor and the resources.

Runs execute in one process (`in_process_executor`), also "Materialize all" in the UI: every step
here waits on I/O, and a process per step would cost more start-up than the work takes.
`BATCH_PIPELINE_WEBHOOKS=1` turns on the monitor's webhook mode (README, "Webhooks").
"""

import os

import dagster as dg

from assets import (
    ad_copy,
    content_analysis,
    content_screening,
    manuscript_review,
    patient_education,
    product_images,
)
from batch_pipeline import definitions_for

USE_CASES = [
    manuscript_review.use_case,
    patient_education.use_case,
    ad_copy.use_case,
    content_analysis.classification,
    content_analysis.embeddings,
    content_screening.screening,
    product_images.use_case,
]

WEBHOOKS = os.environ.get("BATCH_PIPELINE_WEBHOOKS") == "1"

defs = dg.Definitions.merge(definitions_for(USE_CASES, webhooks=WEBHOOKS),
                            dg.Definitions(executor=dg.in_process_executor))
