"""Domain errors: what went wrong, in the gateway's own words, with no knowledge of gRPC or AWS.

Every error carries a machine-readable `reason` (the name of a `booking.v1.ErrorReason` value without its
prefix). `gateway.transport.errors` is the one place that turns these into status codes.

    GatewayError
    ├── InvalidArgumentError            INVALID_ARGUMENT (with field violations)
    │   ├── MalformedRequestError
    │   ├── RequestIdReusedError
    │   └── ResumeSequenceAheadError
    ├── MethodNotFoundError             UNIMPLEMENTED
    ├── NotImplementedYetError          UNIMPLEMENTED
    ├── OverloadedError                 RESOURCE_EXHAUSTED (retry later)
    ├── RateLimitedError                RESOURCE_EXHAUSTED (retry later)
    │   └── TokenBudgetExhaustedError
    ├── AuthenticationError             UNAUTHENTICATED
    │   ├── OtpInvalidError
    │   ├── TokenMissingError, TokenMalformedError, TokenExpiredError,
    │   └── TokenInvalidError, TokenRevokedError, TokenWrongUseError
    ├── LoginFailedPreconditionError    FAILED_PRECONDITION
    │   ├── OtpExpiredError, OtpAttemptsExhaustedError, LoginNotFoundError
    ├── SessionNotOwnedError            PERMISSION_DENIED
    ├── ResumeTokenInvalidError         PERMISSION_DENIED
    ├── ResumeEventsExpiredError        FAILED_PRECONDITION
    ├── NotFoundError                   NOT_FOUND
    │   ├── SessionNotFoundError, ReservationNotFoundError, PropertyNotFoundError
    ├── BookingConflictError            FAILED_PRECONDITION
    │   ├── NightsTakenError, CapacityExceededError
    └── UnavailableError                UNAVAILABLE (retry later)
        ├── UpstreamUnavailableError, JwksUnavailableError, ShuttingDownError
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: its path (like "check_in") and what is wrong with it."""

    field: str
    description: str


class GatewayError(Exception):
    """Base of every error the gateway reports to a caller.

    `message` is shown to the client: it says what to fix, never what the server holds (no tokens, codes,
    sessions or other people's data). `metadata` goes into `ErrorInfo.metadata` (strings only).
    """

    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        retry_after_seconds: float | None = None,
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after_seconds = retry_after_seconds
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class InvalidArgumentError(GatewayError):
    """A request field is malformed; `violations` names each bad field."""

    reason = "INVALID_ARGUMENT"

    @classmethod
    def for_field(cls, field: str, description: str) -> InvalidArgumentError:
        """The common case: one field is wrong."""
        return cls(f"{field}: {description}", violations=[FieldViolation(field, description)])


class MalformedRequestError(InvalidArgumentError):
    """The request bytes are not a valid encoding of the RPC's request message."""

    reason = "MALFORMED_REQUEST"


class RequestIdReusedError(InvalidArgumentError):
    """A booking request id was already used for a request with other content."""

    reason = "REQUEST_ID_REUSED"


class MethodNotFoundError(GatewayError):
    """No RPC of that name is served."""

    reason = "METHOD_NOT_FOUND"


class NotImplementedYetError(GatewayError):
    """The RPC is in the contract but not served by this build."""

    reason = "NOT_IMPLEMENTED"


class OverloadedError(GatewayError):
    """The gateway is at its concurrency limit."""

    reason = "OVERLOADED"


class RateLimitedError(GatewayError):
    """A rate limit was hit; `retry_after_seconds` says when to try again."""

    reason = "RATE_LIMITED"


class TokenBudgetExhaustedError(RateLimitedError):
    """The model-token budget of a client, or of the whole gateway, is spent until `retry_after_seconds`."""

    reason = "TOKEN_BUDGET_EXHAUSTED"


class AuthenticationError(GatewayError):
    """The caller could not be authenticated."""

    reason = "TOKEN_INVALID"


class OtpInvalidError(AuthenticationError):
    """The one-time code is wrong; `metadata["attempts_left"]` says how many tries remain."""

    reason = "OTP_INVALID"


class TokenMissingError(AuthenticationError):
    """The RPC requires a bearer token and none was sent."""

    reason = "TOKEN_MISSING"


class TokenMalformedError(AuthenticationError):
    """The authorization metadata or the token is not well formed."""

    reason = "TOKEN_MALFORMED"


class TokenExpiredError(AuthenticationError):
    """The token has expired."""

    reason = "TOKEN_EXPIRED"


class TokenInvalidError(AuthenticationError):
    """The token's signature, issuer, audience or claims are not acceptable."""

    reason = "TOKEN_INVALID"


class TokenRevokedError(AuthenticationError):
    """The token's session was signed out."""

    reason = "TOKEN_REVOKED"


class TokenWrongUseError(AuthenticationError):
    """The token is not an access token."""

    reason = "TOKEN_WRONG_USE"


class LoginFailedPreconditionError(GatewayError):
    """The login cannot continue in its current state; start a new one."""

    reason = "LOGIN_NOT_FOUND"


class OtpExpiredError(LoginFailedPreconditionError):
    """The code or its login has expired."""

    reason = "OTP_EXPIRED"


class OtpAttemptsExhaustedError(LoginFailedPreconditionError):
    """Too many wrong codes for this login."""

    reason = "OTP_ATTEMPTS_EXHAUSTED"


class LoginNotFoundError(LoginFailedPreconditionError):
    """The login id is unknown, used or superseded."""

    reason = "LOGIN_NOT_FOUND"


class SessionNotOwnedError(GatewayError):
    """The chat session belongs to another signed-in person."""

    reason = "SESSION_NOT_OWNED"


class ResumeTokenInvalidError(GatewayError):
    """The resume token is missing or not the one of the session's keep_running turn."""

    reason = "RESUME_TOKEN_INVALID"


class ResumeSequenceAheadError(InvalidArgumentError):
    """ResumeChat's `after_sequence` is above the session's newest event."""

    reason = "RESUME_SEQUENCE_AHEAD"


class ResumeEventsExpiredError(GatewayError):
    """Events after the requested sequence are not kept; `metadata["oldest_sequence"]` is the oldest kept."""

    reason = "RESUME_EVENTS_EXPIRED"


class NotFoundError(GatewayError):
    """Something the caller named does not exist (for them)."""

    reason = "NOT_FOUND"


class SessionNotFoundError(NotFoundError):
    """The chat session is unknown or expired."""

    reason = "SESSION_NOT_FOUND"


class ReservationNotFoundError(NotFoundError):
    """No such reservation for this caller; never says whether it exists for someone else."""

    reason = "RESERVATION_NOT_FOUND"


class PropertyNotFoundError(NotFoundError):
    """No such property."""

    reason = "PROPERTY_NOT_FOUND"


class BookingConflictError(GatewayError):
    """The booking cannot be made in the current state of the calendar."""

    reason = "NIGHTS_TAKEN"


class NightsTakenError(BookingConflictError):
    """Some nights are already held; `metadata["nights"]` lists them, comma-separated."""

    reason = "NIGHTS_TAKEN"


class CapacityExceededError(BookingConflictError):
    """More guests than the property holds."""

    reason = "CAPACITY_EXCEEDED"


class UnavailableError(GatewayError):
    """A dependency or the gateway itself cannot serve now; retry later."""

    reason = "UPSTREAM_UNAVAILABLE"


class UpstreamUnavailableError(UnavailableError):
    """Cognito, DynamoDB or the model service is unreachable, failing or throttling."""

    reason = "UPSTREAM_UNAVAILABLE"


class JwksUnavailableError(UnavailableError):
    """The signing keys cannot be fetched; the token may be fine."""

    reason = "JWKS_UNAVAILABLE"


class ShuttingDownError(UnavailableError):
    """The gateway is draining."""

    reason = "SHUTTING_DOWN"


class ApprovalNotFoundError(NotFoundError):
    """No approval with that id waits in this chat session for this person."""

    reason = "APPROVAL_NOT_FOUND"


class ApprovalClosedError(GatewayError):
    """The approval cannot be decided any more (FAILED_PRECONDITION)."""

    reason = "APPROVAL_ALREADY_USED"


class ApprovalExpiredError(ApprovalClosedError):
    """The approval expired before the decision; nothing was done."""

    reason = "APPROVAL_EXPIRED"


class ApprovalAlreadyUsedError(ApprovalClosedError):
    """The approval was decided or withdrawn already; it is used once."""

    reason = "APPROVAL_ALREADY_USED"
