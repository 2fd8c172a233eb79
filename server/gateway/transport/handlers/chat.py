"""ChatService: the booking agent's stream, one turn per call."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from booking.v1 import chat_pb2
from gateway.calls import Call
from gateway.services.chat import ChatService
from gateway.transport import convert
from gateway.transport.peer import ClientAddressResolver


class ChatHandlers:
    """The booking agent's stream: one turn per call, its events as they happen."""

    def __init__(self, chat: ChatService, addresses: ClientAddressResolver | None = None) -> None:
        self._chat = chat
        self._addresses = addresses or ClientAddressResolver()

    async def Chat(self, request: chat_pb2.ChatRequest, call: Call) -> AsyncGenerator[chat_pb2.ChatResponse, None]:
        turn = convert.chat_turn_request(
            request,
            principal=call.principal,
            client=self._addresses.resolve(call.peer, call.metadata),
            time_remaining=call.time_remaining(),
        )
        # Closing the turn's generator here (not when it is garbage-collected) cancels the agent at once when
        # the client goes away.
        async with aclosing(self._chat.chat(turn)) as events:
            async for event in events:
                yield convert.chat_response(event)
