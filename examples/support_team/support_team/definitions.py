"""The code location: the team's own assets, and its LLM use cases under the `llm` key prefix."""

import dagster as dg
from batch_pipeline import definitions_for

from support_team.ingestion import raw_tickets
from support_team.llm import account_health, kb_refresh, review_digest, ticket_triage

USE_CASES = [
    ticket_triage.use_case,  # over the team's asset, daily
    review_digest.use_case,  # over a Parquet dataset, weekly
    account_health.use_case,  # over a SQL query, one partition per region
    kb_refresh.use_case,  # over a SQL query, unpartitioned
]

ingest_tickets = dg.define_asset_job("ingest_tickets", selection=[raw_tickets.key])

defs = dg.Definitions.merge(
    dg.Definitions(assets=[raw_tickets], jobs=[ingest_tickets]),
    # every asset, job and the batch monitor under `llm`: llm/ticket_triage/results, llm_batch_monitor
    definitions_for(USE_CASES, key_prefix="llm"),
)
