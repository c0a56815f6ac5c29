"""`batch_pipeline.BatchUseCase`, the use case as a Dagster Component, through Dagster's own
component testing sandbox (`create_defs_folder_sandbox`): scaffolded, filled in as YAML, loaded
and built the way `dg` loads a project's `defs/` folder.

What a YAML block says builds the same `UseCase` the Python declaration builds (every source
kind, every partitioning); a misspelt field or a wrong type names the file, the line and the
field; two instances in one code location each get their own monitor and each partition is
harvested once, by its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox
from pydantic import BaseModel

from batch_pipeline import (
    AssetSource,
    BatchSpec,
    BatchUseCase,
    CsvSource,
    FileSource,
    SqlSource,
    UseCase,
)
from batch_pipeline.dagster.component import BatchUseCaseScaffolder, SpecModel
from batch_pipeline.testing import failure_message, results, run_until_idle, submit

TICKETS = "ticket_id,subject,body,created_date\nT-1,Login fails,Cannot log in,2026-11-02\n" \
          "T-2,Refund,Charged twice,2026-11-02\nT-3,Export,CSV export is empty,2026-11-03\n"


class Triage(BaseModel):
    team: str
    urgency: int


SPEC = {"name": "triage", "model": "gpt-4o-mini", "prompt": "{subject}: {body}"}


@contextmanager
def sandbox() -> Iterator[DefsFolderSandbox]:
    with create_defs_folder_sandbox() as box:
        yield box


def declare(box: DefsFolderSandbox, folder: str, attributes: dict[str, Any], **top: Any) -> Path:
    """A `defs/<folder>/defs.yaml` as `dg scaffold defs` writes it, then filled in."""
    return box.scaffold_component(BatchUseCase, defs_path=folder, defs_yaml_contents={
        "type": "batch_pipeline.BatchUseCase", "attributes": attributes, **top})


def loaded(box: DefsFolderSandbox, path: Path) -> UseCase:
    with box.load_component_and_build_defs(defs_path=path) as (component, _):
        assert isinstance(component, BatchUseCase)
        return component.use_case(path)


def test_the_scaffolded_defs_yaml_is_commented_and_loads_once_its_table_exists():
    with sandbox() as box:
        path = box.scaffold_component(BatchUseCase, defs_path="ticket_triage")
        text = (path / "defs.yaml").read_text()
        assert "name: ticket_triage" in text and "# sql:" in text and "# post_processing:" in text
        (path / "tickets.csv").write_text(TICKETS)
        with box.load_component_and_build_defs(defs_path=path) as (_, defs):
            keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
            assert keys == {f"ticket_triage/{stage}" for stage in ("source", "requests", "batches", "results")}
            assert [s.name for s in defs.sensors or ()] == ["ticket_triage_batch_monitor"]
            assert [s.name for s in defs.schedules or ()] == ["ticket_triage_submit_schedule"]
        # appended to an existing defs.yaml (`dg scaffold defs` on a folder that has one): a second document
        BatchUseCaseScaffolder().scaffold(dg.ScaffoldRequest(
            type_name="batch_pipeline.BatchUseCase", target_path=path / "defs.yaml", scaffold_format="yaml",
            project_root=box.project_root, params=None, append=True))
        documents = (path / "defs.yaml").read_text().split("\n---\n")
        assert len(documents) == 2 and "name: ticket_triage" in documents[1]


CASES: list[tuple[str, dict[str, Any], Callable[[Path, Path], dict[str, Any]]]] = [
    ("csv_daily_new_york",
     {"source": {"csv": {"path": "tickets.csv", "key": "ticket_id", "partition_column": "created_date",
                         "null_values": ["n/a"], "delimiter": ";"}},
      "partitions": {"daily": {"start_date": "2026-11-01", "timezone": "America/New_York", "hour_offset": 6}}},
     lambda folder, root: {"source": CsvSource(folder / "tickets.csv", key="ticket_id", partition_column="created_date",
                          null_values=("n/a",), delimiter=";"),
      "partitions_def": dg.DailyPartitionsDefinition("2026-11-01", timezone="America/New_York", hour_offset=6)}),
    ("parquet_dataset_weekly",
     {"source": {"file": {"path": "s3://lake/reviews/", "key": ["site", "review_id"], "partition_column": "day",
                          "storage_options": {"anon": True}}},
      "partitions": {"weekly": {"start_date": "2026-11-02", "day_offset": 1}}},
     lambda folder, root: {"source": FileSource("s3://lake/reviews/", key=["site", "review_id"], partition_column="day",
                           storage_options={"anon": True}),
      "partitions_def": dg.WeeklyPartitionsDefinition("2026-11-02", day_offset=1)}),
    ("jsonl_file_unpartitioned",
     {"source": {"file": {"path": "/data/articles.jsonl", "key": "article_id", "format": "jsonl"}}},
     lambda folder, root: {"source": FileSource("/data/articles.jsonl", key="article_id", format="jsonl")}),
    ("duckdb_static",
     {"source": {"sql": {"query": "select * from accounts", "key": "account_id", "partition_column": "region",
                         "duckdb": "shop.duckdb"}},
      "partitions": {"static": ["amer", "emea"]}},
     lambda folder, root: {"source": SqlSource("select * from accounts", key="account_id", partition_column="region",
                          duckdb=str(folder / "shop.duckdb")),
      "partitions_def": dg.StaticPartitionsDefinition(["amer", "emea"])}),
    ("postgres_dynamic",
     {"source": {"sql": {"query": "select * from orders", "key": "order_id", "partition_column": "customer",
                         "postgres_url_env": "SHOP_DB_URL"}},
      "partitions": {"dynamic": "customers"}},
     lambda folder, root: {"source": SqlSource("select * from orders", key="order_id", partition_column="customer",
                          postgres_url_env="SHOP_DB_URL"),
      "partitions_def": dg.DynamicPartitionsDefinition(name="customers")}),
    ("asset_multi",
     {"source": {"asset": {"asset_key": "raw/tickets", "key": "ticket_id",
                           "partition_column": {"day": "opened_at", "site": "site"}}},
      "partitions": {"multi": {"day": {"daily": {"start_date": "2026-11-01"}}, "site": {"static": ["a", "b"]}}}},
     lambda folder, root: {"source": AssetSource(["raw", "tickets"], key="ticket_id",
                                                 partition_column={"day": "opened_at", "site": "site"}),
      "partitions_def": dg.MultiPartitionsDefinition({"day": dg.DailyPartitionsDefinition("2026-11-01"),
                                                      "site": dg.StaticPartitionsDefinition(["a", "b"])})}),
    ("asset_weekly_over_days",
     {"source": {"asset": {"asset_key": ["raw", "tickets"], "key": "ticket_id",
                           "partition_mapping": {"type": "time_window", "start_offset": -1}}},
      "partitions": {"monthly": {"start_date": "2026-11-01", "timezone": "Europe/Paris"}}},
     lambda folder, root: {"source": AssetSource(["raw", "tickets"], key="ticket_id",
                            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1)),
      "partitions_def": dg.MonthlyPartitionsDefinition("2026-11-01", timezone="Europe/Paris")}),
    ("csv_cron_hourly_minutes",
     {"source": {"csv": {"path": "{{ context.project_root }}/tickets.csv", "key": "ticket_id",
                         "partition_column": "created_date"}},
      "partitions": {"cron": {"start_date": "2026-11-02", "cron_schedule": "0 6 * * 1-5", "fmt": "%Y-%m-%d"}}},
     lambda folder, root: {"source": CsvSource(root / "tickets.csv", key="ticket_id", partition_column="created_date"),
      "partitions_def": dg.TimeWindowPartitionsDefinition(start="2026-11-02", cron_schedule="0 6 * * 1-5",
                                                          fmt="%Y-%m-%d")}),
]


@pytest.mark.parametrize(("name", "attributes", "python"), CASES, ids=[c[0] for c in CASES])
def test_a_yaml_block_builds_the_use_case_python_declares(name: str, attributes: dict, python: Callable):
    with sandbox() as box:
        path = declare(box, name, {"spec": SPEC, **attributes})
        uc = loaded(box, path)
        declared = python(path, box.project_root)
    assert uc == UseCase(spec=BatchSpec(**SPEC), source=declared["source"],
                         partitions_def=declared.get("partitions_def"))


def test_the_yaml_spec_has_every_field_of_batch_spec():
    """A field added to BatchSpec and forgotten here would be sayable in Python only."""
    assert set(SpecModel.model_fields) == {f.name for f in dataclasses.fields(BatchSpec)}


def test_every_spec_field_key_prefix_and_resource_keys(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRIAGE_MODEL", "gpt-4.1-mini")
    spec = {"name": "triage", "model": "{{ env.TRIAGE_MODEL }}", "models": {"anthropic": "claude-haiku-4-5"},
            "system_prompt": "You triage tickets.", "prompt": "{subject}: {body}",
            "endpoint": "/v1/responses", "parameters": {"max_output_tokens": 50},
            "response_model": f"{__name__}.Triage", "description": "Triage", "owners": ["team:support"],
            "expected_output_tokens": 20, "price_per_million_tokens": [0.1, 0.4], "max_cost_usd": 2.5,
            "max_invalid_output_rate": 0.1, "max_refusal_rate": 0.05, "max_attempts": 2,
            "retry_backoff_seconds": 5, "max_prompt_chars": 1000, "max_requests_per_shard": 100,
            "max_shard_bytes": 1_000_000}
    with sandbox() as box:
        path = declare(box, "triage", {
            "spec": spec, "source": {"csv": {"path": "t.csv", "key": "ticket_id"}},
            "key_prefix": ["support", "llm"], "resource_keys": {"warehouse": "llm_warehouse", "batch_api": "llm_api"}})
        uc = loaded(box, path)
        with box.load_component_and_build_defs(defs_path=path) as (_, defs):
            assert set(defs.resources or {}) == {"llm_warehouse", "llm_api"}
            assert [s.name for s in defs.sensors or ()] == ["support__llm__triage_batch_monitor"]
    python = BatchSpec(**{**spec, "model": "gpt-4.1-mini", "response_model": Triage, "owners": ("team:support",),
                          "price_per_million_tokens": (0.1, 0.4)})
    assert uc.spec == python
    assert uc.key_prefix == ("support", "llm") and uc.name == "support__llm__triage"
    assert uc.resource_keys.warehouse == "llm_warehouse" and uc.resource_keys.batch_api == "llm_api"


@pytest.mark.parametrize(("attributes", "field"), [
    ({"spec": {**SPEC, "modle": "x"}, "source": {"csv": {"path": "t.csv", "key": "id"}}}, "spec.modle"),
    ({"spec": {**SPEC, "max_attempts": "three"}, "source": {"csv": {"path": "t.csv", "key": "id"}}},
     "spec.max_attempts"),
    ({"spec": SPEC, "source": {"csv": {"pth": "t.csv", "key": "id"}}}, "source.csv.pth"),
    ({"spec": SPEC, "source": {"csv": {"path": "t.csv", "key": "id"}}, "partitions": {"daly": {}}},
     "partitions.daly"),
], ids=["misspelt", "wrong_type", "misspelt_source_field", "misspelt_partitioning"])
def test_a_misspelt_or_mistyped_field_names_the_file_line_and_field(attributes: dict, field: str):
    with sandbox() as box:
        path = declare(box, "broken", attributes)
        with pytest.raises(Exception) as caught:  # noqa: B017 Dagster wraps pydantic's ValidationError
            with box.load_component_and_build_defs(defs_path=path):
                pass
        lines = (path / "defs.yaml").read_text().splitlines()
    # Dagster names the line of the field's group (`spec:`, `source:`) and the field's path
    parent, name = field.split(".")[0], field.rsplit(".", 1)[-1]
    line = next(n for n, text in enumerate(lines, 1) if text.strip().startswith(f"{parent}:"))
    named = [m for m in _messages(caught.value) if f"{path / 'defs.yaml'}:{line}" in m and name in m]
    assert named, _messages(caught.value)


def test_what_only_the_library_can_check_names_the_file_and_field():
    with sandbox() as box:
        bad_model = declare(box, "bad_model", {"spec": {**SPEC, "response_model": "nowhere.Missing"},
                                               "source": {"csv": {"path": "t.csv", "key": "id"}}})
        two_sources = declare(box, "two_sources", {"spec": SPEC, "source": {"csv": {"path": "t.csv", "key": "id"},
                                                                            "sql": {"query": "q", "key": "id"}}})
        bad_resource = declare(box, "bad_resource", {"spec": SPEC, "source": {"csv": {"path": "t.csv", "key": "id"}},
                                                     "resources": {"batch_api": {"opnai": {"max_retries": 8}}}})
        for path, words in ((bad_model, "spec.response_model 'nowhere.Missing'"),
                            (two_sources, "exactly one of csv, file, sql, asset; got ['csv', 'sql']"),
                            (bad_resource, 'resources.batch_api: Incorrect values passed')):
            with pytest.raises(Exception) as caught:  # noqa: B017 Dagster wraps the component's error
                with box.load_component_and_build_defs(defs_path=path):
                    pass
            assert any(str(path / "defs.yaml") in m and words in m for m in _messages(caught.value))


def _messages(error: BaseException | None) -> list[str]:
    out = []
    while error is not None:
        out.append(str(error))
        error = error.__cause__ or error.__context__
    return out


def test_two_instances_in_one_location_each_harvest_their_own_partitions_once(instance: dg.DagsterInstance):
    """Two use cases in one code location (one with Dagster's post_processing): the location
    loads, each has its own monitor, and each partition is harvested once, by its own monitor."""
    with sandbox() as box:
        triage = declare(box, "triage", {
            "spec": SPEC, "source": {"csv": {"path": "tickets.csv", "key": "ticket_id",
                                             "partition_column": "created_date"}},
            "partitions": {"daily": {"start_date": "2026-11-01"}}},
            post_processing={"assets": [{"target": "*", "attributes": {"owners": ["team:support"],
                                                                       "tags": {"domain": "support"}}}]})
        (triage / "tickets.csv").write_text(TICKETS)
        digest = declare(box, "digest", {
            "spec": {**SPEC, "name": "digest", "prompt": "Summarise: {body}"},
            "source": {"file": {"path": "tickets.parquet", "key": "ticket_id"}}, "key_prefix": "llm"})
        pq.write_table(pa.table({"ticket_id": ["T-9", "T-8"], "body": ["Slow page", "Typo in invoice"]}),
                       digest / "tickets.parquet")
        with box.build_all_defs() as location:
            dg.Definitions.validate_loadable(location)
            assert {s.name for s in location.sensors or ()} == {"triage_batch_monitor", "llm__digest_batch_monitor"}
            spec = location.resolve_assets_def(dg.AssetKey(["triage", "results"])).specs_by_key
            assert next(iter(spec.values())).owners == ["team:support"]
        harvested = {}
        for path, partition in ((triage, "2026-11-02"), (digest, None)):
            with box.load_component_and_build_defs(defs_path=path) as (component, defs):
                uc = component.use_case(path)
                done = submit(defs, instance, f"{uc.name}_submit", partition)
                assert done.success, failure_message(done)
                ran = run_until_idle(defs, instance)
                assert all(result.success for _, result in ran), [failure_message(r) for _, r in ran]
                harvested[uc.name] = [request.tags["batch_pipeline/use_case"] for request, _ in ran]
                table = results(defs, uc, partition)
                assert sorted(table["ticket_id"].to_pylist()) == (["T-1", "T-2"] if partition else ["T-8", "T-9"])
                assert set(table["status"].to_pylist()) == {"succeeded"}
    # each monitor asked only for its own use case's runs; each partition's results landed once
    assert all(set(names) <= {name} for name, names in harvested.items()), harvested
    for key, partition in ((["triage", "results"], "2026-11-02"), (["llm", "digest", "results"], None)):
        records = instance.fetch_materializations(dg.AssetKey(key), limit=10).records
        assert [r.asset_materialization.partition for r in records if r.asset_materialization] == [partition]
