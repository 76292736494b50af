"""Retry policies and failure helpers the workflows share.

Pure: the standard library and temporalio only, so a workflow module that imports it stays free
of I/O code (tests/test_import_rules.py checks). A policy is part of the command that schedules
an activity, so changing one changes what new runs record, not how old histories replay.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from core.contracts import ERR_PROVIDER_REJECTED

# Provider calls: 5xx and network errors back off; 429 waits the provider's retry_after (the
# activity sets next_retry_delay); 4xx input errors are non-retryable.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
# A storage outage is waited out; an expired output URL is non-retryable.
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
CANCEL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
# A failed poll is simply tried again at the next poll: no retries of its own.
POLL_RETRY = RetryPolicy(maximum_attempts=1)
# A database outage is waited out rather than failing the job or the run.
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30)
)
SWEEP_RETRY = RetryPolicy(maximum_attempts=3)
PRUNE_RETRY = RetryPolicy(maximum_attempts=5)


def page_retry(max_attempts: int) -> RetryPolicy:
    """A sync run's page activity: `max_attempts` tries (the run's MAX_RETRIES), 4xx excepted."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=max(1, max_attempts),
        non_retryable_error_types=[ERR_PROVIDER_REJECTED],
    )


def error_type(error: BaseException) -> str | None:
    """The ApplicationError type of an activity failure (a local activity's may come unwrapped)."""
    cause: BaseException | None = error
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def describe_failure(error: BaseException) -> str:
    """The most useful message of an activity failure (the provider's own, when it has one)."""
    cause: BaseException | None = error
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, TimeoutError):
        return f"timed out ({cause.type.name.lower() if cause.type else 'timeout'})"
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause) if cause is not None else "unknown error"
