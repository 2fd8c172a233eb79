"""Translating AWS client failures into domain errors, at the edge where they arise: the one place every adapter
(Cognito, DynamoDB, Bedrock) uses.

Unreachable, timing out, throttling us or failing on its side (HTTP 5xx) all mean the same to a caller: the
gateway cannot serve this now, retry shortly (`UpstreamUnavailableError` with a retry delay of `RETRY_SECONDS`).
For a write whose answer was lost the outcome is unknown, so `translated(..., write=True)` raises
`OutcomeUnknownError` instead, for the adapter to find out what happened. Log lines name the service, the
operation and the error code (or exception type), never the AWS message: Cognito's messages may contain the
address. Counting failed calls is not done here: `observability.instrument_aws_client` counts every one at the
client, translated or not.

    failure                                                  read or write            write=True
    botocore connection errors, timeouts, dropped answers    UpstreamUnavailableError OutcomeUnknownError
      (and aiohttp's, when raised while the body is read)
    ClientError with a throttling code                       UpstreamUnavailableError UpstreamUnavailableError
    ClientError of contention (`contended`: a write conflict UpstreamUnavailableError UpstreamUnavailableError
      or a transaction cancelled for transient reasons alone; with `explains_cancellations` a cancelled
      transaction propagates instead)
    ClientError with HTTP status 5xx                         UpstreamUnavailableError OutcomeUnknownError
    ClientError TransactionInProgressException               propagates               OutcomeUnknownError
    ClientError with a code in `known`                       known[code]()            known[code]()
    any other ClientError                                    propagates (a bug: INTERNAL), or with
                                                             `hide_unknown`: UpstreamUnavailableError
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from gateway.errors import GatewayError, UpstreamUnavailableError

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
UNAVAILABLE_MESSAGE = "a service the gateway depends on is unavailable; retry shortly"

# The service refused the request before doing anything: nothing was applied.
THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "ThrottlingError",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "SlowDown",
    }
)
# A retry with the same ClientRequestToken arrived while the first try was still being applied (DynamoDB).
IN_PROGRESS_CODES = frozenset({"TransactionInProgressException"})
# Contention: a single-item write refused because a transaction holds the item, or a transaction cancelled only
# because another write or transaction held one of its items, or throttling. Nothing was applied; trying again is
# safe. (A cancellation with any other reason, a failed condition say, is for the caller to explain.)
CONFLICT_CODE = "TransactionConflictException"
TRANSACTION_CANCELED = "TransactionCanceledException"
TRANSIENT_CANCELLATION_CODES = frozenset({"TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError"})
# The request may have left us and its answer never came back. aiobotocore turns failures while sending into
# botocore's errors; those while the answer's body is read (a dropped connection, a stalled read) reach us as
# aiohttp's or asyncio's own.
UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (
    BotoConnectionError,
    HTTPClientError,
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    HttpProcessingError,
    TimeoutError,
)

_TRANSLATED: tuple[type[Exception], ...] = (ClientError, *UNREACHABLE_ERRORS)

Failure = Literal["unreachable", "throttled", "contended", "failed"]
_LOGGED_AS: dict[Failure, str] = {
    "unreachable": "upstream unreachable",
    "throttled": "upstream throttling",
    "contended": "upstream write contended",
    "failed": "upstream failed",
}


class OutcomeUnknownError(Exception):
    """A write was sent but its answer was lost (timeout, dropped connection, 5xx, still in progress).

    Raised only by `translated(..., write=True)`, for the adapter to read back what happened; it never leaves
    the adapter (it is not a `GatewayError`). The message is the error code or exception type.
    """


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError ("" when absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _detail(exc: BaseException) -> str:
    return error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__


def failure_of(exc: BaseException) -> Failure | None:
    """Which kind of "retry later" `exc` is, or None when it means something else."""
    if isinstance(exc, UNREACHABLE_ERRORS):
        return "unreachable"
    if isinstance(exc, ClientError):
        if error_code(exc) in THROTTLING_CODES:
            return "throttled"
        if contended(exc):
            return "contended"
        if _status(exc) >= 500:
            return "failed"
    return None


def cancellation_codes(exc: ClientError) -> list[str]:
    """The codes of a cancelled transaction's CancellationReasons, one per item ("None" for an item that was fine)."""
    return [str(reason.get("Code") or "None") for reason in exc.response.get("CancellationReasons", [])]


def contended(exc: ClientError) -> bool:
    """True when `exc` says only "not now": a write conflict or a cancellation for transient reasons alone."""
    code = error_code(exc)
    if code == CONFLICT_CODE:
        return True
    if code != TRANSACTION_CANCELED:
        return False
    codes = cancellation_codes(exc)
    return any(c in TRANSIENT_CANCELLATION_CODES for c in codes) and all(
        c in TRANSIENT_CANCELLATION_CODES or c == "None" for c in codes
    )


def retry_later(service: str, operation: str, error: str, failure: Failure = "failed") -> UpstreamUnavailableError:
    """Log the failure (service, operation, `error`: the AWS code or exception type) and return the error every
    adapter raises for "this service cannot serve now"."""
    log.warning(_LOGGED_AS[failure], extra={"service": service, "operation": operation, "error": error})
    return UpstreamUnavailableError(UNAVAILABLE_MESSAGE, retry_after_seconds=RETRY_SECONDS)


def unavailable(service: str, operation: str, exc: BaseException) -> UpstreamUnavailableError | None:
    """The domain error for a failure that means "retry later" (logged), or None when `exc` means something else."""
    failure = failure_of(exc)
    if failure is None:
        return None
    return retry_later(service, operation, _detail(exc), failure)


@contextmanager
def translated(
    service: str,
    operation: str,
    known: Mapping[str, Callable[[], GatewayError]] | None = None,
    *,
    hide_unknown: bool = False,
    write: bool = False,
    explains_cancellations: bool = False,
) -> Iterator[None]:
    """Turn AWS failures inside the block into domain errors (`raise ... from exc`), as the module table says.

    `known` maps error codes to the domain error they mean. Failures that mean "retry later" become
    `UpstreamUnavailableError`. With `write`, a failure after which the write may or may not have been applied
    becomes `OutcomeUnknownError` instead (throttling stays a known outcome: nothing was applied). Any other
    ClientError propagates unchanged (a bug: INTERNAL), unless `hide_unknown`, for services whose messages may
    carry personal data: then it is logged by code and reported as unavailable. Exceptions the block handles
    itself (a conditional check, say) never reach this; with `explains_cancellations`, a cancelled transaction
    passes through unchanged, whatever its reasons, for the caller to explain from them.
    """
    try:
        yield
    except _TRANSLATED as exc:
        if isinstance(exc, ClientError) and known and error_code(exc) in known:
            raise known[error_code(exc)]() from exc
        if explains_cancellations and isinstance(exc, ClientError) and error_code(exc) == TRANSACTION_CANCELED:
            raise
        failure = failure_of(exc)
        if write and (failure in ("unreachable", "failed") or _detail(exc) in IN_PROGRESS_CODES):
            log.warning(
                "upstream answer lost",
                extra={"service": service, "operation": operation, "error": _detail(exc)},
            )
            raise OutcomeUnknownError(_detail(exc)) from exc
        if failure is not None:
            raise retry_later(service, operation, _detail(exc), failure) from exc
        if isinstance(exc, ClientError) and hide_unknown:
            log.error(
                "unexpected upstream error",
                extra={"service": service, "operation": operation, "error": error_code(exc)},
            )
            raise UpstreamUnavailableError(UNAVAILABLE_MESSAGE, retry_after_seconds=RETRY_SECONDS) from exc
        raise
