"""Patient education leaflets: one plain-language leaflet per medication on a daily list."""

from pathlib import Path

import dagster as dg

from batch_pipeline import BatchSpec, CsvSource, UseCase

medications = CsvSource(
    path=Path(__file__).parents[1] / "data" / "medications.csv",
    key="medication_id",
    partition_column="list_date",
)

spec = BatchSpec(
    name="patient_education",
    description="A plain-language leaflet for each medication on the daily list.",
    model="gpt-4o-mini",
    models={"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"},
    system_prompt=(
        "You write patient education leaflets at a 6th-grade reading level. Be accurate, kind "
        "and brief. Never change a dose; tell the reader to ask their pharmacist or doctor."
    ),
    prompt=(
        "Write a leaflet for {name} ({drug_class}).\n"
        "What it is for: {indication}.\n"
        "How it is usually taken: {dosage_notes}.\n"
        "Sections: What it does, How to take it, Common side effects, When to get help."
    ),
    parameters={"temperature": 0.3, "max_tokens": 600},
    owners=("team:clinical-content",),
)

use_case = UseCase(
    spec=spec,
    source=medications,
    partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-20", timezone="UTC"),
)
