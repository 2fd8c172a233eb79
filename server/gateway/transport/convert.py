"""Conversions between `booking.v1` messages and domain values: generated types stop at this module.

Malformed fields (a date that is not a date) become `InvalidArgumentError` naming the proto field; the rules
about values (dates in the past, too many nights) belong to the services.
"""

from __future__ import annotations

import datetime
import re
import time

from google.protobuf import timestamp_pb2

from booking.v1 import auth_pb2, chat_pb2, reservations_pb2
from gateway.domain import (
    ApprovalDecision,
    Availability,
    IssuedTokens,
    LoginStarted,
    Principal,
    Property,
    Reservation,
    ReservationPage,
    ReservationStatus,
    Stay,
    TokenDelivery,
)
from gateway.errors import FieldViolation, InvalidArgumentError
from gateway.services.chat import ChatEvent, ChatTurnRequest
from gateway.services.chat.events import (
    ApprovalRequested,
    SessionStarted,
    StopReason,
    TextDelta,
    TokenDeliveryEvent,
    TokenDeliveryExpired,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
)

# Reservations -------------------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_HINT = "must be a date like 2026-03-15"

_STATUS_TO_PB = {
    ReservationStatus.CONFIRMED: reservations_pb2.RESERVATION_STATUS_CONFIRMED,
    ReservationStatus.CANCELLED: reservations_pb2.RESERVATION_STATUS_CANCELLED,
}


def _date(text: str, field: str, violations: list[FieldViolation]) -> datetime.date | None:
    if not text:
        violations.append(FieldViolation(field, f"is required; {_DATE_HINT}"))
        return None
    if not _ISO_DATE.fullmatch(text):
        violations.append(FieldViolation(field, _DATE_HINT))
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        violations.append(FieldViolation(field, f"is not a calendar date; {_DATE_HINT}"))
        return None


def stay_from_pb(
    request: reservations_pb2.CheckAvailabilityRequest | reservations_pb2.CreateReservationRequest,
    *,
    zero_guests_means_one: bool = False,
) -> Stay:
    """The stay a request names. Raises `InvalidArgumentError` naming each date that does not parse."""
    violations: list[FieldViolation] = []
    check_in = _date(request.check_in, "check_in", violations)
    check_out = _date(request.check_out, "check_out", violations)
    if violations or check_in is None or check_out is None:
        raise InvalidArgumentError("; ".join(f"{v.field}: {v.description}" for v in violations), violations=violations)
    guests = 1 if zero_guests_means_one and request.guests == 0 else request.guests
    return Stay(property_id=request.property_id, check_in=check_in, check_out=check_out, guests=guests)


def property_to_pb(prop: Property) -> reservations_pb2.Property:
    """A property message."""
    return reservations_pb2.Property(
        property_id=prop.property_id,
        name=prop.name,
        description=prop.description,
        capacity=prop.capacity,
        nightly_rate_cents=prop.nightly_rate_cents,
        currency=prop.currency,
    )


def availability_to_pb(availability: Availability) -> reservations_pb2.CheckAvailabilityResponse:
    """The CheckAvailability answer."""
    return reservations_pb2.CheckAvailabilityResponse(
        property=property_to_pb(availability.property),
        nights=[
            reservations_pb2.NightAvailability(date=night.night.isoformat(), available=night.available)
            for night in availability.nights
        ],
        available=availability.available,
        total_cents=availability.total_cents,
        currency=availability.currency,
    )


def reservation_to_pb(reservation: Reservation) -> reservations_pb2.Reservation:
    """A reservation message (the owner's `sub` is not part of it)."""
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(reservation.created_at)
    return reservations_pb2.Reservation(
        reservation_id=reservation.reservation_id,
        property_id=reservation.stay.property_id,
        property_name=reservation.property_name,
        check_in=reservation.stay.check_in.isoformat(),
        check_out=reservation.stay.check_out.isoformat(),
        guests=reservation.stay.guests,
        status=_STATUS_TO_PB[reservation.status],
        total_cents=reservation.total_cents,
        currency=reservation.currency,
        created_at=created,
        guest_id=reservation.guest_id or "",
    )


def reservation_page_to_pb(page: ReservationPage) -> reservations_pb2.ListReservationsResponse:
    """One page of ListReservations."""
    return reservations_pb2.ListReservationsResponse(
        reservations=[reservation_to_pb(r) for r in page.reservations], next_page_token=page.next_page_token
    )


# Auth ---------------------------------------------------------------------------------------------------------


def _auth_timestamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def login_started_to_pb(started: LoginStarted) -> auth_pb2.InitiateLoginResponse:
    """The answer to InitiateLogin."""
    return auth_pb2.InitiateLoginResponse(
        login_id=started.login_id,
        destination=started.destination,
        expires_at=_auth_timestamp(started.expires_at),
        resend_allowed_at=_auth_timestamp(started.resend_allowed_at),
    )


def token_delivery_to_pb(delivery: TokenDelivery) -> auth_pb2.TokenDelivery:
    """The TokenDelivery message: the VerifyOtp answer, and the Chat event of a sign-in."""
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


def refreshed_tokens_to_pb(tokens: IssuedTokens) -> auth_pb2.RefreshSessionResponse:
    """The answer to RefreshSession; an empty refresh_token means "keep the one you have"."""
    return auth_pb2.RefreshSessionResponse(
        id_token=tokens.id_token,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token or "",
        expires_in=tokens.expires_in_seconds,
        token_type=tokens.token_type,
    )


# Chat ---------------------------------------------------------------------------------------------------------

_STOP_REASONS = {
    StopReason.END_TURN: chat_pb2.STOP_REASON_END_TURN,
    StopReason.MAX_ROUNDS: chat_pb2.STOP_REASON_MAX_ROUNDS,
    StopReason.TIMEOUT: chat_pb2.STOP_REASON_TIMEOUT,
    StopReason.MODEL_ERROR: chat_pb2.STOP_REASON_MODEL_ERROR,
    StopReason.CANCELLED: chat_pb2.STOP_REASON_CANCELLED,
    StopReason.INTERRUPTED: chat_pb2.STOP_REASON_INTERRUPTED,
    StopReason.AWAITING_APPROVAL: chat_pb2.STOP_REASON_AWAITING_APPROVAL,
}


def chat_turn_request(
    request: chat_pb2.ChatRequest, *, principal: Principal | None, client: str, time_remaining: float | None
) -> ChatTurnRequest:
    """A Chat request as the chat service takes it (`time_remaining`: the call's, now; None without a deadline)."""
    return ChatTurnRequest(
        session_id=request.session_id,
        message=request.message,
        principal=principal,
        client=client,
        deadline=None if time_remaining is None else time.monotonic() + time_remaining,
        decision=(
            ApprovalDecision(request.decision.approval_id, request.decision.approve)
            if request.HasField("decision")
            else None
        ),
    )


def _epoch_timestamp(epoch_seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(epoch_seconds * 1_000_000_000))
    return stamp


def chat_response(event: ChatEvent) -> chat_pb2.ChatResponse:
    """One chat event as a stream message.

    Built in place, in the response's own event: one message made, nothing copied (a `ChatEvent` made first and
    handed to `ChatResponse(event=...)` is copied into it).
    """
    response = chat_pb2.ChatResponse()
    _fill_chat_event(response.event, event)
    return response


def resume_chat_response(event: ChatEvent) -> chat_pb2.ResumeChatResponse:
    """One chat event as a ResumeChat stream message, built in place like `chat_response`."""
    response = chat_pb2.ResumeChatResponse()
    _fill_chat_event(response.event, event)
    return response


def _fill_chat_event(message: chat_pb2.ChatEvent, event: ChatEvent) -> None:
    """Write `event` into `message`, a fresh ChatEvent. Text, most of a stream's events, is tested first."""
    message.sequence = event.sequence
    body = event.body
    if type(body) is TextDelta or isinstance(body, TextDelta):
        message.text_delta.text = body.text
    elif isinstance(body, ToolCallStarted):
        message.tool_call_started.CopyFrom(chat_pb2.ToolCallStarted(call_id=body.call_id, name=body.name))
    elif isinstance(body, ToolCallFinished):
        message.tool_call_finished.CopyFrom(
            chat_pb2.ToolCallFinished(call_id=body.call_id, name=body.name, ok=body.ok, summary=body.summary)
        )
    elif isinstance(body, TokenDeliveryEvent):
        message.token_delivery.CopyFrom(token_delivery_to_pb(body.delivery))
    elif isinstance(body, TokenDeliveryExpired):
        message.token_delivery_expired.guest_id = body.guest_id
    elif isinstance(body, SessionStarted):
        message.session_started.CopyFrom(
            chat_pb2.SessionStarted(
                session_id=body.session_id,
                resumed=body.resumed,
                authenticated=body.authenticated,
                guest_id=body.guest_id,
                resume_token=body.resume_token,
            )
        )
    elif isinstance(body, ApprovalRequested):
        message.approval_requested.CopyFrom(
            chat_pb2.ApprovalRequested(
                approval_id=body.approval_id,
                tool_name=body.tool_name,
                summary=body.summary,
                expires_at=_epoch_timestamp(body.expires_at),
            )
        )
    elif isinstance(body, TurnComplete):
        message.turn_complete.CopyFrom(
            chat_pb2.TurnComplete(
                stop_reason=_STOP_REASONS[body.stop_reason],
                usage=chat_pb2.TokenUsage(input_tokens=body.usage.input_tokens, output_tokens=body.usage.output_tokens),
            )
        )
