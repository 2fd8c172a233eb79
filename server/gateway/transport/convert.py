"""Messages to domain values and back: generated types stop here, so services never see protobuf.

One section per service; each is self-contained.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from booking.v1 import auth_pb2
from gateway.domain import IssuedTokens, LoginStarted, TokenDelivery


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# --- auth ----------------------------------------------------------------------------------------------------


def initiate_login_response(started: LoginStarted) -> auth_pb2.InitiateLoginResponse:
    """The answer to InitiateLogin."""
    return auth_pb2.InitiateLoginResponse(
        login_id=started.login_id,
        destination=started.destination,
        expires_at=_timestamp(started.expires_at),
        resend_allowed_at=_timestamp(started.resend_allowed_at),
    )


def token_delivery(delivery: TokenDelivery) -> auth_pb2.TokenDelivery:
    """The TokenDelivery message (the VerifyOtp answer, and a Chat event)."""
    return auth_pb2.TokenDelivery(
        id_token=delivery.id_token,
        access_token=delivery.access_token,
        refresh_token=delivery.refresh_token,
        expires_in=delivery.expires_in_seconds,
        token_type=delivery.token_type,
        guest_id=delivery.guest_id,
        email=delivery.email,
        sub=delivery.sub,
    )


def verify_otp_response(delivery: TokenDelivery) -> auth_pb2.VerifyOtpResponse:
    """The answer to VerifyOtp."""
    return auth_pb2.VerifyOtpResponse(token_delivery=token_delivery(delivery))


def refresh_session_response(tokens: IssuedTokens) -> auth_pb2.RefreshSessionResponse:
    """The answer to RefreshSession; an empty refresh_token means "keep the one you have"."""
    return auth_pb2.RefreshSessionResponse(
        id_token=tokens.id_token,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token or "",
        expires_in=tokens.expires_in_seconds,
        token_type=tokens.token_type,
    )
