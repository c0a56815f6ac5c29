"""The import graph of `batch_pipeline/`, read from the source (every import, at module level or
inside a function): the stages import no Dagster, only the adapters and the local API import a
provider SDK, and the top-level packages and modules import each other in no circle."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import batch_pipeline

ROOT = Path(batch_pipeline.__file__).parent
STAGES = ("requests", "provider", "state", "harvest", "warehouse")


def _modules() -> Iterator[tuple[Path, list[str]]]:
    """Each module's path (relative to the package) and every module name it imports."""
    for path in sorted(ROOT.rglob("*.py")):
        imported = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"  # resolved below by absolute name only
                imported.append(node.module or "")
        yield path.relative_to(ROOT), imported


def _top(name: str) -> str:
    return name.split(".")[0]


def _node(relative: Path) -> str:
    """`batch_pipeline.X.Y` is node `X`."""
    return relative.parts[0].removesuffix(".py")


def test_the_stages_import_no_dagster():
    found = [f"{path} imports {name}" for path, names in _modules() if path.parts[0] in STAGES
             for name in names if _top(name).startswith("dagster") or name.startswith("batch_pipeline.dagster")]
    assert found == []


# Each provider SDK and the modules allowed to import it: its adapter, and the local Batch API.
SDK_IMPORTERS = {
    "openai": ("openai_", "azure_api.py"),
    "anthropic": ("anthropic_",),
    "google": ("gemini_",),
}


@pytest.mark.parametrize("sdk", sorted(SDK_IMPORTERS))
def test_only_its_adapter_and_the_local_api_import_a_provider_sdk(sdk: str):
    def adapter(path: Path) -> bool:
        return path.parts[0] == "local_api" or (
            path.parts[0] == "provider" and path.name.startswith(SDK_IMPORTERS[sdk]))

    found = [f"{path} imports {name}" for path, names in _modules() if not adapter(path)
             for name in names if _top(name) == sdk]
    assert found == []


def _graph() -> dict[str, set[str]]:
    """Node to the nodes it imports."""
    graph: dict[str, set[str]] = {}
    for path, names in _modules():
        source = _node(path)
        for name in names:
            parts = name.split(".")
            if parts[0] == "batch_pipeline" and len(parts) > 1 and parts[1] != source:
                graph.setdefault(source, set()).add(parts[1])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as its path, or None (depth first, the path kept on the way)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    return next((c for node in sorted(graph) if (c := visit(node, []))), None)


def test_the_top_level_packages_import_each_other_in_no_circle():
    """`provider`, `requests`, `use_case`, `state`, `harvest`, `warehouse`, `sources`, `spec`,
    `cost`, `index_status`, `errors`, and every other top-level package or module beside them,
    the Dagster layer included."""
    graph = _graph()
    assert {"provider", "requests", "use_case", "state", "harvest", "spec"} <= graph.keys()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_a_circle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
