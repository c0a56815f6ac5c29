"""Real `dagster dev` (webserver and daemon) over `tests/ui_location.py`, driven through GraphQL.

`running(root, pace_seconds=...)` starts it on a free loopback port with a DAGSTER_HOME holding a copy
of deploy/dagster.yaml, and a warehouse and embedded local Batch API under `root`; it yields a
`DagsterDev` whose methods send the queries and mutations the UI sends. The process group it
started is stopped on exit. Used by tests/test_dagster_dev.py and benchmarks/bench_turnaround.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import PROJECT_ROOT, free_loopback_port
from tests.helpers import stop_group

LOCATION = "ui"
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"
_LOCATION_FILE = """from pathlib import Path

from tests.ui_location import build

defs = build(Path(__file__).parent / "sources", **{options!r})
"""

_LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
_RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId status jobName startTime endTime tags { key value } } } } }"""
_FAILURE = """query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
  __typename ... on ExecutionStepFailureEvent { error { message } } ... on RunFailureEvent { message } } } } }"""
_CHECKS = """query($key: AssetKeyInput!, $name: String!) { assetCheckExecutions(assetKey: $key, checkName: $name,
  limit: 50) { partition status runId } }"""
_PARTITIONS = """query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetKey { path }
  partitionStats { numMaterialized numFailed numMaterializing } } }"""
_MATERIALIZATIONS = """query($keys: [AssetKeyInput!], $partition: String!) { assetNodes(assetKeys: $keys) {
  assetMaterializations(partitions: [$partition], limit: 20) { runId metadataEntries { label } } } }"""
_RECORDS = """query($keys: [AssetKeyInput!], $partition: String!) { assetNodes(assetKeys: $keys) {
  assetMaterializations(partitions: [$partition], limit: 20) { runId metadataEntries { label
    ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
  } } } }"""
_STALE = """query($keys: [AssetKeyInput!], $partition: String!) { assetNodes(assetKeys: $keys) { assetKey { path }
  staleStatus(partition: $partition) staleCauses(partition: $partition) { reason } } }"""
_CHECK_PARTITIONS = """query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetChecksOrError {
  ... on AssetChecks { checks { name blocking partitionStatuses { __typename
    ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } } } } } }"""
_LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class DagsterDev:
    """A running `dagster dev`, spoken to as the UI speaks to it."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root, self.log = url, root, root / "dagster_dev.log"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # GraphQL errors come back as a 4xx/5xx with a body
            answer = json.loads(exc.read() or b"{}") or {"errors": str(exc)}
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def materialize(self, asset_keys: list[list[str]], partition: str | None = None, job: str = ASSET_JOB) -> str:
        """Launch a run of the asset selection ("Materialize" / "Materialize all"); its run id."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job,
                    "assetSelection": [{"path": key} for key in asset_keys]}
        tags = [{"key": "dagster/partition", "value": partition}] if partition else []
        params = {"selector": selector, "mode": "default", "runConfigData": {},
                  "executionMetadata": {"tags": tags}}
        launched = self.graphql(_LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def backfill(self, asset_keys: list[list[str]], partitions: list[str]) -> str:
        """Launch a backfill of the asset selection over `partitions` (the partitions dialog)."""
        params = {"assetSelection": [{"path": key} for key in asset_keys], "partitionNames": partitions,
                  "fromFailure": False, "tags": []}
        launched = self.graphql(_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        return launched["backfillId"]

    def runs(self, **run_filter: Any) -> list[dict]:
        """The run list, newest first, each run's tags as a dict."""
        results = self.graphql(_RUNS, {"filter": run_filter})["runsOrError"]["results"]
        return [{**run, "tags": {t["key"]: t["value"] for t in run["tags"]}} for run in results]

    def failure(self, run_id: str) -> str:
        events = self.graphql(_FAILURE, {"runId": run_id})["logsForRun"]["events"]
        return " | ".join(e.get("error", {}).get("message") or e.get("message") or "" for e in events
                          if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent"))

    def check_executions(self, asset_key: list[str], check: str) -> list[dict]:
        return self.graphql(_CHECKS, {"key": {"path": asset_key}, "name": check})["assetCheckExecutions"]

    def partition_stats(self, asset_keys: list[list[str]]) -> dict[str, dict]:
        nodes = self.graphql(_PARTITIONS, {"keys": [{"path": key} for key in asset_keys]})["assetNodes"]
        return {"/".join(node["assetKey"]["path"]): node["partitionStats"] for node in nodes}

    def materializations(self, asset_key: list[str], partition: str) -> list[dict]:
        """The partition's materializations, newest first: each run id and its metadata labels."""
        variables = {"keys": [{"path": asset_key}], "partition": partition}
        [node] = self.graphql(_MATERIALIZATIONS, variables)["assetNodes"]
        return [{"runId": m["runId"], "labels": {e["label"] for e in m["metadataEntries"]}}
                for m in node["assetMaterializations"]]

    def records(self, asset_key: list[str], partition: str) -> list[dict]:
        """The partition's materializations, newest first: each run id and its metadata values."""
        variables = {"keys": [{"path": asset_key}], "partition": partition}
        [node] = self.graphql(_RECORDS, variables)["assetNodes"]
        return [{"runId": m["runId"], "metadata": {e["label"]: e.get("text", e.get("intValue", e.get("floatValue")))
                                                   for e in m["metadataEntries"]}}
                for m in node["assetMaterializations"]]

    def stale(self, asset_keys: list[list[str]], partition: str) -> dict[str, tuple[str, list[str]]]:
        """Each asset's `staleStatus` for the partition (the UI's "Unsynced"), with the causes' reasons."""
        nodes = self.graphql(_STALE, {"keys": [{"path": k} for k in asset_keys], "partition": partition})["assetNodes"]
        return {"/".join(n["assetKey"]["path"]): (n["staleStatus"], [c["reason"] for c in n["staleCauses"]])
                for n in nodes}

    def check_partitions(self, asset_key: list[str]) -> dict[str, dict]:
        """Each check's `blocking` and `partitionStatuses` ranges (its Partitions tab)."""
        [node] = self.graphql(_CHECK_PARTITIONS, {"keys": [{"path": asset_key}]})["assetNodes"]
        return {c["name"]: {"blocking": c["blocking"], "ranges": (c["partitionStatuses"] or {}).get("ranges", [])}
                for c in node["assetChecksOrError"]["checks"]}

    def wait_for(self, what: str, found: Callable[[], Any], timeout: float = 300) -> Any:
        """Poll `found` until it returns something truthy; fail naming `what` and the log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = found()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}\n{self.log.read_text(errors='replace')[-4000:]}")

    def finished(self, run_id: str) -> dict:
        """The run once it has finished (succeeded, failed or was canceled)."""
        def ended() -> dict | None:
            [run] = self.runs(runIds=[run_id])
            return run if run["status"] in FINISHED else None
        return self.wait_for(f"run {run_id} to finish", ended)

    def _location_loaded(self) -> bool:
        try:
            entries = self.graphql(_LOCATIONS)["workspaceOrError"]["locationEntries"]
        except OSError:
            return False
        loaded = [e["locationOrLoadError"] for e in entries if e["name"] == LOCATION]
        assert not loaded or loaded[0]["__typename"] != "PythonError", loaded[0]
        return bool(loaded) and loaded[0]["__typename"] == "RepositoryLocation"


def environment(root: Path) -> dict[str, str]:
    """Everything under `root`: Dagster's home, the warehouse, the local Batch API; no key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI_"))}
    return env | {
        "DAGSTER_HOME": str(root / "dagster_home"), "BATCH_PIPELINE_WAREHOUSE": str(root / "warehouse"),
        "BATCH_PIPELINE_LOCAL_API_DIR": str(root / "local_api"),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }


def _write_home(root: Path, options: dict[str, Any]) -> Path:
    """DAGSTER_HOME with the shipped dagster.yaml, and a workspace naming the location file."""
    (root / "dagster_home").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.yaml", root / "dagster_home" / "dagster.yaml")
    (root / "location.py").write_text(_LOCATION_FILE.format(options=options))
    workspace = root / "workspace.yaml"
    workspace.write_text(json.dumps({"load_from": [{"python_file": {
        "relative_path": str(root / "location.py"), "working_directory": str(PROJECT_ROOT),
        "location_name": LOCATION}}]}))
    return workspace


@contextmanager
def running(root: Path, extra_env: dict[str, str] | None = None, **options: Any) -> Iterator[DagsterDev]:
    """`dagster dev` on a free loopback port, until the location is loaded; stopped on exit.
    `options` go to `tests.ui_location.build` (`pace_seconds` is required); `extra_env` is added
    to its environment (a served Batch API's `OPENAI_API_KEY` and `OPENAI_BASE_URL`)."""
    workspace, port = _write_home(root, options), free_loopback_port()
    with open(root / "dagster_dev.log", "wb") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1",
             "-p", str(port)], cwd=root, env=environment(root) | (extra_env or {}), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    dev = DagsterDev(f"http://127.0.0.1:{port}", root)
    try:
        dev.wait_for("the code location to load", lambda: server.poll() is None and dev._location_loaded(), 240)
        yield dev
    finally:
        stop_group(server)



