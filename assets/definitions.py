"""The one code location: every use case, the batch monitor and the resources."""

from assets import (
    ad_copy,
    content_analysis,
    content_screening,
    manuscript_review,
    patient_education,
)
from batch_pipeline import definitions_for

USE_CASES = [
    manuscript_review.use_case,
    patient_education.use_case,
    ad_copy.use_case,
    content_analysis.classification,
    content_analysis.embeddings,
    content_screening.screening,
]

defs = definitions_for(USE_CASES)
