"""Each YAML use case end to end on the local Batch API, loaded with Dagster's component tree as
`dg` loads it: submit a partition, let the use case's batch monitor run what it asks for (as the
daemon would), and read the results Parquet back: one succeeded row per source row of the
partition, and no other row."""

import dagster as dg
import pyarrow as pa
from batch_pipeline import BatchUseCase
from batch_pipeline.testing import failure_message, results, run_until_idle, submit

from ticket_desk.models import Category


def run_partition(tree: dg.ComponentTree, instance: dg.DagsterInstance, folder: str, partition: str,
                  upstream: str | None = None) -> pa.Table:
    """Submit one partition of the component in `defs/<folder>`, run until no batch is in flight,
    and return its results table. The component's definitions hold its one monitor; `upstream`
    (a defs folder) adds the assets it reads."""
    component = tree.load_component(folder)
    assert isinstance(component, BatchUseCase)
    uc = component.use_case(tree.defs_module_path / folder)
    defs = tree.build_defs_at_path(folder)
    if upstream is not None:
        defs = dg.Definitions.merge(defs, tree.build_defs_at_path(upstream))
    submitted = submit(defs, instance, f"{uc.name}_submit", partition)
    assert submitted.success, failure_message(submitted)
    for request, result in run_until_idle(defs, instance):
        assert result.success, (request.job_name, failure_message(result))
    table = results(defs, uc, partition)
    assert set(table["status"].to_pylist()) == {"succeeded"}, table.select(["status", "error_message"]).to_pylist()
    return table


def test_the_location_loads_with_one_monitor_per_use_case(tree: dg.ComponentTree):
    defs = tree.build_defs()
    dg.Definitions.validate_loadable(defs)
    assert {s.name for s in defs.sensors or ()} == {"llm__ticket_triage_batch_monitor",
                                                    "llm__article_review_batch_monitor"}
    assert {s.name for s in defs.schedules or ()} == {"llm__ticket_triage_submit_schedule"}
    graph = defs.resolve_asset_graph()
    requests = graph.get(dg.AssetKey(["llm", "ticket_triage", "requests"]))
    assert requests.parent_keys == {dg.AssetKey(["support", "raw_tickets"])}
    # post_processing in defs.yaml reached every asset of the use case
    results_spec = defs.resolve_assets_def(dg.AssetKey(["llm", "ticket_triage", "results"])).specs_by_key
    assert next(iter(results_spec.values())).owners == ["team:support"]


def test_ticket_triage_over_the_days_ingested_tickets(tree: dg.ComponentTree, instance: dg.DagsterInstance):
    ingest = tree.build_defs_at_path("ingest")
    assert dg.materialize(ingest.assets or [], instance=instance, partition_key="2026-11-18").success
    table = run_partition(tree, instance, "ticket_triage", "2026-11-18", upstream="ingest")
    assert sorted(table["ticket_id"].to_pylist()) == ["T-1006", "T-1007", "T-1008"]
    # the response model's fields are typed columns
    assert set(table["category"].to_pylist()) <= {c.value for c in Category}
    assert all(isinstance(u, int) for u in table["urgency"].to_pylist())


def test_article_review_reads_one_locale_of_its_csv(tree: dg.ComponentTree, instance: dg.DagsterInstance):
    table = run_partition(tree, instance, "article_review", "de")
    assert sorted(table["article_id"].to_pylist()) == ["KB-3", "KB-5"]
    assert all(table["output"].to_pylist())
