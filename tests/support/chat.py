"""Talk to the gateway's Chat stream and look at what came back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grpc import aio

from booking.v1 import auth_pb2, chat_pb2, chat_pb2_grpc

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
