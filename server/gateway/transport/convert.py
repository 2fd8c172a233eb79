"""Generated protobuf messages to domain values and back; the only module where the two meet.

One section per service, each self-contained.
"""

from __future__ import annotations

from booking.v1 import auth_pb2, chat_pb2
from gateway.domain import Principal
from gateway.services.chat import ChatEvent, ChatTurnRequest
from gateway.services.chat.events import (
    SessionStarted,
    StopReason,
    TextDelta,
    TokenDelivery,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
)

# --- Chat ---------------------------------------------------------------------------------------------------------

_STOP_REASONS = {
    StopReason.END_TURN: chat_pb2.STOP_REASON_END_TURN,
    StopReason.MAX_ROUNDS: chat_pb2.STOP_REASON_MAX_ROUNDS,
    StopReason.TIMEOUT: chat_pb2.STOP_REASON_TIMEOUT,
    StopReason.MODEL_ERROR: chat_pb2.STOP_REASON_MODEL_ERROR,
}


def chat_turn_request(
    request: chat_pb2.ChatRequest, *, principal: Principal | None, client: str, time_remaining: float | None
) -> ChatTurnRequest:
    """A Chat request as the chat service takes it."""
    return ChatTurnRequest(
        session_id=request.session_id,
        message=request.message,
        principal=principal,
        client=client,
        time_remaining=time_remaining,
    )


def chat_response(event: ChatEvent) -> chat_pb2.ChatResponse:
    """One chat event as a stream message."""
    message = chat_pb2.ChatEvent(sequence=event.sequence)
    body = event.body
    if isinstance(body, TextDelta):
        message.text_delta.text = body.text
    elif isinstance(body, ToolCallStarted):
        message.tool_call_started.CopyFrom(chat_pb2.ToolCallStarted(call_id=body.call_id, name=body.name))
    elif isinstance(body, ToolCallFinished):
        message.tool_call_finished.CopyFrom(
            chat_pb2.ToolCallFinished(call_id=body.call_id, name=body.name, ok=body.ok, summary=body.summary)
        )
    elif isinstance(body, TokenDelivery):
        tokens = body.tokens
        message.token_delivery.CopyFrom(
            auth_pb2.TokenDelivery(
                id_token=tokens.id_token,
                access_token=tokens.access_token,
                refresh_token=tokens.refresh_token,
                expires_in=tokens.expires_in,
                token_type=tokens.token_type,
                guest_id=tokens.guest_id,
                email=tokens.email,
                sub=tokens.sub,
            )
        )
    elif isinstance(body, SessionStarted):
        message.session_started.CopyFrom(
            chat_pb2.SessionStarted(
                session_id=body.session_id,
                resumed=body.resumed,
                authenticated=body.authenticated,
                guest_id=body.guest_id,
            )
        )
    elif isinstance(body, TurnComplete):
        message.turn_complete.CopyFrom(
            chat_pb2.TurnComplete(
                stop_reason=_STOP_REASONS[body.stop_reason],
                usage=chat_pb2.TokenUsage(input_tokens=body.usage.input_tokens, output_tokens=body.usage.output_tokens),
            )
        )
    return chat_pb2.ChatResponse(event=message)
