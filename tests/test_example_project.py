"""The example team project (examples/support_team) works from the wheel alone: build
batch_pipeline's wheel, install it with the `local-api` extra and the example into a fresh venv
(`pip install -c constraints.txt '<wheel>[local-api]' <example> pytest`, as a data team would),
and run the example's own tests there: each of its use cases end to end on the local Batch API.

A module missing from the wheel, an undeclared dependency or a name the example needs that is no
longer exported fails it. One slow test (under a minute and a half with pip's cache warm);
deselect it with `-m 'not slow'`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.test_extras import source_tree_copy

EXAMPLE = PROJECT_ROOT / "examples" / "support_team"
# What running or building the example leaves in its folder: not copied.
_NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*_cache", "build", "dist", "lake",
                                     "warehouse", ".local_batch_api", ".dagster_home")


def _tail(done: subprocess.CompletedProcess[str], chars: int = 6000) -> str:
    return (done.stdout + done.stderr)[-chars:]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_example_project_passes_its_tests_against_the_wheel(tmp_path: Path):
    source = source_tree_copy(tmp_path / "src")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--check-build-dependencies", "--no-index", "--quiet", "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=240,
    )
    assert build.returncode == 0, _tail(build)
    (wheel,) = (tmp_path / "dist").glob("batch_pipeline-*.whl")

    # A copy: building the example in place would write build/ and *.egg-info into the repository.
    example = shutil.copytree(EXAMPLE, tmp_path / "support_team", ignore=_NOT_COPIED)
    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        python = venv / "bin" / "python"
        # This environment's pip installs into the new venv (`--python`), reusing pip's cache.
        pip = [sys.executable, "-m", "pip", "--python", str(python)]
        install = subprocess.run(
            [*pip, "install", "--quiet", "--no-compile", "-c", str(PROJECT_ROOT / "constraints.txt"),
             f"{wheel}[local-api]", str(example), "pytest"],
            capture_output=True, text=True, timeout=600,
        )
        assert install.returncode == 0, _tail(install)
        check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, _tail(check)

        # The tests import the installed project, not the copy's sources: its package data too.
        shutil.rmtree(example / "support_team")
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("OPENAI_", "BATCH_PIPELINE_", "DAGSTER_", "SUPPORT_"))}
        env.pop("PYTHONPATH", None)
        env["PYTHONNOUSERSITE"] = "1"
        tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=example,
                               env=env, capture_output=True, text=True, timeout=600)
        assert tests.returncode == 0, f"the example's tests failed in the fresh venv:\n{_tail(tests)}"
        assert " passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout[-3000:]
        print(tests.stdout[-1500:])
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # a few hundred megabytes
