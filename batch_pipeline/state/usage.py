"""Which harvest a partition's recorded usage comes from (docs/decisions.md, "Learning from
harvests"). Estimates learn only from harvests: a results record whose run answered no request
(a re-run where every row kept its answer) carries the figures of the partition's last harvest
that did, and names that run, so the re-run neither resets the usage nor replaces the basis."""

from __future__ import annotations


def usage_from(answered_now: int, this_run: str, earlier_run: str | None) -> str:
    """The run whose figures the record carries: this run when it answered requests, else the
    earlier harvest's (`earlier_run`, None: no record with answered requests), else this run
    (its figures are zero; estimates skip records that answered nothing)."""
    if answered_now or earlier_run is None:
        return this_run
    return earlier_run
