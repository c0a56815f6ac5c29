"""The order and eligibility of deleting provider files, as tables."""

from __future__ import annotations

import pytest

from batch_pipeline.state.cleanup import cleanup_steps, needs_raw_copy


@pytest.mark.parametrize(
    ("delete_files", "expected"),
    [
        (True, ("note", "write", "delete")),  # noted before the Parquet, deleted after it
        (False, ("write",)),  # provider files kept: nothing noted, nothing deleted
    ],
)
def test_cleanup_steps(delete_files: bool, expected: tuple[str, ...]) -> None:
    assert cleanup_steps(delete_files) == expected


@pytest.mark.parametrize(
    ("kind", "raw_copy_needed"),
    [
        ("input", False),  # the request shard is in the warehouse before any upload
        ("output", True),  # deleted only once its raw copy is kept
        ("error", True),
    ],
)
def test_needs_raw_copy(kind: str, raw_copy_needed: bool) -> None:
    assert needs_raw_copy(kind) is raw_copy_needed
