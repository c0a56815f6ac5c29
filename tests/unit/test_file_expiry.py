"""How long the provider keeps our files: the spec's setting over the provider's, within the range
each provider accepts; and the batch's own usage read from OpenAI's and Azure's forms."""

from __future__ import annotations

import pytest
from openai.types import Batch

from batch_pipeline import BatchSpec, SpecError
from batch_pipeline.provider.azure_api import AzureOpenAIProvider
from batch_pipeline.provider.contract import BatchUsage, ProviderSettingError
from batch_pipeline.provider.openai_api import OpenAIProvider
from batch_pipeline.provider.openai_wire import provider_batch

DAY = 86400
SPEC = BatchSpec(name="notes", model="gpt-4o-mini", prompt="Summarise: {text}")
AZURE = AzureOpenAIProvider("https://example.openai.azure.com", "2024-10-21", deployments={"gpt-4o-mini": "batch"})


def expiry(provider, spec: BatchSpec) -> tuple[int, int]:
    encoding = provider.encoding(spec)
    return encoding.input_expires_after, encoding.output_expires_after


def test_defaults_and_the_spec_over_the_provider() -> None:
    assert expiry(OpenAIProvider(), SPEC) == (7 * DAY, 30 * DAY)
    assert expiry(AZURE, SPEC) == (14 * DAY, 30 * DAY)
    own = OpenAIProvider(input_expires_after_seconds=DAY, output_expires_after_seconds=2 * DAY)
    assert expiry(own, SPEC) == (DAY, 2 * DAY)
    spec = BatchSpec(name="notes", model="gpt-4o-mini", prompt="Summarise: {text}", output_expires_after_seconds=3600)
    assert expiry(own, spec) == (DAY, 3600)


def test_a_spec_outside_openai_s_range_is_refused_when_declared() -> None:
    for value in (60, 31 * DAY):
        with pytest.raises(SpecError, match="input_expires_after_seconds must be 3600..2592000"):
            BatchSpec(name="notes", model="gpt-4o-mini", prompt="{text}", input_expires_after_seconds=value)


def test_azure_refuses_less_than_two_weeks_before_anything_is_uploaded() -> None:
    spec = BatchSpec(name="notes", model="gpt-4o-mini", prompt="{text}", output_expires_after_seconds=DAY)
    with pytest.raises(ProviderSettingError, match=r"spec 'notes': output_expires_after_seconds=86400 .* azure "
                                                   r"accepts \(1209600..2592000 seconds\)"):
        AZURE.encoding(spec)
    assert expiry(OpenAIProvider(), spec) == (7 * DAY, DAY)  # OpenAI keeps files from an hour


def batch(**fields) -> Batch:
    return Batch.construct(id="batch_1", object="batch", endpoint="/v1/chat/completions", input_file_id="file-1",
                           completion_window="24h", status="completed", created_at=1, **fields)


def test_the_batch_s_own_usage_and_model() -> None:
    usage = {"input_tokens": 150, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 50,
             "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 200}
    read = provider_batch(batch(model="gpt-4o-mini-2024-07-18", usage=usage))
    assert (read.model, read.usage) == ("gpt-4o-mini-2024-07-18", BatchUsage(150, 100, 50, 30, 200))
    older = provider_batch(batch())  # before 2025-09-07, or Azure: no usage at all
    assert (older.model, older.usage) == (None, None)
