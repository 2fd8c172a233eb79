"""ChatService over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from booking.v1 import chat_pb2, chat_pb2_grpc
from gateway.errors import NotImplementedYetError

Context = aio.ServicerContext[Any, Any]


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """The booking agent's stream. Not served by this build yet: Chat answers UNIMPLEMENTED."""

    async def Chat(self, request: chat_pb2.ChatRequest, context: Context) -> AsyncIterator[chat_pb2.ChatResponse]:
        raise NotImplementedYetError("the booking agent is not available in this build yet")
        yield  # type: ignore[unreachable]  # makes this an async generator, like the real stream
