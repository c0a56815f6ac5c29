"""The team's own ingestion: each day's tickets from the helpdesk export, as a pandas DataFrame
(the upstream asset of defs/ticket_triage)."""

from pathlib import Path

import dagster as dg
import pandas as pd

HELPDESK_EXPORT = Path(__file__).parents[2] / "data" / "tickets.csv"


@dg.asset(key=["support", "raw_tickets"], group_name="support", kinds={"pandas"},
          partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-16"))
def raw_tickets(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """The tickets opened on the partition's day, as the helpdesk exports them."""
    tickets = pd.read_csv(HELPDESK_EXPORT, dtype=str)
    return tickets[tickets["opened_on"] == context.partition_key].reset_index(drop=True)
