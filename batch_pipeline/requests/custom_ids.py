"""Stable, portable `custom_id`s derived from a source row's key, unique by construction.

A key that matches `[A-Za-z0-9_-]{1,64}` is used as it is, so a user can find the row by eye in
a provider file. Any other key is hashed (`k_` + 32 hex digits), stable across reruns and
machines. Ids the pipeline makes itself have shapes no plain key keeps: a hashed id, and the ids
of rejected rows (`nokey-…`, `dup-…`, `bad-…` and 20 hex digits, a hash of the row's own cells
and of how many rejected rows before it had the same ones, so the id stays where it is when
other rows are inserted before it; earlier versions numbered them by the row's place, and that
shape is still reserved). A key spelled in one of those shapes is hashed like any non-portable
key, so it can never take another row's id, and a rejected row's id can never be a sent row's.
"""

from __future__ import annotations

import hashlib
import re

import pyarrow as pa
import pyarrow.compute as pc

PORTABLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PORTABLE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Shapes of ids the pipeline derives; a plain key of one of these shapes is hashed too.
_DERIVED_PATTERN = r"^(?:k_[0-9a-f]{32}|(?:nokey|dup|bad)-(?:[0-9]+|[0-9a-f]{20}))$"
DERIVED = re.compile(_DERIVED_PATTERN[1:-1])
# Why a row was rejected before it had an id of its own, and the prefix of the id it gets instead.
NO_KEY, DUPLICATE_KEY, MALFORMED = "nokey", "dup", "bad"


def custom_id_for(key: str) -> str:
    """The custom_id of one key."""
    if PORTABLE.fullmatch(key) and not DERIVED.fullmatch(key):
        return key
    return "k_" + hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def rejected_id(reason: str, cells: str, occurrence: int) -> str:
    """The id of a row rejected for its key (`NO_KEY`, `DUPLICATE_KEY`) or its line
    (`MALFORMED`), from its `cells` (as text) and its `occurrence` among the partition's rejected
    rows with the same reason and cells (1 for the first): unique in the partition, never a
    key's id, and independent of where the row sits."""
    digest = hashlib.blake2b(f"{reason}\x00{occurrence}\x00{cells}".encode(), digest_size=10).hexdigest()
    return f"{reason}-{digest}"


def custom_ids(keys: pa.Array) -> pa.Array:
    """custom_ids for a column of non-null string keys; only the keys that must be are hashed."""
    must = pc.or_(
        pc.invert(pc.match_substring_regex(keys, _PORTABLE_PATTERN)),
        pc.match_substring_regex(keys, _DERIVED_PATTERN),
    )
    if not pc.any(must).as_py():
        return keys
    hashed = [custom_id_for(k) for k in keys.filter(must).to_pylist()]
    return pc.replace_with_mask(keys, must, pa.array(hashed, pa.string()))
