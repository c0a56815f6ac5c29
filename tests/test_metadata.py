"""Metadata a user can trust (issue 14): a partition's latest records name the batches behind its
answers, with their state; what was sent stays in the warehouse; an empty partition records
nothing twice."""

from __future__ import annotations

import dagster as dg

from batch_pipeline import definitions_for
from batch_pipeline.dagster.jobs import asset_key, results_job, submit_job
from batch_pipeline.state.partition_state import STATE_KEY
from batch_pipeline.warehouse import layout
from tests.helpers import run_until_idle, submit
from tests.test_operating import notes
from tests.test_retries import PARTITION, make, provider_batches, results


def latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    """The metadata values of the asset's latest materialization."""
    event = instance.get_latest_materialization_event(key)
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


def requests_folder(pipeline_env, area: str = layout.REQUESTS):
    return pipeline_env / "warehouse" / "notes" / area / f"partition={PARTITION}"


def amend(csv, old: str, new: str) -> None:
    csv.write_text(csv.read_text().replace(old, new))


def test_after_a_rebuild_the_metadata_names_the_batches_behind_the_answers(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=6)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    [first] = provider_batches(defs)

    assert submit(defs, instance, submit_job(uc).name, PARTITION).success  # every answer is kept
    run_until_idle(defs, instance)  # the results run the monitor asks for: the submit run records no results
    assert len(provider_batches(defs)) == 1
    for stage in ("batches", "results"):
        metadata = latest(instance, asset_key(uc, stage))
        assert metadata["batch_ids"] == [first.id] and metadata["requests"] == 6, stage
        assert [s["status"] for s in metadata[STATE_KEY]["kept"]] == ["completed"], stage
    metadata = latest(instance, asset_key(uc, "results"))
    assert metadata["batches"] == {first.id: "completed"} and metadata["dagster/row_count"] == 6
    assert metadata["cost_usd"] > 0 and metadata["estimated_cost_usd"] > 0

    amend(uc.source.path, "note 3 about", "note 3 (amended) about")  # one row is sent again
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    [second] = [b for b in provider_batches(defs) if b.id != first.id]
    metadata = latest(instance, asset_key(uc, "results"))
    assert sorted(metadata["batch_ids"]) == sorted([first.id, second.id]) and metadata["requests"] == 7
    assert metadata["batches"] == {first.id: "completed", second.id: "completed"}
    assert {r["batch_id"] for r in results(pipeline_env)} == {first.id, second.id}


def test_a_rebuild_keeps_the_request_files_as_sent(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=6)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    shard = requests_folder(pipeline_env) / "shard-00000.jsonl"
    as_sent = shard.read_bytes()
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success  # in flight: left as it was
    assert shard.read_bytes() == as_sent and not list(requests_folder(pipeline_env, layout.RAW).glob("*"))
    run_until_idle(defs, instance)
    [first] = provider_batches(defs)

    amend(uc.source.path, "note 3 about", "note 3 (amended) about")  # shard-00000 now holds one row
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    kept = requests_folder(pipeline_env, layout.RAW) / layout.raw_file(first.id, "input")
    assert kept.read_bytes() == as_sent and shard.read_bytes().count(b"\n") == 1
    [record] = latest(instance, asset_key(uc, "batches"))[STATE_KEY]["kept"]
    assert record["batch_id"] == first.id and record["path"].endswith(kept.name)
    run_until_idle(defs, instance)
    assert kept.read_bytes() == as_sent


def test_a_results_step_for_an_empty_partition_records_nothing_new(instance, pipeline_env):
    """Its submit step wrote the empty results and checked them: a results step (in the same run,
    Materialize all, or in a run of its own) writes nothing and adds no materialization; its checks
    stay passed for the partition, none "Skipped"."""
    uc = notes(pipeline_env, "n1,2026-11-21,a note on another day\n")
    defs = definitions_for([uc])
    results_file = pipeline_env / "warehouse" / "notes" / "results" / f"partition={PARTITION}" / "results.parquet"
    everything = [asset_key(uc, stage) for stage in ("requests", "batches", "results")]
    run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=PARTITION, asset_selection=everything)
    assert run.success
    written = results_file.stat().st_mtime_ns
    assert defs.resolve_job_def(results_job(uc).name).execute_in_process(
        instance=instance, partition_key=PARTITION).success
    assert results_file.stat().st_mtime_ns == written
    materializations = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key(uc, "results"), asset_partitions=[PARTITION]), limit=10).records
    assert len(materializations) == 1 and materializations[0].run_id == run.run_id
    assert latest(instance, asset_key(uc, "results"))["dagster/row_count"] == 0
    assert PARTITION in instance.get_materialized_partitions(asset_key(uc, "results"))
    for name in ("every_row_once", "invalid_output_rate", "refusal_rate"):
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(asset_key(uc, "results"), name), limit=10)
        assert [(r.partition, r.status.value) for r in history] == [(PARTITION, "SUCCEEDED")] * 2, name


def test_a_harvested_batch_is_recorded_in_the_status_it_ended_in(instance, pipeline_env):
    """The batches record says what each batch was when submitted; the results record, newer than
    every progress observation, says how it ended: nothing says `validating` once it completed."""
    uc, defs = make(pipeline_env, rows=4)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    [batch] = provider_batches(defs)
    submitted = latest(instance, asset_key(uc, "batches"))
    assert [s["status_at_submit"] for s in submitted["submissions"]] == ["validating"]
    assert all("status" not in s for s in submitted["submissions"])
    harvested = latest(instance, asset_key(uc, "results"))
    assert [s["status"] for s in harvested[STATE_KEY]["submissions"]] == ["completed"]
    assert harvested["batches"] == {batch.id: "completed"}
