"""Request building by source: the same rows as a CSV file, a Parquet file and a DuckDB table, in
rows/s beside the orjson floor of the same run; and peak memory building from Parquet, by size.

Each table holds the partition's N rows (`workload.rows`, 2026-11-20) and then as many rows of
the next day, which the daily partition must leave out: the CSV source reads and masks every
row, Parquet and DuckDB get the partition's condition pushed down. Every build is the requests
asset's own call, `build_partition`, with the shipped patient-education use case on the source
(`UseCase.read` streams the partition's rows with only the columns the requests need), into a
warehouse in the temporary folder: shards, index and all.

Peak memory is measured as `bench_memory` does, in a fresh subprocess per size, with prompts cut
short so 10M requests stay a few GB of shards; each size's files are deleted right after.
Run alone: ``.venv/bin/python -m benchmarks.bench_sources --rows 100000``
(``--memory 1000000 10000000`` for the peaks).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from assets import patient_education
from batch_pipeline.requests.partition import BuiltRequests, build_partition
from batch_pipeline.sources.base import Source
from batch_pipeline.sources.csv_source import CsvSource
from batch_pipeline.sources.files import FileSource
from batch_pipeline.sources.sql import SqlSource
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse.storage import Warehouse
from benchmarks import bench_requests
from benchmarks.bench_memory import _peak_kib
from benchmarks.workload import (
    PARTITION,
    REPEAT,
    SPEC,
    timed,
    write_duckdb_source,
    write_parquet_source,
    write_source_days,
)

KINDS = ("csv", "parquet", "duckdb")
KEY, PARTITION_COLUMN, TABLE = "medication_id", "list_date", "medications"
# The same four template columns as SPEC, with little text around them: 10M lines stay ~3.5 GB.
SHORT_SPEC = dataclasses.replace(SPEC, system_prompt="Write a short leaflet.",
                                 prompt="{name} ({drug_class}): {indication}. {dosage_notes}")


def sources(count: int, workdir: Path, kinds: tuple[str, ...] = KINDS, other: int | None = None) -> dict[str, Source]:
    """The table of `count` partition rows (and `other`, default as many, of the next day) as
    each kind of source, written into `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Source] = {}
    if "csv" in kinds:
        out["csv"] = CsvSource(write_source_days(workdir / f"source-{count}.csv", count, other), key=KEY,
                               partition_column=PARTITION_COLUMN)
    if "parquet" in kinds or "duckdb" in kinds:
        parquet = write_parquet_source(workdir / f"source-{count}.parquet", count, other)
        if "parquet" in kinds:
            out["parquet"] = FileSource(str(parquet), key=KEY, partition_column=PARTITION_COLUMN)
        if "duckdb" in kinds:
            database = write_duckdb_source(workdir / f"source-{count}.duckdb", parquet, TABLE)
            out["duckdb"] = SqlSource(f"SELECT * FROM {TABLE}", key=KEY, partition_column=PARTITION_COLUMN,
                                      duckdb=database)
    return out


def use_case(source: Source, spec=SPEC) -> UseCase:
    """The shipped use case (its spec and daily partitions) on another source."""
    return UseCase(spec=spec, source=source, partitions_def=patient_education.use_case.partitions_def)


def build(uc: UseCase, root: Path) -> BuiltRequests:
    """The requests asset's build of PARTITION: `write_requests(..., uc.read(partition), ...)`,
    carried answers, the index and stale shards, all under a warehouse at `root`."""
    return build_partition(Warehouse(root), uc, PARTITION)


def measure(count: int, workdir: Path, kinds: tuple[str, ...] = KINDS, repeat: int = REPEAT) -> dict:
    """{"rows": count, kind: rows/s for each source, "floor": orjson floor rows/s}, each the best
    of `repeat` runs. The runs take turns (every source, then the floor, `repeat` times over),
    so a change in the machine's load falls on all of them alike, not on one."""
    for kind, source in sources(300, workdir / "warm-up", kinds).items():  # imports, connections
        build(use_case(source), workdir / "warm-up" / f"warehouse-{kind}")
    cases = {kind: use_case(source) for kind, source in sources(count, workdir, kinds).items()}
    ids, texts = bench_requests.floor_inputs(count)
    best = dict.fromkeys([*cases, "floor"], float("inf"))
    for _ in range(repeat):
        for kind, uc in cases.items():
            seconds, built = timed(build, uc, workdir / f"warehouse-{kind}", repeat=1)
            if built.rows != count:
                raise AssertionError(f"{kind}: {built.rows:,} index rows for a partition of {count:,}")
            best[kind] = min(best[kind], seconds)
        seconds, n = timed(bench_requests.floor, ids, texts, repeat=1)
        if n != count:
            raise AssertionError(f"floor: {n:,} lines for {count:,} rows")
        best["floor"] = min(best["floor"], seconds)
    for kind in cases:
        shutil.rmtree(workdir / f"warehouse-{kind}", ignore_errors=True)
    return {"rows": count, **{name: count / seconds for name, seconds in best.items()}}


def _child(count: int, workdir: Path) -> None:
    """Build the partition from the Parquet file prepared by the parent; print the peak RSS."""
    source = FileSource(str(workdir / f"source-{count}.parquet"), key=KEY, partition_column=PARTITION_COLUMN)
    built = build(use_case(source, SHORT_SPEC), workdir / "warehouse")
    print(json.dumps({"rows": built.rows, "shards": len(built.shards), "peak_rss_mb": _peak_kib() / 1024}))


def peak_rss_mb(count: int, workdir: Path, other: int | None = None) -> dict:
    """Peak RSS of building `count` rows from Parquet in a fresh subprocess; the folder is
    deleted afterwards. `other`: the next day's rows in the file (default a tenth of count,
    so the 10M file stays small)."""
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        write_parquet_source(workdir / f"source-{count}.parquet", count, count // 10 if other is None else other)
        done = subprocess.run([sys.executable, "-m", "benchmarks.bench_sources", "--child", "--rows", str(count),
                               "--workdir", str(workdir)], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory child for {count:,} rows failed:\n{done.stderr[-4000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if result["rows"] != count:
        raise AssertionError(f"{result['rows']:,} index rows for a partition of {count:,}")
    return result


def measure_memory(counts: list[int], workdir: Path) -> dict[int, float]:
    """{rows: peak MB} building from Parquet, one fresh subprocess per size."""
    return {count: peak_rss_mb(count, workdir / f"memory-{count}")["peak_rss_mb"] for count in counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--memory", type=int, nargs="*", default=[], help="also peak RSS at these sizes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.rows[0], args.workdir)
        return
    with tempfile.TemporaryDirectory(prefix="batch-pipeline-bench-sources-") as tmp:
        out = {"rates": [measure(n, Path(tmp) / f"rates-{n}", tuple(args.kinds)) for n in args.rows]}
        if args.memory:
            out["memory"] = measure_memory(args.memory, Path(tmp))
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
