"""The budget refusal as a table of estimates and limits -> refusal (None: submit)."""

from __future__ import annotations

import pytest

from batch_pipeline.state.budget import PartitionEstimate, budget_refusal

A = PartitionEstimate("2024-01-01", 0.5, "tokens counted")
B = PartitionEstimate("2024-01-02", 2.0, "earlier harvests")

OVER_SPEC = ("uc 2024-01-02: estimated cost $2.0000 (earlier harvests) is over the spec's max_cost_usd "
             "$1.0000; nothing was uploaded")
OVER_RUN = "uc: estimated cost $2.5000 of 2 partitions is over max_run_cost_usd $2.0000; nothing was uploaded"


@pytest.mark.parametrize(
    ("estimates", "spec_limit", "run_limit", "expected"),
    [
        ([A, B], None, None, None),  # no limits
        ([A, B], 2.0, 2.5, None),  # at the limit is within it
        ([A, B], 1.0, None, OVER_SPEC),  # the partition over the spec's limit is named
        ([A, B], 1.0, 0.1, OVER_SPEC),  # a partition's refusal comes first
        ([B, PartitionEstimate("p3", 9.0, "x")], 1.0, None, OVER_SPEC),  # the first one over it
        ([A, B], None, 2.0, OVER_RUN),
        ([A, B], 5.0, 2.0, OVER_RUN),
        ([], 1.0, 0.0, None),  # nothing to send
        ([A], None, 0.0, "uc: estimated cost $0.5000 of 1 partitions is over max_run_cost_usd $0.0000; "
                         "nothing was uploaded"),
    ],
)
def test_budget_refusal(estimates: list[PartitionEstimate], spec_limit: float | None, run_limit: float | None,
                        expected: str | None) -> None:
    assert budget_refusal("uc", estimates, spec_limit, run_limit) == expected
