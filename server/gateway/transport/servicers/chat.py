"""ChatService over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from grpc import aio

from booking.v1 import chat_pb2, chat_pb2_grpc
from gateway.services.chat import ChatService
from gateway.transport import convert
from gateway.transport.context import current_metadata, current_peer, current_principal, current_time_remaining
from gateway.transport.peer import ClientAddressResolver

Context = aio.ServicerContext[Any, Any]


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """The booking agent's stream: one turn per call, its events as they happen."""

    def __init__(self, chat: ChatService, addresses: ClientAddressResolver | None = None) -> None:
        self._chat = chat
        self._addresses = addresses or ClientAddressResolver()

    async def Chat(self, request: chat_pb2.ChatRequest, context: Context) -> AsyncIterator[chat_pb2.ChatResponse]:
        turn = convert.chat_turn_request(
            request,
            principal=current_principal(),
            # From the call's contextvars, not the grpc context: the web face calls this servicer too.
            client=self._addresses.resolve(current_peer(), current_metadata()),
            time_remaining=current_time_remaining(),
        )
        # Closing the turn's generator here (not when it is garbage-collected) cancels the agent at once when
        # the client goes away.
        async with aclosing(self._chat.chat(turn)) as events:
            async for event in events:
                yield convert.chat_response(event)
