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
