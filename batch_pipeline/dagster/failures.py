"""The one place the library's errors become Dagster run failures.

The stages raise `BatchPipelineError`s and know nothing of Dagster; an asset body wraps the call
whose errors should fail its run with a message of its own in `as_failures`, so every failure
reads and retries the same way.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from batch_pipeline.errors import BatchPipelineError


@contextmanager
def as_failures(subject: str) -> Iterator[None]:
    """Turn a `BatchPipelineError` raised in the block into a `dg.Failure` that names `subject`
    (e.g. "spec 'notes'" or "notes 2026-11-20") first, unless the error's message already does.
    It is retried only if the error is `retryable`: a setting, a declaration or a blocked
    submission fails the same way again. The error is not chained: its message is the whole
    story, and the traceback of a stage that raised on purpose would only bury it."""
    try:
        yield
    except BatchPipelineError as exc:
        message, named = str(exc), f"{subject}: "
        raise dg.Failure(message if message.startswith(named) else named + message,
                         allow_retries=exc.retryable) from None
