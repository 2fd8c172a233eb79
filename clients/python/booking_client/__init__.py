"""booking_client: an async Python client of the booking gateway, and the `booking-chat` terminal chat.

    async with connect("127.0.0.1:50051", tls=False, session_store=FileSessionStore()) as client:
        async for event in client.chat("what's available March 15-20?"):
            if isinstance(event, TextDelta):
                print(event.text, end="")

See docs/clients.md for the session file, the refresh rules and the error tree.
"""

from booking_client._errors import (
    BookingError,
    CallError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotSignedIn,
    PermissionDenied,
    RateLimited,
    ServerError,
    SessionError,
    SessionFileError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from booking_client._events import (
    ApprovalRequested,
    ChatEvent,
    DeliveryExpired,
    Reconnecting,
    SessionStarted,
    SignedIn,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnComplete,
)
from booking_client._resume import ResumeBackoff
from booking_client.client import BookingClient, LoginChallenge, connect, new_request_id
from booking_client.session import (
    FileSessionStore,
    MemorySessionStore,
    Session,
    SessionStore,
    default_session_path,
)

__all__ = [
    "ApprovalRequested",
    "BookingClient",
    "BookingError",
    "CallError",
    "ChatEvent",
    "DeliveryExpired",
    "FailedPrecondition",
    "FileSessionStore",
    "InvalidArgument",
    "LoginChallenge",
    "MemorySessionStore",
    "NotFound",
    "NotSignedIn",
    "PermissionDenied",
    "RateLimited",
    "Reconnecting",
    "ResumeBackoff",
    "ServerError",
    "Session",
    "SessionError",
    "SessionFileError",
    "SessionStarted",
    "SessionStore",
    "SignedIn",
    "TextDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "TurnComplete",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "connect",
    "default_session_path",
    "new_request_id",
]
