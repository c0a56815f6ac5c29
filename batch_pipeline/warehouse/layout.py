"""Every path and file name in the warehouse, in one place.

`<root>/<use_case>/requests/partition=<key>/shard-00000.jsonl`   request lines as sent
`<root>/<use_case>/requests/partition=<key>/retry-a2-00000.jsonl` a retry round's lines
`<root>/<use_case>/requests/partition=<key>/rows.parquet`       one row per source row
`<root>/<use_case>/requests/partition=<key>/carried.parquet`    answers kept from the last results
`<root>/<use_case>/requests/partition=<key>/deletions.json`     provider files still to delete
`<root>/<use_case>/raw/partition=<key>/<batch_id>.output.jsonl` provider files, kept before they expire
`<root>/<use_case>/raw/partition=<key>/<batch_id>.input.jsonl`  a request file as sent, once a rebuild replaced it
`<root>/<use_case>/results/partition=<key>/results.parquet`     one row per source row
`<root>/<use_case>/results/partition=<key>/images/<custom_id>.png` a generated image (`-2`, ... with n > 1)

Paths recorded in Dagster are relative to the root (`Warehouse.relative`), so a warehouse that
moves keeps its old partitions harvestable.
"""

from __future__ import annotations

REQUESTS, RAW, RESULTS = "requests", "raw", "results"
INDEX_FILE = "rows.parquet"
CARRIED_FILE = "carried.parquet"
RESULTS_FILE = "results.parquet"
IMAGES_FOLDER = "images"  # in a partition's results folder
SHARD_GLOB = "shard-*.jsonl"
RETRY_GLOB = "retry-*.jsonl"
LEASE_FILE = ".lease"  # a local warehouse's OS file lock on the partition
CLAIMS_FOLDER = ".claims"  # an object store's numbered claim objects on the partition
INTENTS_FILE = "intents.json"  # when each idempotency key was first about to be submitted
DELETIONS_FILE = "deletions.json"  # provider files to delete once the results are written


def partition_folder(use_case: str, area: str, partition: str) -> str:
    """A partition's folder under the root, Hive-style so DuckDB reads `partition` as a column."""
    return f"{use_case}/{area}/partition={partition}"


def shard_file(index: int) -> str:
    return f"shard-{index:05d}.jsonl"


def retry_file(attempt: int, index: int) -> str:
    return f"retry-a{attempt}-{index:05d}.jsonl"


def raw_file(batch_id: str, kind: str) -> str:
    """A provider file kept raw: `kind` is `output` or `error`, or `input` (a request file as sent)."""
    return f"{batch_id}.{kind}.jsonl"


def image_file(custom_id: str, position: int, per_request: int, extension: str) -> str:
    """A generated image's file name: the request's custom_id, numbered from 1 when a request
    asks for several (custom_ids are portable, so the name is too, and one number after the last
    `-` never makes two requests' names meet)."""
    suffix = f"-{position + 1}" if per_request > 1 else ""
    return f"{custom_id}{suffix}.{extension}"
