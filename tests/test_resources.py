"""The Batch API resource: the provider rule, one client per instance, no key in descriptions."""

from __future__ import annotations

import dagster as dg
import pydantic
import pytest

from batch_pipeline import (
    BatchAPIResource,
    LocalBatchAPIResource,
    LocalBatchAPISettings,
    OpenAIProviderResource,
)
from batch_pipeline.local_api import LocalAPISettings
from batch_pipeline.local_api.embedded import EMBEDDED_BASE_URL

KEY = "sk-test-canary-0123456789"


def test_no_key_selects_the_embedded_local_batch_api(pipeline_env):
    with dg.build_resources({"batch_api": BatchAPIResource()}) as resources:  # no config error either
        batch_api = resources.batch_api
        assert batch_api.selected() is batch_api.local
        assert str(batch_api.api().client.base_url).rstrip("/") == EMBEDDED_BASE_URL
        assert str(pipeline_env / "local_api") in batch_api.describe()  # BATCH_PIPELINE_LOCAL_API_DIR


def test_a_key_selects_openai_with_its_base_url(pipeline_env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "https://batch.example.test/v1")
    with dg.build_resources({"batch_api": BatchAPIResource()}) as resources:
        batch_api = resources.batch_api
        assert batch_api.selected() is batch_api.openai
        client = batch_api.api().client
        assert str(client.base_url) == "https://batch.example.test/v1/" and client.api_key == KEY
        assert batch_api.describe() == "https://batch.example.test/v1"

    configured = BatchAPIResource(openai=OpenAIProviderResource(base_url="https://other.example.test/v1"))
    assert str(configured.client().base_url) == "https://other.example.test/v1/"


def test_the_rule_is_evaluated_when_the_resource_initializes_not_when_it_is_built(pipeline_env, monkeypatch):
    batch_api = BatchAPIResource()  # as Definitions build it, at import time, with no key
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with dg.build_resources({"batch_api": batch_api}) as resources:
        assert resources.batch_api.selected() is resources.batch_api.openai


@pytest.mark.parametrize("key", [None, KEY])
def test_one_client_and_one_connection_per_instance(pipeline_env, monkeypatch, key):
    if key:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    batch_api = BatchAPIResource()
    assert batch_api.client() is batch_api.client()
    assert batch_api.api() is batch_api.api() and batch_api.api().client is batch_api.client()
    with dg.build_resources({"batch_api": batch_api}) as first, dg.build_resources({"batch_api": batch_api}) as second:
        # Dagster initializes a copy per run or sensor tick: one client each, kept for its duration.
        assert first.batch_api.api() is first.batch_api.api()
        assert first.batch_api.api() is not second.batch_api.api()


def test_describe_never_contains_the_key(pipeline_env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"https://user:{KEY}@batch.example.test/v1?api-key={KEY}")
    explicit = OpenAIProviderResource(api_key=KEY, base_url=f"https://batch.example.test/v1?key={KEY}")
    for batch_api in (BatchAPIResource(), BatchAPIResource(openai=explicit)):
        assert batch_api.describe() == "https://batch.example.test/v1"
    assert KEY not in repr(BatchAPIResource(openai=OpenAIProviderResource(api_key=KEY)))


def test_local_settings_are_typed_config(pipeline_env):
    assert set(LocalBatchAPISettings.model_fields) == set(LocalAPISettings.model_fields)
    local = LocalBatchAPIResource(settings=LocalBatchAPISettings(pace_seconds=0.1, enqueued_token_limits={"m": 5}))
    assert local.api_settings() == LocalAPISettings(pace_seconds=0.1, enqueued_token_limits={"m": 5})

    misspelt, mistyped = {"pace_secs": 0.1}, {"pace_seconds": "slow"}
    incomplete = {"enqueued_token_limits": {"m": None}}
    for bad in (misspelt, mistyped, incomplete, {"pace_seconds": -1}):
        with pytest.raises(pydantic.ValidationError):
            LocalBatchAPISettings(**bad)

    for bad in (misspelt, mistyped, incomplete):
        with pytest.raises(dg.DagsterInvalidConfigError):  # set from the launchpad: rejected by its schema
            with dg.build_resources({"local": LocalBatchAPIResource.configure_at_launch()},
                                    resource_config={"local": {"config": {"settings": bad}}}):
                pass


def test_every_process_resolves_the_same_places_whatever_its_folder(tmp_path, monkeypatch):
    """Unset: under $DAGSTER_HOME, shared by the webserver, the daemon and every run."""
    from batch_pipeline import LocalBatchAPIResource, WarehouseResource

    for name in ("BATCH_PIPELINE_WAREHOUSE", "BATCH_PIPELINE_LOCAL_API_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    places = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        places.add((str(WarehouseResource().warehouse().root), str(LocalBatchAPIResource().folder())))
    assert places == {(str(tmp_path / "home" / "warehouse"), str(tmp_path / "home" / "local_batch_api"))}


def test_a_relative_warehouse_is_refused_with_the_setting_named(monkeypatch):
    from batch_pipeline import WarehouseResource

    monkeypatch.setenv("BATCH_PIPELINE_WAREHOUSE", "warehouse")
    with pytest.raises(ValueError, match="BATCH_PIPELINE_WAREHOUSE is the relative path 'warehouse'"):
        WarehouseResource().warehouse()
