"""Talk to the gateway's Chat stream and look at what came back."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from google.rpc import error_details_pb2
from grpc import aio

from booking.v1 import auth_pb2, chat_pb2, chat_pb2_grpc
from gateway.testing import CONNECT_STREAM_HEADERS, END_STREAM, envelope, envelopes
from tests.support.status import error_info

Metadata = Sequence[tuple[str, str]]


@dataclass
class Turn:
    """Every event of one turn, in the order received."""

    events: list[chat_pb2.ChatEvent]

    def of(self, kind: str) -> list[chat_pb2.ChatEvent]:
        """The events of one kind ("text_delta", "tool_call_finished", ...)."""
        return [e for e in self.events if e.WhichOneof("kind") == kind]

    @property
    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("kind")) for e in self.events]

    @property
    def outline(self) -> list[str]:
        """The kinds, a run of text deltas counted as one: how words are split into messages depends on timing
        (the coalescer merges what waits behind a slow write), so two runs of one answer may differ there."""
        merged: list[str] = []
        for kind in self.kinds:
            if not (kind == "text_delta" and merged and merged[-1] == kind):
                merged.append(kind)
        return merged

    @property
    def started(self) -> chat_pb2.SessionStarted:
        first = self.events[0]
        assert first.WhichOneof("kind") == "session_started", self.kinds
        return first.session_started

    @property
    def session_id(self) -> str:
        return self.started.session_id

    @property
    def text(self) -> str:
        """The agent's reply text, deltas joined."""
        return "".join(e.text_delta.text for e in self.of("text_delta"))

    @property
    def complete(self) -> chat_pb2.TurnComplete:
        last = self.events[-1]
        assert last.WhichOneof("kind") == "turn_complete", self.kinds
        return last.turn_complete

    @property
    def tools(self) -> list[chat_pb2.ToolCallFinished]:
        """The finished tool calls."""
        return [e.tool_call_finished for e in self.of("tool_call_finished")]

    @property
    def token_delivery(self) -> auth_pb2.TokenDelivery | None:
        found = self.of("token_delivery")
        return found[0].token_delivery if found else None

    @property
    def sequences(self) -> list[int]:
        return [e.sequence for e in self.events]

    @property
    def approval(self) -> chat_pb2.ApprovalRequested | None:
        """The turn's ApprovalRequested, if it asked for one."""
        found = self.of("approval_requested")
        return found[0].approval_requested if found else None


def stub(channel: aio.Channel) -> chat_pb2_grpc.ChatServiceAsyncStub:
    """The async stub of the Chat service."""
    return chat_pb2_grpc.ChatServiceStub(channel)


async def chat(
    channel: aio.Channel, message: str, session_id: str = "", metadata: Metadata = (), timeout: float = 30
) -> Turn:
    """Send one message and read the whole turn."""
    events: list[chat_pb2.ChatEvent] = []
    call = stub(channel).Chat(
        chat_pb2.ChatRequest(session_id=session_id, message=message), metadata=tuple(metadata), timeout=timeout
    )
    async for response in call:
        events.append(response.event)
    return Turn(events)


async def decide(channel: aio.Channel, turn: Turn, metadata: Metadata, *, approve: bool = True) -> Turn:
    """Answer the approval `turn` asked for (over gRPC) and read the decision's whole turn."""
    approval = turn.approval
    assert approval is not None, (turn.kinds, turn.text)
    events: list[chat_pb2.ChatEvent] = []
    request = decision(turn.session_id, approval.approval_id, approve=approve)
    async for response in stub(channel).Chat(request, metadata=tuple(metadata), timeout=30):
        events.append(response.event)
    return Turn(events)


class ChatRefused(Exception):
    """A Chat call that failed with a status: its code's name in lower case (as Connect spells it) and reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def decision(session_id: str, approval_id: str, *, approve: bool) -> chat_pb2.ChatRequest:
    """A ChatRequest carrying the person's decision."""
    return chat_pb2.ChatRequest(
        session_id=session_id, decision=chat_pb2.ApprovalDecision(approval_id=approval_id, approve=approve)
    )


class ChatFace:
    """One face of the gateway to send ChatRequests through: "grpc" (grpc.aio) or "connect" (the web face)."""

    def __init__(self, name: str, channel: aio.Channel, web_url: str) -> None:
        self.name = name
        self._channel = channel
        self._web_url = web_url

    async def say(self, message: str, session_id: str = "", metadata: Metadata = ()) -> Turn:
        return await self.send(chat_pb2.ChatRequest(session_id=session_id, message=message), metadata)

    async def send(self, request: chat_pb2.ChatRequest, metadata: Metadata = ()) -> Turn:
        """The whole turn, or `ChatRefused` when the call fails with a status."""
        if self.name == "grpc":
            return await self._grpc(request, metadata)
        return await self._connect(request, metadata)

    async def _grpc(self, request: chat_pb2.ChatRequest, metadata: Metadata) -> Turn:
        events: list[chat_pb2.ChatEvent] = []
        try:
            async for response in stub(self._channel).Chat(request, metadata=tuple(metadata), timeout=60):
                events.append(response.event)
        except aio.AioRpcError as exc:
            raise ChatRefused(exc.code().name.lower(), error_info(exc).reason) from exc
        return Turn(events)

    async def _connect(self, request: chat_pb2.ChatRequest, metadata: Metadata) -> Turn:
        events: list[chat_pb2.ChatEvent] = []
        headers = {**CONNECT_STREAM_HEADERS, **dict(metadata)}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
            http.post(
                f"{self._web_url}/booking.v1.ChatService/Chat",
                data=envelope(request.SerializeToString()),
                headers=headers,
            ) as response,
        ):
            assert response.status == 200, response.status
            async for flags, payload in envelopes(response.content):
                if flags & END_STREAM:
                    end = json.loads(payload)
                    if "error" in end:
                        raise ChatRefused(end["error"]["code"], _connect_reason(end["error"]))
                    return Turn(events)
                events.append(chat_pb2.ChatResponse.FromString(payload).event)
        raise AssertionError("the Connect stream ended without its end-of-stream envelope")


def _connect_reason(error: dict[str, object]) -> str:
    details = error.get("details", [])
    assert isinstance(details, list)
    for detail in details:
        if detail.get("type") == "google.rpc.ErrorInfo":
            value = str(detail["value"])
            info = error_details_pb2.ErrorInfo.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))
            return str(info.reason)
    raise AssertionError(f"no ErrorInfo in {error}")
