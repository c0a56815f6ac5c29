"""The example projects work from the wheel alone: build batch_pipeline's wheel, install it with
the `local-api` extra, both examples and Dagster's `dg` into one fresh venv (`pip install -c
constraints.txt '<wheel>[local-api]' <examples> pytest dagster-dg-cli`, as a data team would), and
run each example's own tests there: each of its use cases end to end on the local Batch API.

examples/support_team is installed as a package; examples/ticket_desk editable, as `uv sync`
installs a project made with create-dagster, so `dg` then sees what it scaffolds: the wheel's
entry point lists `batch_pipeline.BatchUseCase`, `dg scaffold defs` writes a defs.yaml that `dg
check defs` and `dg list defs` accept.

A module missing from the wheel, an undeclared dependency or a name the example needs that is no
longer exported fails it. One slow test (about two minutes with pip's cache warm); deselect it
with `-m 'not slow'`.
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
DG_EXAMPLE = PROJECT_ROOT / "examples" / "ticket_desk"
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
    dg_example = shutil.copytree(DG_EXAMPLE, tmp_path / "ticket_desk", ignore=_NOT_COPIED)
    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        python = venv / "bin" / "python"
        # This environment's pip installs into the new venv (`--python`), reusing pip's cache.
        pip = [sys.executable, "-m", "pip", "--python", str(python)]
        install = subprocess.run(
            [*pip, "install", "--quiet", "--no-compile", "-c", str(PROJECT_ROOT / "constraints.txt"),
             f"{wheel}[local-api]", str(example), "-e", str(dg_example), "pytest", "dagster-dg-cli"],
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
        for project in (example, dg_example):
            tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                                   env=env, capture_output=True, text=True, timeout=600)
            assert tests.returncode == 0, f"{project.name}'s tests failed in the fresh venv:\n{_tail(tests)}"
            assert " passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout[-3000:]
            print(tests.stdout[-1500:])
        _scaffold_and_check_with_dg(venv, dg_example, env)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # a few hundred megabytes


def _scaffold_and_check_with_dg(venv: Path, project: Path, env: dict[str, str]) -> None:
    """What a new user does in a project made with create-dagster: list the components, scaffold
    a use case, give it the table its scaffold names, and check the location."""
    env = {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
           "DAGSTER_HOME": str(project / ".dagster_home")}
    (project / ".dagster_home").mkdir()
    (project / ".dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    def dg(*args: str, fails: bool = False) -> str:
        done = subprocess.run([str(venv / "bin" / "dg"), *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=300)
        assert (done.returncode != 0) == fails, f"dg {' '.join(args)}:\n{_tail(done)}"
        return done.stdout + done.stderr

    assert "batch_pipeline.BatchUseCase" in dg("list", "components")
    dg("scaffold", "defs", "batch_pipeline.BatchUseCase", "ticket_intake")
    folder = project / "src" / "ticket_desk" / "defs" / "ticket_intake"
    assert "name: ticket_intake" in (folder / "defs.yaml").read_text()
    (folder / "tickets.csv").write_text("ticket_id,subject,body,created_date\nT-1,Login,Cannot log in,2026-11-02\n")
    assert "All definitions loaded successfully" in dg("check", "defs")
    listed = dg("list", "defs", "--json")
    assert "ticket_intake/results" in listed and "ticket_intake_batch_monitor" in listed

    # a misspelt field stops the check, naming the file, a line (its group's when the location's load
    # finds it; its own when dg's YAML step does, which in dg 1.13.27 checks one file per component
    # type) and the field
    text = (folder / "defs.yaml").read_text().replace("      key: ticket_id", "      kee: ticket_id")
    (folder / "defs.yaml").write_text(text)
    lines = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(("  source:", "      kee:"))]
    out = dg("check", "defs", fails=True)
    assert "kee" in out and any(f"ticket_intake/defs.yaml:{n}" in out for n in lines), out[-3000:]
