"""The batch monitor's cursor never reads a state of a newer version: it reads every record again."""

from __future__ import annotations

import json

from batch_pipeline.dagster.sensor import MonitorCursor
from batch_pipeline.state.partition_state import SCHEMA_VERSION, PartitionState


def test_a_cursor_holding_a_newer_state_is_read_again_from_the_records() -> None:
    cursor = MonitorCursor({"uc__batches": 5}, {"uc|p": PartitionState("uc", "p", record_id=5)},
                           refused={"uc|q": "newer"})
    assert MonitorCursor.load(cursor.dump()) == cursor
    data = json.loads(cursor.dump())
    data["watched"]["uc|p"]["schema_version"] = SCHEMA_VERSION + 1
    assert MonitorCursor.load(json.dumps(data)) == MonitorCursor()


def test_when_it_last_listed_and_the_last_webhook_read_survive_a_tick() -> None:
    cursor = MonitorCursor({"uc__batches": 5}, polled_at=1_796_000_000.5, webhooks_after=42)
    assert MonitorCursor.load(cursor.dump()) == cursor
    written_before_webhooks = {k: v for k, v in json.loads(cursor.dump()).items()
                               if k not in ("polled_at", "webhooks_after")}
    assert MonitorCursor.load(json.dumps(written_before_webhooks)) == MonitorCursor({"uc__batches": 5})
