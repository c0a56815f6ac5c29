"""Moderations end to end: the content screening sample through Dagster to typed Parquet columns."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assets.content_screening import screening
from batch_pipeline import definitions_for
from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.provider.openai_moderations import MODERATION_CATEGORIES
from batch_pipeline.sources.csv_source import read_partition
from tests.helpers import run_until_idle, submit

PARTITION = "2026-11-21"


def test_content_screening_lands_flags_and_scores(instance, pipeline_env):
    defs = definitions_for([screening])
    assert submit(defs, instance, submit_job(screening).name, PARTITION).success
    run_until_idle(defs, instance)

    path = pipeline_env / "warehouse" / screening.name / "results" / f"partition={PARTITION}" / "results.parquet"
    table = pq.read_table(path)
    source = read_partition(screening.source, PARTITION)
    assert table.num_rows == source.num_rows
    assert table.schema.field("flagged").type == pa.bool_()
    assert table.schema.field("flagged_categories").type == pa.list_(pa.string())
    scores = [f"{stem}_score" for stem in MODERATION_CATEGORIES.values()]
    assert "self_harm_intent_score" in scores and "harassment_threatening_score" in scores
    succeeded = table.filter(pc.equal(table["status"], "succeeded"))
    assert succeeded.num_rows >= source.num_rows - 2  # a row may be rejected for bad input
    for column in ["flagged", *scores]:
        assert succeeded[column].null_count == 0, column
    for column in scores:
        assert table.schema.field(column).type == pa.float64()
        assert 0 <= pc.min(succeeded[column]).as_py() and pc.max(succeeded[column]).as_py() <= 1
    assert succeeded["model"].to_pylist() == ["omni-moderation-latest"] * succeeded.num_rows
    flagged = succeeded.filter(succeeded["flagged"])
    assert all(flagged["flagged_categories"].to_pylist())  # a flagged document names its categories


def test_screening_is_the_same_on_every_run(instance, pipeline_env):
    """Deterministic scores: resubmitting the partition reuses the batch and lands the same Parquet."""
    defs = definitions_for([screening])
    path = pipeline_env / "warehouse" / screening.name / "results" / f"partition={PARTITION}" / "results.parquet"
    assert submit(defs, instance, submit_job(screening).name, PARTITION).success
    run_until_idle(defs, instance)
    first = pq.read_table(path, columns=["doc_id", "flagged", "violence_score"]).to_pylist()
    assert submit(defs, instance, submit_job(screening).name, PARTITION).success
    run_until_idle(defs, instance)
    assert pq.read_table(path, columns=["doc_id", "flagged", "violence_score"]).to_pylist() == first
