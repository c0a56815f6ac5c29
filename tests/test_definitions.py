"""The code location loads the way `dagster dev` loads it, with no key set."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg

from assets.definitions import defs
from tests.conftest import PROJECT_ROOT


def test_asset_keys_jobs_sensor_and_schedule():
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"patient_education/source", "patient_education/requests", "patient_education/batches",
            "patient_education/results"} <= keys
    assert defs.resolve_job_def("patient_education_submit")
    assert defs.resolve_job_def("patient_education_results")
    sensor = defs.resolve_sensor_def("batch_monitor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = defs.resolve_schedule_def("patient_education_submit_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # off until switched on
    assert set(defs.resources) == {"batch_api", "warehouse"}


def test_workspace_validates_like_dagster_dev(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["DAGSTER_HOME"] = str(tmp_path)
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_loads_without_a_dagster_warning():
    """Every process `dagster dev` starts loads the code: a beta or preview API called here would
    print its warning in each of them."""
    snippet = (
        "import warnings, dagster as dg\n"
        "for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):\n"
        "    warnings.simplefilter('error', category)\n"
        "from assets.definitions import defs\n"
        "dg.Definitions.validate_loadable(defs)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    result = subprocess.run([sys.executable, "-c", snippet], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
