"""The chat service: the booking agent's turn loop, its tool registry, and the stream's events."""

from gateway.services.chat.agent import ChatLimits, ChatService, ChatTurnRequest
from gateway.services.chat.events import ChatEvent, FlushPolicy, StreamLoad
from gateway.services.chat.tools import ToolRegistry

__all__ = ["ChatEvent", "ChatLimits", "ChatService", "ChatTurnRequest", "FlushPolicy", "StreamLoad", "ToolRegistry"]
