import pyarrow as pa

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
