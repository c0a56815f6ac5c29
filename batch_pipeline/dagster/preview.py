"""Small markdown previews of Arrow tables for the Dagster UI."""

from __future__ import annotations

import pyarrow as pa

_CELL_CHARS = 80


def markdown_table(table: pa.Table, rows: int, total: int | None = None) -> str:
    """The first `rows` rows as a markdown table, cells shortened to stay readable (`total`: the
    rows there are, when `table` holds only the first ones)."""
    if table.num_rows == 0:
        return "_no rows_"
    header = "| " + " | ".join(table.column_names) + " |"
    rule = "|" + "---|" * table.num_columns
    body = [
        "| " + " | ".join(_cell(row[c]) for c in table.column_names) + " |"
        for row in table.slice(0, rows).to_pylist()
    ]
    total = table.num_rows if total is None else total
    more = [f"\n_{total - rows} more rows_"] if total > rows else []
    return "\n".join([header, rule, *body, *more])


def _cell(value: object) -> str:
    text = "" if value is None else " ".join(str(value).split())
    if len(text) > _CELL_CHARS:
        text = text[: _CELL_CHARS - 1] + "…"
    return text.replace("|", "\\|")
