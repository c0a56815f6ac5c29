"""Account health: a churn-risk note per active account, one region at a time, from DuckDB."""

import dagster as dg
from batch_pipeline import BatchSpec, SqlSource, UseCase

from support_team.lake import SUPPORT_DB

use_case = UseCase(
    spec=BatchSpec(
        name="account_health",
        description="A churn-risk note and a next step for each active account, for the region's CSMs.",
        model="gpt-4o-mini",
        system_prompt="You are a customer success lead. Be brief and concrete.",
        prompt="Account {name} ({plan} plan, {seats} seats).\nLast contact: {last_contact}\n\n"
        "How likely is this account to churn, and what should its CSM do this week?",
        parameters={"temperature": 0.2, "max_tokens": 150},
        expected_output_tokens=80,
        owners=("team:customer-success",),
    ),
    source=SqlSource(
        "SELECT account_id, name, region, plan, seats, last_contact FROM accounts WHERE status = 'active'",
        key="account_id",
        partition_column="region",
        duckdb=SUPPORT_DB,
    ),
    partitions_def=dg.StaticPartitionsDefinition(["amer", "emea", "apac"]),
)
