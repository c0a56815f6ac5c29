"""The one place the library reaches into Dagster's private modules, and why.

An asset check evaluation counts as current for a partition (the check's per-partition view in
the UI) only when it names the materialization it checked: `AssetCheckEvaluation` takes
`target_materialization_data`, but Dagster 1.13 exports no public class for that value (checked
in 1.13.27: no public module of the `dagster` package re-exports it, and the evaluation cannot be
built without it). When a Dagster release exports it, import it from `dagster` here and nowhere
else changes.
"""

from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)


def materialization_target(
    storage_id: int, run_id: str, timestamp: float
) -> AssetCheckEvaluationTargetMaterializationData:
    """The `target_materialization_data` of an evaluation that checked this materialization."""
    return AssetCheckEvaluationTargetMaterializationData(storage_id=storage_id, run_id=run_id, timestamp=timestamp)
