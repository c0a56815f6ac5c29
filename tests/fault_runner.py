"""One pipeline step in a process of its own, so the fault matrix can SIGKILL it at a failpoint.

Usage: python -m tests.fault_runner ROOT STEP   (STEP: submit | harvest | tick)
The Dagster instance comes from DAGSTER_HOME, shared with the test process; the provider whose
protocol the embedded local Batch API speaks, and its settings, from files in ROOT (`use`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dagster as dg

from batch_pipeline import (
    BatchAPIResource,
    BatchSpec,
    CsvSource,
    LocalBatchAPIResource,
    LocalBatchAPISettings,
    UseCase,
    WarehouseResource,
    definitions_for,
)
from batch_pipeline.dagster.jobs import submit_job
from tests.helpers import execute, submit, tick, tick_until_requested

PARTITION = "2026-11-20"
ROWS = 10
PROVIDERS = ("openai", "anthropic", "gemini")
MODELS = {"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}


def use(root: Path, provider: str) -> None:
    """Make every `build(root)` (this process's and the killed ones') speak `provider`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "provider").write_text(provider)


def provider_of(root: Path) -> str:
    chosen = root / "provider"
    return chosen.read_text() if chosen.exists() else "openai"


def build(root: Path, delete_provider_files: bool = True) -> tuple[UseCase, dg.Definitions]:
    """The use case of the matrix: 10 rows in 3 shards; the provider and the local API's settings
    from root."""
    csv = root / "notes.csv"
    if not csv.exists():
        csv.write_text("id,day,text\n" + "".join(f"n{i:02d},{PARTITION},visit note {i}\n" for i in range(ROWS)))
    settings_file = root / "local_api.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    uc = UseCase(
        spec=BatchSpec(name="notes", model="gpt-4o-mini", models=MODELS, prompt="Summarise: {text}",
                       max_requests_per_shard=4, max_attempts=5,
                       retry_backoff_seconds=0),
        source=CsvSource(path=csv, key="id", partition_column="day"),
        partitions_def=dg.DailyPartitionsDefinition(start_date=PARTITION),
    )
    batch_api = BatchAPIResource(provider=provider_of(root), local=LocalBatchAPIResource(
        data_dir=str(root / "api"), settings=LocalBatchAPISettings(**{"pace_seconds": 0.1, **settings})),
        delete_provider_files=delete_provider_files)
    return uc, definitions_for([uc], batch_api=batch_api, warehouse=WarehouseResource(root=str(root / "warehouse")))


def main(root: str, step: str) -> None:
    uc, defs = build(Path(root))
    instance = dg.DagsterInstance.get()
    if step == "submit":
        submit(defs, instance, submit_job(uc).name, PARTITION)
    elif step == "harvest":
        requests, _, _ = tick_until_requested(defs, instance)
        for request in requests:
            execute(defs, instance, request)
    elif step == "tick":
        tick(defs, instance, None)
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
