"""The one code location: every use case, the batch monitor and the resources."""

import dagster as dg

from assets import ad_copy, content_analysis, manuscript_review, patient_education
from batch_pipeline import BatchAPIResource, WarehouseResource, build_batch_monitor

USE_CASES = [
    manuscript_review.use_case,
    patient_education.use_case,
    ad_copy.use_case,
    content_analysis.classification,
    content_analysis.embeddings,
]

defs = dg.Definitions.merge(
    *(uc.definitions() for uc in USE_CASES),
    dg.Definitions(
        sensors=[build_batch_monitor(USE_CASES)],
        resources={"batch_api": BatchAPIResource(), "warehouse": WarehouseResource()},
    ),
)
