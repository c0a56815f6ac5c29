"""Stable, portable `custom_id`s derived from a source row's key.

A key that already matches `[A-Za-z0-9_-]{1,64}` is used as it is, so a user can find the row
by eye in a provider file. Any other key is hashed (`k_` + 32 hex digits), which is stable across
reruns and machines and cannot collide with a portable key of the same shape in practice.
"""

from __future__ import annotations

import hashlib
import re

import pyarrow as pa
import pyarrow.compute as pc

PORTABLE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PORTABLE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def custom_id_for(key: str) -> str:
    """The custom_id of one key."""
    if PORTABLE.fullmatch(key):
        return key
    return "k_" + hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def custom_ids(keys: pa.Array) -> pa.Array:
    """custom_ids for a column of non-null string keys; only the non-portable ones are hashed."""
    portable = pc.match_substring_regex(keys, _PORTABLE_PATTERN)
    if pc.all(portable).as_py() is not False:
        return keys
    hashed = [custom_id_for(k) for k in keys.filter(pc.invert(portable)).to_pylist()]
    return pc.replace_with_mask(keys, pc.invert(portable), pa.array(hashed, pa.string()))
