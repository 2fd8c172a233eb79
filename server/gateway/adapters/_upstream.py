"""Translating AWS client failures into domain errors, at the edge where they arise.

Unreachable, timing out, throttling us or failing on its side (HTTP 5xx) all mean the same to a caller: the
gateway cannot serve this now, retry shortly (`UpstreamUnavailableError` with a retry delay). Log lines name the
service, the operation and the error code, never the AWS message: Cognito's messages may contain the address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from gateway.errors import GatewayError, UpstreamUnavailableError

log = logging.getLogger(__name__)

UNREACHABLE_RETRY_SECONDS = 1.0
THROTTLED_RETRY_SECONDS = 2.0
UNAVAILABLE_MESSAGE = "a service the gateway depends on is unavailable; retry shortly"

THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "SlowDown",
    }
)


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError ("" when absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def unavailable(service: str, operation: str, exc: Exception) -> UpstreamUnavailableError | None:
    """The domain error for a failure that means "retry later", or None when `exc` means something else."""
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        log.warning(
            "upstream unreachable",
            extra={"service": service, "operation": operation, "error": type(exc).__name__},
        )
        return UpstreamUnavailableError(UNAVAILABLE_MESSAGE, retry_after_seconds=UNREACHABLE_RETRY_SECONDS)
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in THROTTLING_CODES:
            log.warning("upstream throttling", extra={"service": service, "operation": operation, "error": code})
            return UpstreamUnavailableError(UNAVAILABLE_MESSAGE, retry_after_seconds=THROTTLED_RETRY_SECONDS)
        if _status(exc) >= 500:
            log.warning("upstream failed", extra={"service": service, "operation": operation, "error": code})
            return UpstreamUnavailableError(UNAVAILABLE_MESSAGE, retry_after_seconds=UNREACHABLE_RETRY_SECONDS)
    return None


@contextmanager
def translated(
    service: str,
    operation: str,
    known: Mapping[str, Callable[[], GatewayError]] | None = None,
    *,
    hide_unknown: bool = False,
) -> Iterator[None]:
    """Turn AWS failures inside the block into domain errors (`raise ... from exc`).

    `known` maps error codes to the domain error they mean. Failures that mean "retry later" become
    `UpstreamUnavailableError`. Any other ClientError propagates unchanged (a bug: INTERNAL), unless
    `hide_unknown`, for services whose messages may carry personal data: then it is logged by code and reported
    as unavailable.
    """
    try:
        yield
    except (ClientError, BotoConnectionError, HTTPClientError) as exc:
        if isinstance(exc, ClientError) and known and error_code(exc) in known:
            raise known[error_code(exc)]() from exc
        translated_error = unavailable(service, operation, exc)
        if translated_error is not None:
            raise translated_error from exc
        if isinstance(exc, ClientError) and hide_unknown:
            log.error(
                "unexpected upstream error",
                extra={"service": service, "operation": operation, "error": error_code(exc)},
            )
            raise UpstreamUnavailableError(UNAVAILABLE_MESSAGE, retry_after_seconds=UNREACHABLE_RETRY_SECONDS) from exc
        raise
