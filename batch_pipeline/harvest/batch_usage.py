"""A batch's own token figures beside the sum of its answered lines.

OpenAI reports `usage` on the batch (what it bills); the results sum the tokens each answered
line reports. The results record carries both, per batch, and a disagreement is a warning: the
provider billed tokens whose answers the results do not hold (a line that could not be read), or
the lines claim tokens the bill does not. The provider's figures are recorded, never used to
price rows: a row's cost comes from its own line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

from batch_pipeline.provider.contract import BatchUsage, ProviderBatch

# Compared between the batch and its lines (the lines carry no reasoning tokens).
COMPARED = ("input_tokens", "cached_input_tokens", "output_tokens")


@dataclass(frozen=True)
class BatchFigures:
    """One batch's reported usage and model, and the usage its answered lines add up to."""

    batch_id: str
    model: str | None
    reported: BatchUsage
    lines: BatchUsage

    def disagreements(self) -> list[str]:
        """Each compared figure that differs, naming the batch and both values."""
        return [f"batch {self.batch_id} reports {name} {getattr(self.reported, name):,}, its answered lines "
                f"{getattr(self.lines, name):,}" for name in COMPARED
                if getattr(self.reported, name) != getattr(self.lines, name)]

    def as_json(self) -> dict[str, object]:
        lines = {name: getattr(self.lines, name) for name in (*COMPARED, "total_tokens")}
        return {"model": self.model, "batch": asdict(self.reported), "answered_lines": lines}


def batch_figures(batch: ProviderBatch, lines: pa.Table) -> BatchFigures | None:
    """`batch`'s figures beside the sum of `lines` (its result rows as parsed, `RESULT_ROWS`) that
    report tokens; None when the provider reports no usage for the batch."""
    if batch.usage is None:
        return None
    answered = pc.is_valid(lines["input_tokens"])

    def total(name: str) -> int:
        return pc.sum(pc.fill_null(lines[name].filter(answered), 0)).as_py() or 0

    input_tokens, output_tokens = total("input_tokens"), total("output_tokens")
    summed = BatchUsage(input_tokens, total("cached_input_tokens"), output_tokens, 0, input_tokens + output_tokens)
    return BatchFigures(batch.id, batch.model, batch.usage, summed)
