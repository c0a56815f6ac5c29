"""The order and eligibility of deleting a harvested partition's provider files
(docs/decisions.md, "Provider file cleanup").

A results run notes its batches' files before it writes anything, writes the Parquet and the
raw copies, and only then deletes what is noted: a run killed in between leaves the note, and the
next results run deletes the files. A noted file is deleted only when the warehouse holds its
bytes: an input file always (the request shards are written before any upload), an output or
error file once its raw copy is kept. Pure: the harvest passes what the warehouse holds.
"""

from __future__ import annotations

from typing import Literal

CleanupStep = Literal["note", "write", "delete"]


def cleanup_steps(delete_files: bool) -> tuple[CleanupStep, ...]:
    """A results step's steps, in order: note the files, write the results, delete the noted
    files; only the write when the resource keeps provider files."""
    return ("note", "write", "delete") if delete_files else ("write",)


def needs_raw_copy(kind: str) -> bool:
    """Whether a noted provider file may be deleted only once its raw copy is in the warehouse:
    output and error files; an input file's bytes are the request shard, written before upload."""
    return kind != "input"
