"""Materialization metadata of the requests, batches and results assets, per partition."""

from __future__ import annotations

import dataclasses
from typing import Any

import dagster as dg

from batch_pipeline.cost import Estimate, UsageRecord
from batch_pipeline.dagster.preview import markdown_table
from batch_pipeline.dagster.state_store import state_metadata
from batch_pipeline.dagster.usage_history import usage_metadata
from batch_pipeline.harvest.partition import Harvest
from batch_pipeline.provider.submission import Submitted
from batch_pipeline.requests.partition import BuiltRequests
from batch_pipeline.state.partition_state import PartitionState
from batch_pipeline.use_case import UseCase


def estimate_metadata(cost: Estimate) -> dict[str, dg.MetadataValue]:
    """The estimate shown before anything is sent, with the basis it used."""
    return {
        "estimated_input_tokens": dg.MetadataValue.int(cost.input_tokens),
        "estimated_output_tokens": dg.MetadataValue.int(cost.output_tokens),
        "estimated_cost_usd": dg.MetadataValue.float(round(cost.cost_usd, 6)),
        "estimate_basis": dg.MetadataValue.text(cost.basis.describe()),
    }


def requests_metadata(uc: UseCase, partition: str, built: BuiltRequests, cost: Estimate) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": built.rows,
        **estimate_metadata(cost),
        "requests": built.to_send,
        "rejected": built.rejected,
        "kept_answers": built.kept,
        "shards": dg.MetadataValue.json(built.shards),
        "folder": dg.MetadataValue.path(str(built.folder)),
        "rejected_preview": dg.MetadataValue.md(markdown_table(
            built.rejected_preview.select([*uc.source.key_columns, "error_code", "error_message"]), 10,
            total=built.rejected)),
    }
    if built.rows == 0:
        metadata["note"] = f"partition {partition} has no source rows"
    return metadata


def batches_metadata(state: PartitionState, sent: Submitted, provider: str) -> dict[str, Any]:
    """What this run sent or reused; each submission's status is the one it had when submitted
    (`status_at_submit`): the batch monitor's observations and the results record say how it went."""
    new = sum(not s.reused for s in sent.submissions)
    return {
        **state_metadata(state),
        "submissions": dg.MetadataValue.json([_at_submit(dataclasses.asdict(s)) for s in sent.submissions]),
        "new_batches": new,
        "reused_batches": len(sent.submissions) - new,
        "kept_batches": len(state.kept),
        "queued_shards": len(sent.queued),
        "provider": provider,
    }


def _at_submit(submission: dict[str, Any]) -> dict[str, Any]:
    return {("status_at_submit" if k == "status" else k): v for k, v in submission.items()}


def batch_statuses(state: PartitionState) -> dict[str, dg.MetadataValue]:
    """Each batch behind the partition's answers and its status, as of this record."""
    return {"batches": dg.MetadataValue.json({s.batch_id: s.status for s in state.batches})}


def results_metadata(uc: UseCase, harvest: Harvest, estimated_cost_usd: float,
                     usage: tuple[UsageRecord, str]) -> dict[str, Any]:
    """The harvest's record; `usage` is what later estimates learn from and the run whose harvest
    it comes from (`usage_history.recorded_usage`)."""
    preview = harvest.preview
    note = {"note": f"partition {harvest.state.partition} has no source rows"} if not harvest.index.num_rows else {}
    return {
        **note,
        "dagster/row_count": harvest.index.num_rows,
        **{f"status/{k}": v for k, v in harvest.counts.items()},
        **state_metadata(harvest.state),
        **batch_statuses(harvest.state),
        # A rerun that kept every answer sent nothing (its state names no batch): these name the
        # batches that produced the answers the Parquet holds now.
        "answered_by": dg.MetadataValue.json(sorted(harvest.answered_by)),
        "retrying": harvest.retrying,
        "parquet": dg.MetadataValue.path(str(harvest.path)),
        "estimated_cost_usd": dg.MetadataValue.float(round(estimated_cost_usd, 6)),
        "cost_usd": dg.MetadataValue.float(round(harvest.cost_usd, 6)),
        **usage_metadata(uc, *usage),
        "provider_files_deleted": harvest.files_deleted,
        **batch_usage_metadata(harvest),
        "preview": dg.MetadataValue.md(
            markdown_table(preview.select([*uc.source.key_columns, "status", "output", "error_message"]), 5)
            if preview is not None else "_no rows_"
        ),
    }


def batch_usage_metadata(harvest: Harvest) -> dict[str, Any]:
    """Each batch's own usage (where the provider reports it) beside the sum of its answered
    lines; `batch_usage_warning` when they disagree (`harvest/batch_usage.py`)."""
    if not harvest.figures:
        return {}
    figures = sorted(harvest.figures.values(), key=lambda f: f.batch_id)
    disagreements = [text for f in figures for text in f.disagreements()]
    warning = {"batch_usage_warning": dg.MetadataValue.text(
        "the provider's usage disagrees with the answered lines: " + "; ".join(disagreements))} if disagreements else {}
    return {"batch_usage": dg.MetadataValue.json({f.batch_id: f.as_json() for f in figures}), **warning}


def waiting_metadata(state: PartitionState, reason: str) -> dict[str, Any]:
    """A results step that found batches still running: the partition waits, nothing is written."""
    return {**state_metadata(state), **batch_statuses(state), "waiting": reason}
