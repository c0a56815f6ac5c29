"""Image generation and text completions through the real Definitions on the embedded local Batch
API: one image file per succeeded row beside the results, named by the Parquet row, priced as
genai-prices prices it; a rerun pays nothing and rewrites nothing."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from genai_prices import Usage, calc_price

from batch_pipeline import BatchAPIResource, BatchSpec, CsvSource, UseCase, definitions_for
from batch_pipeline.dagster.jobs import submit_job
from batch_pipeline.dagster.state_store import latest_state
from batch_pipeline.harvest.images import land_images
from batch_pipeline.provider.openai_images import images_in
from batch_pipeline.provider.openai_results import parse_results
from batch_pipeline.warehouse.storage import Warehouse
from tests.helpers import run_until_idle, submit

DAY = "2026-11-20"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-16", timezone="UTC")


def products(root: Path, **spec: object) -> UseCase:
    """Four products, one without a name (rejected, so it names no file)."""
    path = root / "products.csv"
    path.write_text("sku,day,name\nP1,2026-11-20,Trail tent\nP2,2026-11-20,Down jacket\n"
                    "P3,2026-11-20,\nP4,2026-11-20,River sandals\n")
    fields = {"name": "shots", "model": "gpt-image-1-mini", "endpoint": "/v1/images/generations",
              "prompt": "A studio photo of the {name}", "parameters": {"size": "1536x1024", "quality": "low"}, **spec}
    return UseCase(BatchSpec(**fields), CsvSource(path, key="sku", partition_column="day"), DAILY)  # type: ignore[arg-type]


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_each_succeeded_row_lands_one_image_file_and_a_rerun_pays_and_rewrites_nothing(pipeline_env, instance):
    uc = products(pipeline_env)
    defs = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)

    warehouse = pipeline_env / "warehouse"
    results = warehouse / "shots" / "results" / f"partition={DAY}"
    rows = {r["sku"]: r for r in pq.read_table(results / "results.parquet").to_pylist()}
    assert {sku: r["status"] for sku, r in rows.items()} == {"P1": "succeeded", "P2": "succeeded",
                                                            "P3": "rejected", "P4": "succeeded"}
    assert rows["P3"]["image_files"] is None
    images = results / "images"
    assert sorted(p.name for p in images.iterdir()) == ["P1.png", "P2.png", "P4.png"]  # one per succeeded row
    for sku in ("P1", "P2", "P4"):
        row = rows[sku]
        assert row["image_files"] == [f"shots/results/partition={DAY}/images/{sku}.png"]
        assert (warehouse / row["image_files"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (row["image_size"], row["image_quality"], row["model"]) == ("1536x1024", "low", "gpt-image-1-mini")
        assert row["output_image_tokens"] == row["output_tokens"] == 408  # low, 1536x1024
        usage = Usage(input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
                      output_image_tokens=row["output_image_tokens"])
        price = calc_price(usage, "gpt-image-1-mini", provider_id="openai", price_context={"processing": "batch"})
        assert row["cost_usd"] == pytest.approx(float(price.total_price))
    before, client = stamps(images), BatchAPIResource().client()
    paid = (len(list(client.batches.list())), len(list(client.files.list())))
    state = latest_state(instance, uc, DAY)
    assert state is not None

    assert submit(defs, instance, submit_job(uc).name, DAY).success  # a rerun: every answer is kept
    run_until_idle(defs, instance)
    assert (len(list(client.batches.list())), len(list(client.files.list()))) == paid
    again = latest_state(instance, uc, DAY)
    assert again is not None and not again.submissions
    assert {s.batch_id for s in again.kept} == {s.batch_id for s in state.batches}
    assert stamps(images) == before
    assert pq.read_table(results / "results.parquet").to_pylist() == list(rows.values())

    # A results run killed after the images were written harvests the same raw files again: it
    # finds every image in place and writes none.
    [raw] = (warehouse / "shots" / "raw" / f"partition={DAY}").glob("*.output.jsonl")
    relanded = land_images(Warehouse(warehouse), Warehouse(warehouse).root / "shots" / "results" / f"partition={DAY}"
                           / "images", 1, images_in([raw]), parse_results([raw]), "gpt-image-1-mini")
    assert sorted(relanded["custom_id"].to_pylist()) == ["P1", "P2", "P4"]
    assert stamps(images) == before


def test_text_completions_land_their_text(pipeline_env, instance):
    uc = products(pipeline_env, name="blurbs", model="gpt-3.5-turbo-instruct", endpoint="/v1/completions",
                  prompt="One line about the {name}:", parameters={"max_tokens": 40})
    defs = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)
    rows = pq.read_table(pipeline_env / "warehouse" / "blurbs" / "results" / f"partition={DAY}").to_pylist()
    answered = [r for r in rows if r["status"] == "succeeded"]
    assert sorted(r["sku"] for r in answered) == ["P1", "P2", "P4"]
    assert all(r["output"].strip() and r["output_tokens"] and r["cost_usd"] > 0 for r in answered)


def test_images_land_on_an_s3_warehouse_once(instance, s3_warehouse, pipeline_env):
    """On object storage too: one object per succeeded row, named by the Parquet; with the bucket
    versioned, landing the same raw output again adds no version to any of them."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, version_aware=True)  # fresh: nothing cached from the pipeline
    bucket_root = s3_warehouse.removeprefix("s3://")
    fs.make_bucket_versioned(bucket_root.split("/")[0])
    uc = products(pipeline_env)
    defs = definitions_for([uc], batch_api=BatchAPIResource(harvest_wait_seconds=0))
    assert submit(defs, instance, submit_job(uc).name, DAY).success
    run_until_idle(defs, instance)

    folder = f"{bucket_root}/shots/results/partition={DAY}/images"
    with fs.open(f"{bucket_root}/shots/results/partition={DAY}/results.parquet", "rb") as f:
        named = sorted(name for names in pq.read_table(f)["image_files"].to_pylist() if names for name in names)
    keys = sorted(fs.find(folder))
    assert keys == [f"{bucket_root}/{name}" for name in named] == [f"{folder}/{sku}.png" for sku in ("P1", "P2", "P4")]
    assert all(fs.cat(key)[:8] == b"\x89PNG\r\n\x1a\n" for key in keys)
    assert all(len(fs.object_version_info(key)) == 1 for key in keys)

    wh = Warehouse(s3_warehouse)  # the same raw output, landed again: every object is there already
    [raw] = fs.glob(f"{bucket_root}/shots/raw/partition={DAY}/*.output.jsonl")
    data = fs.cat(raw)
    land_images(wh, wh.root / "shots" / "results" / f"partition={DAY}" / "images", 1, images_in([data]),
                parse_results([data]), "gpt-image-1-mini")
    assert all(len(fs.object_version_info(key)) == 1 for key in keys)
