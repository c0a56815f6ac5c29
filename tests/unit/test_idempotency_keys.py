"""Idempotency keys: the same work gives the same key; deployments never share one."""

from batch_pipeline.provider.submission import Shard, batch_metadata, idempotency_key

SHARD = Shard(0, "uc/requests/partition=p/shard-00000.jsonl", b'{"custom_id":"a"}\n')


def test_the_default_deployment_keeps_the_keys_of_earlier_versions():
    # pinned: batches created before deployment names existed must still be found
    assert idempotency_key("uc", "2026-11-20", SHARD) == "9ef9d0c3a03ca188afb88cdeb0e66d233b14e9b8"


def test_deployments_sharing_one_project_get_different_keys():
    keys = {idempotency_key("uc", "2026-11-20", SHARD, d) for d in ("", "staging", "production")}
    assert len(keys) == 3
    assert batch_metadata("uc", "2026-11-20", "gpt-4o-mini", SHARD, "staging")["deployment"] == "staging"
    assert "deployment" not in batch_metadata("uc", "2026-11-20", "gpt-4o-mini", SHARD)
