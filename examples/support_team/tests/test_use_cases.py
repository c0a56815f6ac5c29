"""Each use case end to end on the local Batch API, through the project's real Definitions: submit
a partition, let the batch monitor run what it asks for (as the daemon would), and read the
results Parquet back: one succeeded row per source row of the partition, and no other row."""

import dagster as dg
import pyarrow as pa
from batch_pipeline import UseCase, as_defined, asset_key
from batch_pipeline.testing import failure_message, results, run_until_idle, submit

from support_team.definitions import defs
from support_team.llm import account_health, kb_refresh, review_digest, ticket_triage
from support_team.llm.ticket_triage import Category


def run_partition(instance: dg.DagsterInstance, use_case: UseCase, partition: str | None) -> pa.Table:
    """Submit one partition, run until no batch is in flight, and return its results table."""
    submitted = submit(defs, instance, use_case, partition)  # the use case as declared
    assert submitted.success, failure_message(submitted)
    for request, result in run_until_idle(defs, instance):
        assert result.success, (request.job_name, failure_message(result))
    table = results(defs, use_case, partition)
    assert set(table["status"].to_pylist()) == {"succeeded"}, table.select(["status", "error_message"]).to_pylist()
    return table


def keys(table: pa.Table, column: str) -> list[str]:
    return sorted(table[column].to_pylist())


def test_the_definitions_load_with_the_teams_asset_upstream_of_its_use_case():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    triage = as_defined(defs, ticket_triage.use_case)  # its names under the `llm` prefix
    assert graph.get(asset_key(triage, "requests")).parent_keys == {dg.AssetKey(["support", "raw_tickets"])}
    assert {s.name for s in defs.sensors or ()} == {"llm_batch_monitor"}
    # time-window use cases get a (stopped) schedule; the static and unpartitioned ones do not
    assert {s.name for s in defs.schedules or ()} == {"llm__ticket_triage_submit_schedule",
                                                      "llm__review_digest_submit_schedule"}


def test_ticket_triage_over_the_days_ingested_tickets(instance):
    ingest = defs.resolve_job_def("ingest_tickets").execute_in_process(instance=instance, partition_key="2026-11-18")
    assert ingest.success
    table = run_partition(instance, ticket_triage.use_case, "2026-11-18")
    assert keys(table, "ticket_id") == ["T-1006", "T-1007", "T-1008"]
    # the response model's fields are typed columns
    assert set(table["category"].to_pylist()) <= {c.value for c in Category}
    assert all(isinstance(u, int) for u in table["urgency"].to_pylist())


def test_review_digest_reads_one_week_of_the_parquet_dataset(instance):
    table = run_partition(instance, review_digest.use_case, "2026-11-09")  # Monday 9 to Sunday 15
    assert keys(table, "review_id") == ["R-04", "R-05", "R-06", "R-07"]
    assert all(table["output"].to_pylist())


def test_account_health_reads_one_regions_active_accounts(instance):
    table = run_partition(instance, account_health.use_case, "amer")
    assert keys(table, "account_id") == ["A-100", "A-101"]  # Initech churned


def test_kb_refresh_rewrites_every_stale_article_at_once(instance):
    table = run_partition(instance, kb_refresh.use_case, None)
    assert keys(table, "article_id") == ["KB-1", "KB-3", "KB-4"]
