"""Batch webhooks end to end: the served local Batch API signs and sends OpenAI's batch events,
`batch-pipeline webhooks` verifies them with the openai client and records them in a real Dagster
instance, and the real batch monitor acts on them (docs/webhooks.md).

Refused deliveries (forged, stale, malformed) and replays record nothing; a real delivery makes
the monitor list the batches at once, and each partition gets exactly one results run, even
when every delivery is sent twice; a lost delivery is still found by the monitor's listing.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx2
import pytest
from standardwebhooks.webhooks import Webhook

from batch_pipeline import definitions_for, testing
from batch_pipeline.dagster.definitions import prefixed
from batch_pipeline.dagster.sensor import TRIGGER_TAG
from batch_pipeline.dagster.webhook_events import DELIVERIES
from tests.helpers import execute, submit
from tests.local_api.conftest import launch
from tests.ui_location import DAYS, use_cases
from tests.webhook_process import receiver

SECRET = "whsec_" + base64.b64encode(b"webhook test secret, 32 bytes..").decode()
KEY = "sk-test-webhooks"
WAIT = 120.0  # generous: a loaded 2-core machine must never be the reason a test fails


@pytest.fixture
def home(pipeline_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Dagster home the test and the receiver process share (SQLite storages created once)."""
    folder = pipeline_env / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(folder))
    folder.mkdir()
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(folder)):
        pass
    return folder


def _signed(body: bytes, webhook_id: str, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, at, body.decode()),
            "content-type": "application/json"}


def _event(batch_id: str, kind: str = "batch.completed") -> bytes:
    return json.dumps({"id": f"evt_{batch_id}", "object": "event", "created_at": int(time.time()), "type": kind,
                       "data": {"id": batch_id}}).encode()


def _deliveries(instance: dg.DagsterInstance) -> list[dg.AssetObservation]:
    return [r.asset_observation for r in instance.fetch_observations(DELIVERIES, limit=100).records
            if r.asset_observation is not None]


def test_forged_stale_malformed_and_replayed_deliveries_record_nothing(home: Path, tmp_path: Path):
    with receiver(home, tmp_path, SECRET) as url, dg.DagsterInstance.from_config(str(home)) as instance:
        body = _event("batch_abc")
        other = "whsec_" + base64.b64encode(b"not the endpoint's secret at all").decode()
        forged = httpx2.post(url, content=body, headers=_signed(body, "wh_forged", other))
        stale = httpx2.post(url, content=body, headers=_signed(body, "wh_stale", at=datetime.now(UTC)
                                                               - timedelta(minutes=10)))
        unsigned = httpx2.post(url, content=body, headers={"webhook-id": "wh_x", "content-type": "application/json"})
        tampered = httpx2.post(url, content=_event("batch_other"), headers=_signed(body, "wh_tampered"))
        answers = [r.status_code for r in (forged, stale, unsigned, tampered)]
        assert answers == [401, 400, 400, 401]
        assert "does not match" in forged.json()["error"] and "from now" in stale.json()["error"]
        assert _deliveries(instance) == []

        first = httpx2.post(url, content=body, headers=_signed(body, "wh_1"))
        again = httpx2.post(url, content=body, headers=_signed(body, "wh_1"))  # a retry: new timestamp, same id
        assert (first.status_code, first.json()["status"]) == (200, "recorded")
        assert (again.status_code, again.json()["status"]) == (200, "replayed")
        other_kind = _event("resp_1", "response.completed")
        ignored = httpx2.post(url, content=other_kind, headers=_signed(other_kind, "wh_2"))
        assert (ignored.status_code, ignored.json()["status"]) == (200, "ignored")
        [recorded] = _deliveries(instance)
        assert (recorded.partition, recorded.metadata["webhook_id"].value) == ("batch_abc", "wh_1")
    assert SECRET not in (tmp_path / "receiver.log").read_text()


@contextmanager
def pipeline(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *api_flags: str, interval: int,
             pace: float) -> Iterator[tuple[dg.Definitions, dg.DagsterInstance, str]]:
    """The receiver (its URL yielded), the served local Batch API sending to it (each stage of a
    batch taking `pace` seconds), and the `notes` use case on it with the monitor in webhook mode,
    listing every `interval` seconds otherwise."""
    with receiver(home, tmp_path, SECRET) as url:
        monkeypatch.setenv("BATCH_PIPELINE_LOCAL_API_WEBHOOK_SECRET", SECRET)
        server = launch(tmp_path / "api", tmp_path, "--pace-seconds", str(pace), "--webhook-url", url,
                        "--webhook-retry-seconds", "0.2", *api_flags, api_key=KEY)
        try:
            monkeypatch.delenv("BATCH_PIPELINE_LOCAL_API_WEBHOOK_SECRET")
            monkeypatch.setenv("OPENAI_API_KEY", KEY)
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
            (tmp_path / "sources").mkdir(exist_ok=True)
            defs = definitions_for(use_cases(tmp_path / "sources")[:1], monitor_interval_seconds=interval,
                                   webhooks=True)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                yield defs, instance, url
        finally:
            server.stop()
        assert SECRET not in server.log()


@dataclass
class Harvest:
    """What the monitor asked for after its first look at each submitted partition, and its cursor."""

    first_look: list[dg.RunRequest] = field(default_factory=list)
    later: list[dg.RunRequest] = field(default_factory=list)
    cursor: str | None = None


def _harvest(defs: dg.Definitions, instance: dg.DagsterInstance, days: list[str]) -> Harvest:
    """Submit each day and let the monitor look at once, then tick it (running what it asks
    for) until no batch is in flight."""
    seen = Harvest()
    for day in days:
        assert submit(defs, instance, "notes_submit", day).success
        data = testing.tick(defs, instance, seen.cursor)
        seen.cursor = data.cursor
        for request in data.run_requests or []:
            execute(defs, instance, request)
            seen.first_look.append(request)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        data = testing.tick(defs, instance, seen.cursor)
        seen.cursor = data.cursor
        if data.skip_message == testing.IDLE:
            return seen
        for request in data.run_requests or []:
            execute(defs, instance, request)
            seen.later.append(request)
        time.sleep(0.3)
    raise AssertionError(f"still in flight after {WAIT} s: {data.skip_message}")


def _results_runs(instance: dg.DagsterInstance) -> dict[str, int]:
    """Results runs per partition, each checked to have succeeded."""
    runs: dict[str, int] = {}
    for run in instance.get_runs(dg.RunsFilter(job_name="notes_results")):
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.run_id
        runs[run.tags["dagster/partition"]] = runs.get(run.tags["dagster/partition"], 0) + 1
    return runs


def _rows(tmp_path: Path, instance: dg.DagsterInstance, defs: dg.Definitions, day: str) -> int:
    [uc] = prefixed(use_cases(tmp_path / "sources")[:1])
    return testing.results(defs, uc, day).num_rows


def test_each_delivery_sent_twice_makes_one_results_run_per_partition(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    days = list(DAYS[:2])
    # a batch takes about 12 s (three stages of 4 s): still running when the monitor first looks,
    # right after its submit in this process, even on a loaded machine
    with pipeline(home, tmp_path, monkeypatch, "--webhook-duplicate-fraction", "1", interval=3600, pace=4) as (
            defs, instance, url):
        seen = _harvest(defs, instance, days)
        delivered = _deliveries(instance)
        # after the harvest, another delivery for a harvested batch: nothing is listed or launched
        body = _event(delivered[0].partition or "")
        assert httpx2.post(url, content=body, headers=_signed(body, "wh_late")).json()["status"] == "recorded"
        after = testing.tick(defs, instance, seen.cursor)
        assert (after.run_requests or [], after.skip_message) == ([], testing.IDLE)
        assert _results_runs(instance) == {day: 1 for day in days}
        # each batch's event recorded once, though the local API sent each twice
        assert sorted(o.partition for o in delivered[:len(days)]) == sorted({o.partition for o in delivered})
        assert len(delivered) == len(days)
        # listing every hour, the monitor asked for the results once a delivery came in
        assert seen.later and all(r.tags[TRIGGER_TAG] == "webhook" for r in seen.later), seen
        assert len(seen.first_look) + len(seen.later) == len(days)
        assert [_rows(tmp_path, instance, defs, day) for day in days] == [3, 3]


def test_a_lost_delivery_is_found_by_the_monitors_listing(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pipeline(home, tmp_path, monkeypatch, "--webhook-drop-fraction", "1", interval=2, pace=0.3) as (
            defs, instance, _):
        seen = _harvest(defs, instance, [DAYS[2]])
        assert _deliveries(instance) == []
        assert [r.tags[TRIGGER_TAG] for r in seen.first_look + seen.later] == ["poll"]
        assert _results_runs(instance) == {DAYS[2]: 1}
        assert _rows(tmp_path, instance, defs, DAYS[2]) == 3
