"""Knowledge-base refresh: a rewrite of every help article not reviewed this year (no partitions)."""

from batch_pipeline import BatchSpec, SqlSource, UseCase

from support_team.lake import SUPPORT_DB

use_case = UseCase(
    spec=BatchSpec(
        name="kb_refresh",
        description="A clearer rewrite of each stale help-center article, for the docs team to review.",
        model="gpt-4o-mini",
        system_prompt="You edit help-center articles: plain words, numbered steps, nothing invented.",
        prompt="Rewrite this article.\n\nTitle: {title}\n\n{body}",
        parameters={"temperature": 0.3, "max_tokens": 400},
        expected_output_tokens=200,
        owners=("team:support",),
    ),
    source=SqlSource(
        "SELECT article_id, title, body FROM articles WHERE last_reviewed < DATE '2026-01-01'",
        key="article_id",
        duckdb=SUPPORT_DB,
    ),
)
