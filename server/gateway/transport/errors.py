"""The one table from domain errors to status codes, and their rendering as `google.rpc.Status`.

`describe` is transport-neutral: it turns any exception into a code, a reason, a message, details and a retry
delay. The grpc.aio face sends that as status + `grpc-status-details-bin`; the web face renders the same
description as a Connect error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from gateway import errors
from gateway.errors import FieldViolation

log = logging.getLogger(__name__)

ERROR_DOMAIN = "booking.v1"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# Most specific class first does not matter: lookup walks the exception's MRO.
STATUS_BY_ERROR: dict[type[errors.GatewayError], grpc.StatusCode] = {
    errors.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.MethodNotFoundError: grpc.StatusCode.UNIMPLEMENTED,
    errors.NotImplementedYetError: grpc.StatusCode.UNIMPLEMENTED,
    errors.OverloadedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.RateLimitedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.AuthenticationError: grpc.StatusCode.UNAUTHENTICATED,
    errors.LoginFailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.SessionNotOwnedError: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResumeTokenInvalidError: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResumeEventsExpiredError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.BookingConflictError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ApprovalClosedError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
}

# google.rpc.Code numbers equal grpc's status numbers; grpc.StatusCode carries (number, name).
_RPC_CODE_BY_STATUS = {status: status.value[0] for status in grpc.StatusCode}


@dataclass(frozen=True)
class ErrorDescription:
    """How a failed call is reported, independent of the transport."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    violations: tuple[FieldViolation, ...] = ()

    def error_info(self) -> error_details_pb2.ErrorInfo:
        """The `google.rpc.ErrorInfo` detail."""
        return error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata)

    def details(self) -> list[any_pb2.Any]:
        """Every detail message, packed: ErrorInfo, then RetryInfo and BadRequest when they apply."""
        packed: list[any_pb2.Any] = []
        messages: list[error_details_pb2.ErrorInfo | error_details_pb2.RetryInfo | error_details_pb2.BadRequest]
        messages = [self.error_info()]
        if self.retry_after_seconds is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(max(self.retry_after_seconds, 0.0) * 1e9))
            messages.append(error_details_pb2.RetryInfo(retry_delay=delay))
        if self.violations:
            messages.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in self.violations
                    ]
                )
            )
        for message in messages:
            item = any_pb2.Any()
            item.Pack(message)
            packed.append(item)
        return packed

    def to_status(self) -> status_pb2.Status:
        """The `google.rpc.Status` sent in `grpc-status-details-bin`."""
        return status_pb2.Status(code=_RPC_CODE_BY_STATUS[self.code], message=self.message, details=self.details())

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """Trailers that carry the rich status to gRPC clients."""
        return ((STATUS_DETAILS_KEY, self.to_status().SerializeToString()),)


def spoken_message(message: str, reason: str, retry_after_seconds: float | None) -> str:
    """The status message people read in any tool: the message, then the reason and when to retry, in brackets
    ("too many requests; retry later [RATE_LIMITED, retry in 58 s]"). The same facts travel as ErrorInfo and
    RetryInfo for programs; a tool that cannot decode those (buf curl prints them as base64) still shows them."""
    retry = "" if retry_after_seconds is None else f", retry in {max(math.ceil(retry_after_seconds), 0)} s"
    return f"{message} [{reason}{retry}]"


def status_for(error: errors.GatewayError) -> grpc.StatusCode:
    """The status code of a domain error (its nearest mapped base class)."""
    for cls in type(error).__mro__:
        code = STATUS_BY_ERROR.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def describe(exc: BaseException, request_id: str) -> ErrorDescription:
    """Describe any exception raised by a call. Unmapped ones are bugs: INTERNAL, logged with a traceback."""
    if isinstance(exc, errors.GatewayError):
        return ErrorDescription(
            code=status_for(exc),
            reason=exc.reason,
            message=spoken_message(exc.message, exc.reason, exc.retry_after_seconds),
            metadata=exc.metadata,
            retry_after_seconds=exc.retry_after_seconds,
            violations=exc.violations,
        )
    log.error("unhandled error", exc_info=exc)
    return ErrorDescription(
        code=grpc.StatusCode.INTERNAL,
        reason="INTERNAL",
        message=spoken_message(f"internal error; quote request id {request_id} when reporting it", "INTERNAL", None),
    )
