"""End-to-end wall time of `batch-pipeline demo`, split by stage (the install is not timed).

The demo runs in a fresh process, with a fresh warehouse, local Batch API and Dagster home,
under pyinstrument. Each sample is put in one stage: start-up (imports and loading the
Definitions, before the demo starts), our engine code (frames in `batch_pipeline/` or `assets/`),
the local Batch API (the provider stand-in, `batch_pipeline/local_api/`), waiting between sensor
ticks for batches to finish (the demo's sleep), and Dagster (everything else: run and step
orchestration, event log and instance storage, the sensor machinery).
Run alone: ``.venv/bin/python -m benchmarks.bench_demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("start-up (imports, Definitions)", "Dagster (runs, sensor, event log, storage)", "our engine code",
          "local Batch API (provider stand-in)", "waiting for batches (sleep between ticks)")


def _child(out: Path) -> None:
    started = time.perf_counter()
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002)
    profiler.start()
    import dagster  # noqa: F401  (start-up is measured as what happens before run_demo)

    from assets.demo import run_demo

    code = run_demo(None, None)
    profiler.stop()
    wall = time.perf_counter() - started
    stages = dict.fromkeys(STAGES, 0.0)
    _attribute(profiler.last_session.root_frame(), None, stages)
    out.write_text(json.dumps({"wall": wall, "exit": code, "stages": stages}))


def _category(frame, inherited: str | None) -> str | None:
    path = (frame.file_path or "").replace("\\", "/")
    if inherited in (STAGES[0], STAGES[3], STAGES[4]):
        return inherited
    if frame.function == "<module>" or "importlib" in path:  # an import, wherever it happens
        return STAGES[0]
    if "/batch_pipeline/local_api/" in path:
        return STAGES[3]
    if frame.function == "sleep" and inherited == "demo":
        return STAGES[4]
    if path.endswith("/assets/demo.py"):
        return "demo" if frame.function in ("_harvest", "run_demo") else inherited
    if frame.function == "run_demo":
        return "demo"
    if inherited in (None,) and not any(s in path for s in ("/batch_pipeline/", "/assets/")):
        return None
    if ("/batch_pipeline/" in path or "/assets/" in path) and inherited not in (STAGES[2],) and \
            not path.endswith(("/cli.py",)):
        return STAGES[2]
    return inherited


def _attribute(frame, inherited: str | None, stages: dict) -> None:
    category = _category(frame, inherited)
    children = frame.children
    own = frame.time - sum(c.time for c in children)
    if category is None:
        stages[STAGES[0]] += own
    elif category == "demo":
        stages[STAGES[1]] += own
    else:
        stages[category] += own
    for child in children:
        _attribute(child, category, stages)


def measure(workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "demo-profile.json"
    env = {**os.environ, "DAGSTER_HOME": str(workdir / "dagster_home"),
           "BATCH_PIPELINE_WAREHOUSE": str(workdir / "warehouse"),
           "BATCH_PIPELINE_LOCAL_API_DIR": str(workdir / "local_api"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    (workdir / "dagster_home").mkdir(parents=True, exist_ok=True)
    (workdir / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.bench_demo", "--child", str(out)], env=env, cwd=workdir,
                   check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    result["process_wall"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", type=Path)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
