"""The chat service: the booking agent's turn (lease, runner, in-chat sign-in, recorder), its tools and events."""

from gateway.services.chat.agent import ChatService
from gateway.services.chat.coalescer import FlushPolicy, StreamLoad
from gateway.services.chat.events import ChatEvent
from gateway.services.chat.lease import RECORD_AFTER_CANCEL_SECONDS
from gateway.services.chat.quota import ChatAdmission, ChatQuota
from gateway.services.chat.tools import ToolRegistry
from gateway.services.chat.turn import ChatLimits, ChatTurnRequest

__all__ = [
    "RECORD_AFTER_CANCEL_SECONDS",
    "ChatAdmission",
    "ChatEvent",
    "ChatLimits",
    "ChatQuota",
    "ChatService",
    "ChatTurnRequest",
    "FlushPolicy",
    "StreamLoad",
    "ToolRegistry",
]
