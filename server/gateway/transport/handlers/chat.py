"""ChatService: the booking agent's stream (one turn per call), ResumeChat and CancelTurn."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from booking.v1 import chat_pb2
from gateway.calls import Call
from gateway.errors import NotImplementedYetError
from gateway.services.chat import ChatService
from gateway.services.chat.durable import CancelRequest, DurableTurns, ResumeRequest
from gateway.transport import convert
from gateway.transport.peer import ClientAddressResolver


class ChatHandlers:
    """The booking agent's stream: one turn per call, its events as they happen; resuming and stopping a turn."""

    def __init__(self, chat: ChatService, addresses: ClientAddressResolver | None = None) -> None:
        self._chat = chat
        self._addresses = addresses or ClientAddressResolver()

    def _kept(self) -> DurableTurns:
        if self._chat.kept is None:
            raise NotImplementedYetError("this gateway does not keep chat turns")
        return self._chat.kept

    async def Chat(self, request: chat_pb2.ChatRequest, call: Call) -> AsyncGenerator[chat_pb2.ChatResponse, None]:
        turn = convert.chat_turn_request(
            request,
            principal=call.principal,
            client=self._addresses.resolve(call.peer, call.metadata),
            time_remaining=call.time_remaining(),
        )
        # A keep_running turn runs in a task of the gateway: this call only follows it.
        source = self._kept().chat(turn) if request.keep_running else self._chat.chat(turn)
        # Closing the turn's generator here (not when it is garbage-collected) cancels the agent at once when
        # the client goes away (a keep_running turn goes on).
        async with aclosing(source) as events:
            async for event in events:
                yield convert.chat_response(event)

    async def ResumeChat(
        self, request: chat_pb2.ResumeChatRequest, call: Call
    ) -> AsyncGenerator[chat_pb2.ResumeChatResponse, None]:
        resume = ResumeRequest(
            session_id=request.session_id,
            after_sequence=request.after_sequence,
            resume_token=request.resume_token,
            principal=call.principal,
        )
        async with aclosing(self._kept().resume(resume)) as events:
            async for event in events:
                yield convert.resume_chat_response(event)

    async def CancelTurn(self, request: chat_pb2.CancelTurnRequest, call: Call) -> chat_pb2.CancelTurnResponse:
        cancelled = await self._kept().cancel(
            CancelRequest(session_id=request.session_id, resume_token=request.resume_token, principal=call.principal)
        )
        return chat_pb2.CancelTurnResponse(cancelled=cancelled)
