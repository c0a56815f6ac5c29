"""A snapshot of the sample code location's names: asset keys (with group and kinds), asset
checks, jobs, schedules and sensors. An accidental rename (a use case, a stage, a job, the
monitor) breaks users' selections, schedules' history and sensors' cursors, so it fails here.

The expected names are checked in as `tests/snapshots/sample_definitions.json`. After a rename
made on purpose, rewrite it and review the diff:

    BATCH_PIPELINE_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_definitions_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from assets.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "sample_definitions.json"


def _names(definitions: dg.Definitions) -> dict:
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {"group": node.group_name, "kinds": sorted(node.kinds)}
    checks = sorted(f"{check.asset_key.to_user_string()}:{check.name}" for check in graph.asset_check_keys)
    jobs = sorted(job.name for job in definitions.get_repository_def().get_all_jobs()
                  if not job.name.startswith("__"))  # not Dagster's implicit asset job
    repository = definitions.get_repository_def()
    schedules = {s.name: {"job": s.job_name, "cron": s.cron_schedule, "default_status": s.default_status.value}
                 for s in repository.schedule_defs}
    sensors = {s.name: {"jobs": sorted(j.name for j in s.jobs), "default_status": s.default_status.value}
               for s in repository.sensor_defs}
    return {"assets": assets, "asset_checks": checks, "jobs": jobs,
            "schedules": dict(sorted(schedules.items())), "sensors": dict(sorted(sensors.items()))}


def test_the_sample_definitions_keep_their_names():
    names = _names(defs)
    if os.environ.get("BATCH_PIPELINE_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(names, indent=2) + "\n")
    assert names == json.loads(SNAPSHOT.read_text()), (
        "the sample Definitions' names changed; if on purpose, update the snapshot (see this module's docstring)")
