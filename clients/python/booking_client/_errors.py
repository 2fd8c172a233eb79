"""The errors this library raises, and the one place that turns a gRPC failure into them.

    BookingError                    base of every error raised on purpose by booking_client
    ├── SessionError                the stored sign-in cannot be used (raised before any call is made)
    │   ├── SessionFileError        the session file is corrupt, not ours, or readable by others
    │   └── NotSignedIn             the operation needs a session and there is none
    └── CallError                   the gateway answered with a non-OK status
        ├── InvalidArgument         INVALID_ARGUMENT (`field_violations` names the bad fields)
        ├── Unauthenticated         UNAUTHENTICATED (OTP_INVALID, TOKEN_MISSING, TOKEN_EXPIRED, ...)
        ├── PermissionDenied        PERMISSION_DENIED (SESSION_NOT_OWNED)
        ├── NotFound                NOT_FOUND
        ├── FailedPrecondition      FAILED_PRECONDITION (OTP_EXPIRED, NIGHTS_TAKEN, ...)
        ├── RateLimited             RESOURCE_EXHAUSTED (RATE_LIMITED, OVERLOADED): wait `retry_after_seconds`
        ├── Unavailable             UNAVAILABLE, DEADLINE_EXCEEDED: retry later
        ├── Unimplemented           UNIMPLEMENTED
        └── ServerError             INTERNAL, UNKNOWN, DATA_LOSS (quote `request_id` when reporting it)

Every `CallError` carries the status code, the `google.rpc.ErrorInfo` reason and metadata, the `RetryInfo`
delay and `BadRequest` field violations when the gateway sent them (`grpc-status-details-bin`), and the
`x-request-id` trailer. Branch on `reason`, never on the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
REQUEST_ID_KEY = "x-request-id"


class BookingError(Exception):
    """Base of every error raised on purpose by booking_client."""


class SessionError(BookingError):
    """The stored sign-in cannot be used."""


class SessionFileError(SessionError):
    """The session file cannot be trusted: it is corrupt, not owned by you, or readable by others.

    It is never used silently; the message says which file and how to fix it.
    """


class NotSignedIn(SessionError):
    """The operation needs a signed-in session and there is none."""


class CallError(BookingError):
    """The gateway answered a call with a non-OK status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_after_seconds: float | None = None,
        field_violations: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> None:
        shown = f"{code.name}: {message}" + (f" [{reason}]" if reason else "")
        super().__init__(shown)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after_seconds = retry_after_seconds
        self.field_violations: dict[str, str] = dict(field_violations or {})
        self.request_id = request_id


class InvalidArgument(CallError):
    """INVALID_ARGUMENT: a request field is malformed; `field_violations` maps each field to what is wrong."""


class Unauthenticated(CallError):
    """UNAUTHENTICATED: a wrong code, or a missing, expired, revoked or unacceptable token."""


class PermissionDenied(CallError):
    """PERMISSION_DENIED: for example a chat session that belongs to another signed-in person."""


class NotFound(CallError):
    """NOT_FOUND: no such reservation, property or chat session."""


class FailedPrecondition(CallError):
    """FAILED_PRECONDITION: the login expired or is used up, nights are taken, too many guests."""


class RateLimited(CallError):
    """RESOURCE_EXHAUSTED: too many requests; try again after `retry_after_seconds`."""


class Unavailable(CallError):
    """UNAVAILABLE or DEADLINE_EXCEEDED: the gateway or what it depends on cannot answer now; retry later."""


class Unimplemented(CallError):
    """UNIMPLEMENTED: this gateway does not serve the RPC."""


class ServerError(CallError):
    """INTERNAL, UNKNOWN or DATA_LOSS: a bug on the server; quote `request_id` when reporting it."""


_CLASS_BY_CODE: dict[grpc.StatusCode, type[CallError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: ServerError,
    grpc.StatusCode.UNKNOWN: ServerError,
    grpc.StatusCode.DATA_LOSS: ServerError,
}


def _unpack(details: Iterable[Any], message_type: type[Any]) -> Any | None:
    for detail in details:
        message = message_type()
        if detail.Unpack(message):
            return message
    return None


# grpc's words when no connection could be made because nothing listens at the address.
_REFUSED = re.compile(r"(?:ipv4|ipv6):(\S+?):? Failed to connect to remote host: Connection refused")


def call_error(error: grpc.aio.AioRpcError) -> CallError:
    """The typed error for a failed call, with everything the trailers say about it."""
    code = error.code()
    message = error.details() or ""
    reason = ""
    metadata: dict[str, str] = {}
    retry_after: float | None = None
    violations: dict[str, str] = {}
    request_id = ""
    for key, value in tuple(error.trailing_metadata() or ()):
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # noqa: S112 - a garbled trailer must not hide the status code
                continue
            details = list(status.details)
            info = _unpack(details, error_details_pb2.ErrorInfo)
            if info is not None:
                reason = str(info.reason)
                metadata = {str(k): str(v) for k, v in info.metadata.items()}
            retry = _unpack(details, error_details_pb2.RetryInfo)
            if retry is not None:
                retry_after = float(retry.retry_delay.ToNanoseconds()) / 1e9
            bad = _unpack(details, error_details_pb2.BadRequest)
            if bad is not None:
                violations = {str(v.field): str(v.description) for v in bad.field_violations}
        elif key == REQUEST_ID_KEY:
            request_id = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if code == grpc.StatusCode.UNAVAILABLE and not reason and (refused := _REFUSED.search(message)):
        message = (
            f"nothing answers at {refused.group(1)} (connection refused): start the gateway there (`make run` in "
            "the booking-gateway checkout) or connect to the address where it listens"
        )
    if reason:  # the gateway repeats the reason and the retry delay for people: they are fields here
        message = re.sub(rf" \[{re.escape(reason)}(?:, retry in \d+ s)?\]$", "", message)
    cls = _CLASS_BY_CODE.get(code, CallError)
    return cls(
        code,
        message,
        reason=reason,
        metadata=metadata,
        retry_after_seconds=retry_after,
        field_violations=violations,
        request_id=request_id,
    )
