import pyarrow as pa
import pytest

from batch_pipeline.requests.custom_ids import PORTABLE, custom_id_for, custom_ids


def test_portable_keys_are_kept_as_they_are():
    assert custom_id_for("MED-0001") == "MED-0001"
    assert custom_ids(pa.array(["a", "b_2", "C-3"])).to_pylist() == ["a", "b_2", "C-3"]


def test_other_keys_are_hashed_stably_and_portably():
    keys = ["name with spaces", "ü-umlaut", "x" * 65, "emoji 🎉", "a/b"]
    ids = custom_ids(pa.array(keys)).to_pylist()
    assert ids == [custom_id_for(k) for k in keys]
    assert all(PORTABLE.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(keys)
    assert custom_id_for("name with spaces") == custom_id_for("name with spaces")


def test_mixed_column_hashes_only_what_it_must():
    ids = custom_ids(pa.array(["ok-1", "not ok", "ok-2"])).to_pylist()
    assert ids[0] == "ok-1" and ids[2] == "ok-2" and ids[1].startswith("k_")


# Pinned literally: a custom_id is joined against provider files and results written by earlier
# runs, so any change of the derivation (hash, digest size, prefix, portable rule) must be a
# deliberate, visible change of this table, never an accident.
GOLDEN = {
    "MED-0001": "MED-0001",  # portable: returned as it is
    "a" * 64: "a" * 64,  # the longest portable key
    "patient 42/ü": "k_67c62d6392b6424f3fdf2ee24d01134d",  # characters outside [A-Za-z0-9_-]
    "x" * 65: "k_e7d347aafb04b4783db0f88621284c94",  # one character over the limit
    "": "k_cae66941d9efbd404e4d88758ea67670",  # empty
}


@pytest.mark.parametrize("key", list(GOLDEN), ids=["plain", "64-chars", "non-portable", "over-long", "empty"])
def test_golden_custom_ids(key):
    assert custom_id_for(key) == GOLDEN[key]
    assert custom_ids(pa.array([key])).to_pylist() == [GOLDEN[key]]
