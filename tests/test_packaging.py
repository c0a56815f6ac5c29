"""The wheel is the library: `batch_pipeline` alone, typed, with ranges for dependencies, the local
Batch API's web stack, object storage, Postgres and the SQL source as extras; and the core imports
without the `local-api` extra.

The wheel is built from a copy of the source tree (a build writes build/ and *.egg-info where it
runs), without build isolation and without an index: no network. A few seconds.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

# Left out of the copy: VCS, environments, run outputs, caches. The use cases (assets/, data/),
# tests/ and benchmarks/ are copied: the wheel must leave them out by itself.
_NOT_COPIED_AT_ROOT = {".git", ".venv", "build", "dist", "warehouse", ".local_batch_api", ".dagster_home"}
_NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*_cache", ".tmp_dagster_home_*")

EXTRAS = {"local-api", "ui", "s3", "postgres", "sql", "test", "bench"}
# The local Batch API's web stack: the `local-api` extra (httpx2 comes with openai, so cannot be hidden).
WEB_STACK = ("starlette", "uvicorn", "multipart", "python_multipart")
# What the other extras bring: the UI, object storage, Postgres, the SQL source.
OTHER_EXTRAS = ("dagster_webserver", "s3fs", "dagster_postgres", "psycopg2", "adbc_driver_postgresql",
                "adbc_driver_manager")


def hiding(modules: tuple[str, ...]) -> str:
    """Code to run first in a subprocess: `modules` cannot be imported, as without their extras."""
    return f"""
import importlib.abc, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {modules!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden)", name=name)
        return None

sys.meta_path.insert(0, Hide())
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(_NOT_COPIED(folder, names))
        return skipped | (_NOT_COPIED_AT_ROOT & set(names) if Path(folder) == PROJECT_ROOT else set())

    source = shutil.copytree(PROJECT_ROOT, tmp / "src", ignore=ignore)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--check-build-dependencies", "--no-index", "--quiet", "-w", str(tmp / "dist")],
        capture_output=True, text=True, timeout=240,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (built,) = (tmp / "dist").glob("batch_pipeline-*.whl")
    return built


def _metadata(names: list[str], archive: zipfile.ZipFile):
    (path,) = [name for name in names if re.fullmatch(r"batch_pipeline-[^/]+\.dist-info/METADATA", name)]
    return email.parser.Parser().parsestr(archive.read(path).decode())


def test_the_wheel_holds_the_library_alone_with_py_typed(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names}
    assert {"batch_pipeline"} <= top
    assert all(name.startswith("batch_pipeline/") or re.match(r"batch_pipeline-[^/]+\.dist-info/", name)
               for name in names), sorted(top)
    assert "batch_pipeline/py.typed" in names
    for outside in ("assets", "data", "tests", "benchmarks", "deploy"):
        assert not any(name.startswith(f"{outside}/") for name in names), outside
    # every module of the package ships, the local Batch API's included
    modules = {path.relative_to(PROJECT_ROOT).as_posix() for path in (PROJECT_ROOT / "batch_pipeline").rglob("*.py")
               if "__pycache__" not in path.parts}
    assert modules <= set(names), sorted(modules - set(names))


def test_the_metadata_declares_ranges_and_the_extras(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        metadata = _metadata(archive.namelist(), archive)
    requires = metadata.get_all("Requires-Dist") or []
    assert requires
    for requirement in requires:
        spec = requirement.split(";")[0]  # the marker (`extra == "test"`) is not a version
        assert "==" not in spec, f"an exact pin in a library: {requirement}"
        assert "===" not in spec, requirement
    assert EXTRAS <= set(metadata.get_all("Provides-Extra") or [])
    # the core needs no web stack, object storage, Postgres driver or ADBC
    core = {re.split(r"[\s<>=!~\[(;]", requirement, maxsplit=1)[0].lower()
            for requirement in requires if "extra ==" not in requirement}
    assert {"dagster", "openai", "pyarrow"} <= core
    assert not core & {"starlette", "uvicorn", "python-multipart", "dagster-webserver", "s3fs", "dagster-postgres",
                       "psycopg2-binary", "adbc-driver-postgresql", "adbc-driver-manager"}, core


def _hidden(modules: tuple[str, ...], code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    env.update(DAGSTER_HOME=str(tmp_path), BATCH_PIPELINE_LOCAL_API_DIR=str(tmp_path / "local_api"),
               BATCH_PIPELINE_WAREHOUSE=str(tmp_path / "warehouse"))
    return subprocess.run([sys.executable, "-c", hiding(modules) + code], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_core_imports_without_the_extras(tmp_path: Path):
    done = _hidden(
        WEB_STACK + OTHER_EXTRAS,
        "import batch_pipeline, batch_pipeline.dagster.definitions, batch_pipeline.cli\n"
        "from batch_pipeline import BatchAPIResource, LocalBatchAPIResource, UseCase, definitions_for\n"
        "from batch_pipeline.local_api import LocalAPISettings\n"
        "from batch_pipeline.local_api import LocalAPIExtraMissing, require_web_stack\n"
        # how `dg list components` finds the component: every name the package lists, imported
        "from dagster.components.core.package_entry import get_package_objects_in_module\n"
        "assert 'BatchUseCase' in dict(get_package_objects_in_module(batch_pipeline))\n"
        "try:\n"
        "    require_web_stack()\n"
        "except LocalAPIExtraMissing:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('the web stack is not hidden')\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_local_batch_api_without_its_extra_names_the_extra(tmp_path: Path):
    done = _hidden(
        WEB_STACK,
        "from batch_pipeline import LocalBatchAPIResource\n"
        "try:\n"
        "    LocalBatchAPIResource().client()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "from batch_pipeline.cli import main\n"
        f"main(['local-api', '--data-dir', {str(tmp_path / 'served')!r}])\n",
        tmp_path,
    )
    extra = "the local Batch API needs the extra: pip install 'batch_pipeline[local-api]'"
    assert extra in done.stdout, done.stdout + done.stderr[-3000:]
    # the command exits with the message, not a traceback
    assert done.returncode == 2, done.stderr[-3000:]
    assert extra in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]


def test_every_module_the_library_imports_is_declared(wheel: Path):
    """A third-party import needs a declared distribution (core or an extra), or installs that lack
    it fail on import: found when `numpy` came into the core through the test extra only."""
    import ast
    import importlib.metadata

    with zipfile.ZipFile(wheel) as archive:
        requires = _metadata(archive.namelist(), archive).get_all("Requires-Dist") or []
    declared = {re.split(r"[\s<>=!~\[(;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requires}
    providers = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    for path in (PROJECT_ROOT / "batch_pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported - set(sys.stdlib_module_names) if name != "batch_pipeline"}
    undeclared = {name: providers.get(name) for name in third_party
                  if not {d.lower().replace("_", "-") for d in providers.get(name, [name])} & declared}
    assert not undeclared, f"imported by batch_pipeline but not declared in pyproject.toml: {undeclared}"


# A user's file: correct uses of the public API, and one misspelt argument.
_USER_FILE = """
import dagster as dg
from batch_pipeline import BatchSpec, CsvSource, UseCase, definitions_for

use_case = UseCase(
    spec=BatchSpec(name="triage", model="gpt-4o-mini", prompt="{subject}"),
    source=CsvSource("/data/tickets.csv", key="ticket_id", partition_column="day"),
    partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-01"),
)
defs: dg.Definitions = definitions_for([use_case], key_prefix="llm")
misspelt = BatchSpec(nme="triage", model="gpt-4o-mini", prompt="{subject}")
"""


def test_a_type_checker_sees_the_installed_wheels_real_types(wheel: Path, tmp_path: Path):
    """The wheel installed as a user installs it (its own site-packages, with `py.typed`): mypy
    reports the misspelt argument, which the lazy exports would hide as `Any`, and nothing else.
    Only batch_pipeline's own modules are followed (`follow_imports = skip` for the rest), so the
    check takes seconds, not the minute a cold analysis of dagster takes."""
    import sysconfig

    venv = tmp_path / "user_venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    # the dependencies: this environment's (a .pth line is a folder mypy searches too)
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (tmp_path / "user.py").write_text(_USER_FILE)
    (tmp_path / "mypy.ini").write_text("[mypy]\nfollow_imports = skip\n"
                                       "[mypy-batch_pipeline,batch_pipeline.*]\nfollow_imports = normal\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--python-executable", str(python), "--cache-dir", str(tmp_path / "cache"),
         "--strict", "--no-error-summary", "user.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'Unexpected keyword argument "nme" for "BatchSpec"' in errors[0], done.stdout


def test_the_readmes_install_line_has_what_the_no_key_mode_needs():
    """The no-key default runs the embedded local Batch API: the line a team copies into its own
    project installs its extra (tests/test_example_project.py installs the wheel with just that)."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Use it from your own Dagster project", 1)[1].split("\n## ", 1)[0]
    (line,) = [line for line in section.splitlines() if line.startswith("pip install ")]
    extras = re.fullmatch(r"pip install 'batch_pipeline\[([^\]]*)\]'.*", line)
    assert extras and "local-api" in extras.group(1).split(","), line
