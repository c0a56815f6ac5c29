"""Reruns send only new work: unchanged rows keep the answer they already paid for."""

from __future__ import annotations

from batch_pipeline.dagster.jobs import asset_key, submit_job
from tests.helpers import run_until_idle, submit
from tests.test_retries import PARTITION, make, provider_batches, results


def files(defs) -> list:
    return list(defs.resources["batch_api"].client().files.list(purpose="batch"))


def test_changed_and_added_rows_are_the_only_new_work(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=10)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    before = {r["custom_id"]: r for r in results(pipeline_env)}
    [first] = provider_batches(defs)

    csv = uc.source.path
    text = csv.read_text().replace("note 3 about", "note 3 (amended) about")
    text = text.replace("note 7 about", "note 7 (amended) about")
    csv.write_text(text + f"n999,{PARTITION},a brand new note\n")
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)

    after = {r["custom_id"]: r for r in results(pipeline_env)}
    batches = provider_batches(defs)
    assert len(batches) == 2
    second = next(b for b in batches if b.id != first.id)
    assert second.request_counts.total == 3
    assert {c for c, r in after.items() if r["batch_id"] == second.id} == {"n003", "n007", "n999"}
    unchanged = set(before) - {"n003", "n007"}
    assert all(after[c] == before[c] for c in unchanged)
    assert len(after) == 11 and all(r["status"] == "succeeded" for r in after.values())


def test_rerun_after_harvest_sends_nothing(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=6)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    before = results(pipeline_env)
    counts = (len(provider_batches(defs)), len(files(defs)))
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    requests = instance.get_latest_materialization_event(asset_key(uc, "requests")).asset_materialization
    assert requests.metadata["kept_answers"].value == 6 and requests.metadata["estimated_cost_usd"].value == 0
    run_until_idle(defs, instance)
    assert (len(provider_batches(defs)), len(files(defs))) == counts
    assert results(pipeline_env) == before


def test_an_overlapping_rerun_leaves_a_retry_round_in_flight_alone(instance, pipeline_env):
    from tests.helpers import execute, tick_until_requested

    uc, defs = make(pipeline_env, rows=12, local_api={"line_rate_limit_fraction": 0.4, "fault_seed": 4,
                                                       "pace_seconds": 1.5})
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    [request], _, _ = tick_until_requested(defs, instance)
    assert execute(defs, instance, request).success  # harvests round 1, submits round 2
    in_flight = provider_batches(defs)
    # In flight for the pipeline: recorded and not harvested (only our own runs harvest), whatever
    # status the provider has reached meanwhile on a slow machine.
    assert any(b.metadata["attempt"] == "2" for b in in_flight)

    assert submit(defs, instance, submit_job(uc).name, PARTITION).success  # a backfill overlapping it
    requests = instance.get_latest_materialization_event(asset_key(uc, "requests")).asset_materialization
    assert "retry round is in flight" in requests.metadata["note"].value
    assert len(provider_batches(defs)) == len(in_flight)

    run_until_idle(defs, instance)
    batches = provider_batches(defs)
    keys = [(b.metadata["shard"], b.metadata["attempt"]) for b in batches]
    assert len(keys) == len(set(keys))
    rows = results(pipeline_env)
    assert len(rows) == 12 and all(r["status"] == "succeeded" or r["attempts"] == 3 for r in rows)


def test_a_rebuild_before_an_amended_row_is_harvested_keeps_no_stale_answer(instance, pipeline_env):
    uc, defs = make(pipeline_env, rows=6)
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success
    run_until_idle(defs, instance)
    [first] = provider_batches(defs)
    csv = uc.source.path
    csv.write_text(csv.read_text().replace("note 3 about", "note 3 (amended) about"))
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success  # sends the amended row
    assert submit(defs, instance, submit_job(uc).name, PARTITION).success  # rebuilt before its harvest
    run_until_idle(defs, instance)
    [second] = [b for b in provider_batches(defs) if b.id != first.id]
    amended = next(r for r in results(pipeline_env) if r["custom_id"] == "n003")
    assert amended["batch_id"] == second.id
