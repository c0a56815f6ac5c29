"""The library's errors: one hierarchy under `BatchPipelineError`.

The stages raise these and know nothing of Dagster; `batch_pipeline/dagster/failures.py` turns
them into run failures in one place. `retryable` says whether running again could succeed: a
setting, a declaration, a blocked submission or a newer state fails the same way every time.
Errors that were a `ValueError`, `LookupError` or `RuntimeError` stay one, so callers catching
those still do.
"""


class BatchPipelineError(Exception):
    """An error the pipeline raises on purpose; its message says what to do, and never shows a key."""

    retryable: bool = True


class SpecError(BatchPipelineError, ValueError):
    """A use case's declaration cannot work; the message names the spec and the field."""

    retryable = False


class UnpricedModel(BatchPipelineError, LookupError):
    """The spec's model has no known batch price and the spec configures none, so no cost can be
    estimated or checked against a budget; the message names the spec and the setting to add."""

    retryable = False  # a retry meets the same price table


class SourceError(BatchPipelineError, ValueError):
    """A table that cannot be read at all; the message names it and, where it can, the line."""


class ProviderSettingError(BatchPipelineError, ValueError):
    """A provider setting is missing or unusable; the message names the setting, never a key."""

    retryable = False


class QuotaRefused(BatchPipelineError):
    """The provider refused to create a batch because the model's enqueued-token quota is full.
    Nothing was created, so the shard can wait and be sent again under the same key."""


class ProviderUnavailable(BatchPipelineError):
    """A call to the provider failed (network, 429, 5xx, timeout); the message names the call and
    the error's type, never the provider's text, which may echo request details."""


class SubmissionBlocked(BatchPipelineError):
    """A shard's intent has no batch id and the provider holds no key to find its batch by:
    sending again could pay twice. The message names the intent, its time and the candidates."""

    retryable = False


class PartitionBusy(BatchPipelineError, RuntimeError):
    """Another run holds the partition for longer than this run was willing to wait. Not retried:
    the holder's batches are reused when it ends, and a retry would only wait again."""

    retryable = False


class StateVersionError(BatchPipelineError, ValueError):
    """A partition's state was recorded by a newer version of the pipeline than this one."""

    retryable = False


class NotTerminal(BatchPipelineError, RuntimeError):
    """A batch to harvest is still running: the partition waits; nothing is written."""
