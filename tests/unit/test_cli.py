"""The command line takes no secret: a command line is visible to every user of the machine (`ps`)."""

from __future__ import annotations

import argparse

import pytest

from batch_pipeline.cli import main
from batch_pipeline.local_api.settings import add_settings_arguments, settings_from_args


@pytest.mark.parametrize("flag", ["--api-key", "--upstream-api-key", "--webhook-secret"])
def test_a_key_is_refused_as_a_flag(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["local-api", "--data-dir", "unused", flag, "sk-on-the-command-line"])
    assert exited.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_the_upstream_key_comes_from_its_variable() -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    flags = parser.parse_args(["--upstream-url", "http://127.0.0.1:9/v1"])
    assert settings_from_args(flags, {}).upstream_api_key is None
    settings = settings_from_args(flags, {"BATCH_PIPELINE_UPSTREAM_API_KEY": "sk-upstream"})
    assert settings.upstream_api_key == "sk-upstream" and settings.upstream_url == "http://127.0.0.1:9/v1"


def test_a_switch_is_a_flag_without_a_value() -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    assert settings_from_args(parser.parse_args([]), {}).azure_quota_fail_fast is False
    assert settings_from_args(parser.parse_args(["--azure-quota-fail-fast"]), {}).azure_quota_fail_fast is True


def test_the_webhook_secrets_come_from_their_variables(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    flags = parser.parse_args(["--webhook-url", "http://127.0.0.1:9/webhooks/openai"])
    with pytest.raises(ValueError, match="BATCH_PIPELINE_LOCAL_API_WEBHOOK_SECRET"):
        settings_from_args(flags, {})
    assert settings_from_args(flags, {"BATCH_PIPELINE_LOCAL_API_WEBHOOK_SECRET": "whsec_x"}).webhook_secret == "whsec_x"
    monkeypatch.delenv("OPENAI_WEBHOOK_SECRET", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["webhooks"])  # the receiver refuses to start without its secret
    assert exited.value.code == 2 and "OPENAI_WEBHOOK_SECRET" in capsys.readouterr().err
