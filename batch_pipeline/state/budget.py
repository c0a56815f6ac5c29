"""The budget refusal (docs/decisions.md, "Budget"): whether a submission is refused before
anything is uploaded, because a partition or the whole run is estimated over its limit.

Pure: the batches asset reads each partition's request index, estimates its cost (from the use
case's earlier harvests, as the requests asset did) and passes the estimates in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionEstimate:
    """A partition's estimated cost at batch prices, and how it was estimated (for people)."""

    partition: str
    cost_usd: float
    basis: str


def budget_refusal(
    use_case: str, estimates: Sequence[PartitionEstimate], max_cost_usd: float | None,
    max_run_cost_usd: float | None,
) -> str | None:
    """Why the run must not submit (None: it may). The first partition over the spec's
    `max_cost_usd` is named; else the run is refused when its total is over `max_run_cost_usd`."""
    for estimate in estimates:
        if max_cost_usd is not None and estimate.cost_usd > max_cost_usd:
            return (f"{use_case} {estimate.partition}: estimated cost ${estimate.cost_usd:.4f} ({estimate.basis}) "
                    f"is over the spec's max_cost_usd ${max_cost_usd:.4f}; nothing was uploaded")
    total = sum(e.cost_usd for e in estimates)
    if max_run_cost_usd is not None and total > max_run_cost_usd:
        return (f"{use_case}: estimated cost ${total:.4f} of {len(estimates)} partitions is over "
                f"max_run_cost_usd ${max_run_cost_usd:.4f}; nothing was uploaded")
    return None
