"""Translate botocore failures of DynamoDB calls into domain errors."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from gateway.errors import UpstreamUnavailableError

RETRY_SECONDS = 1.0


def unavailable(exc: ClientError | BotoCoreError) -> UpstreamUnavailableError:
    """DynamoDB unreachable, throttling or failing: the caller should retry later."""
    return UpstreamUnavailableError(
        "the booking database is unavailable right now; retry shortly", retry_after_seconds=RETRY_SECONDS
    )
