"""Batch end to results run launched: with webhooks, and with the polling monitor only.

One real `dagster dev` (webserver and daemon, tests/dagster_dev.py) per setup serves the `notes`
use case of tests/ui_location.py on a served local Batch API (`batch-pipeline local-api`, each
stage of a batch taking `PACE_SECONDS`, so a batch ends after the monitor's first look at it).
With webhooks, the local API signs and sends `batch.completed` to `batch-pipeline webhooks`,
and the monitor runs in webhook mode; polling only, neither is set up. Both list batches every
30 s (the default). For each partition in turn: the submit job is launched, the batch is
watched from here every 0.1 s until it is seen completed (its end), then the instance is read
until the partition's results run exists (its creation time). The median over `REPEAT`
partitions is reported, with the slowest.
Run alone: ``.venv/bin/python -m benchmarks.bench_webhooks``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import openai

from tests.conftest import PROJECT_ROOT
from tests.dagster_dev import DagsterDev, running
from tests.local_api.conftest import launch
from tests.ui_location import DAYS
from tests.webhook_process import receiver

PACE_SECONDS = 3.0
MONITOR_SECONDS = 30
REPEAT = 5
KEY = "sk-bench-webhooks"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
SETUPS = [("webhooks", True), ("polling only (every 30 s)", False)]


def _batch_end(client: openai.OpenAI, day: str, known: set[str]) -> float:
    """When the partition's batch was first seen completed (wall clock)."""
    while True:
        ours = [b for b in client.batches.list(limit=20) if b.id not in known and (b.metadata or {}).get(
            "partition") == day]
        if ours and ours[0].status == "completed":
            known.add(ours[0].id)
            return time.time()
        assert not ours or ours[0].status not in ("failed", "expired", "cancelled"), ours[0]
        time.sleep(0.1)


def _results_run_created(dev: DagsterDev, instance: dg.DagsterInstance, day: str) -> float:
    """When the partition's results run was created (wall clock)."""
    runs_filter = dg.RunsFilter(job_name="notes_results", tags={"dagster/partition": day})
    records = dev.wait_for(f"the results run of {day}", lambda: instance.get_run_records(runs_filter), 600)
    return min(r.create_timestamp.timestamp() for r in records)


def measure_setup(root: Path, webhooks: bool, repeat: int) -> list[float]:
    """Seconds from each partition's batch end to its results run, on one `dagster dev`."""
    home = root / "dagster_home"  # the home `running` uses: the receiver records where the daemon reads
    home.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with ExitStack() as stack:
        flags = ["--pace-seconds", str(PACE_SECONDS)]
        if webhooks:
            flags += ["--webhook-url", stack.enter_context(receiver(home, root, SECRET))]
        os.environ["BATCH_PIPELINE_LOCAL_API_WEBHOOK_SECRET"] = SECRET  # read by the local API it starts
        try:
            server = launch(root / "api", root, *flags, api_key=KEY)
        finally:
            del os.environ["BATCH_PIPELINE_LOCAL_API_WEBHOOK_SECRET"]
        stack.callback(server.stop)
        dev = stack.enter_context(running(
            root, extra_env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url},
            pace_seconds=PACE_SECONDS, monitor_interval_seconds=MONITOR_SECONDS, webhooks=webhooks))
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        client, known, latencies = server.client(api_key=KEY), set[str](), []
        for day in DAYS[:repeat]:
            dev.materialize([["notes", "requests"], ["notes", "batches"]], day, job="notes_submit")
            end = _batch_end(client, day, known)
            latencies.append(_results_run_created(dev, instance, day) - end)
            print(f"  {day}: {latencies[-1]:.1f} s", flush=True)
        return latencies


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="batch-pipeline-webhooks-") as tmp:
        print(json.dumps(measure(Path(tmp)), indent=1))


def measure(workdir: Path, repeat: int = REPEAT) -> list[dict]:
    rows = []
    for i, (label, webhooks) in enumerate(SETUPS):
        print(f"webhooks: {label}", flush=True)
        latencies = measure_setup(workdir / f"setup-{i}", webhooks, repeat)
        rows.append({"setup": label, "median_seconds": statistics.median(latencies),
                     "max_seconds": max(latencies), "partitions": len(latencies)})
    return rows


if __name__ == "__main__":
    main()
