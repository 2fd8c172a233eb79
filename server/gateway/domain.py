"""Domain values shared by every layer: ids, the principal, sign-in, reservations, the chat conversation.

Imports nothing of ours.
"""

from __future__ import annotations

import datetime
import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NewType
from zoneinfo import ZoneInfo

Sub = NewType("Sub", str)
"""A Cognito subject: the immutable user id every guest record is keyed by."""

GuestId = NewType("GuestId", str)
"""A guest profile id, like "GST-2026-7K2Q9D"."""

LoginId = NewType("LoginId", str)
"""An opaque login attempt id (at least 128 random bits), handed to clients instead of the Cognito session."""


@dataclass(frozen=True)
class Principal:
    """A caller whose bearer token was verified.

    `token_family` is the token's `origin_jti`: every access token refreshed from one sign-in shares it, so
    revoking it signs that whole session out. `expires_at` and `issued_at` are the token's `exp` and `iat` in
    epoch seconds: their difference is the app client's access-token lifetime, shared by the whole family.
    """

    sub: Sub
    username: str
    client_id: str
    token_family: str
    expires_at: float
    issued_at: float
    email: str = ""
    guest_id: GuestId | None = None


# Reservations -------------------------------------------------------------------------------------------------

ReservationId = NewType("ReservationId", str)
"""A reservation id: "RES-" and 8 characters of an unambiguous alphabet, like "RES-7K2Q9D4M"."""


class ReservationStatus(enum.Enum):
    """The state of a reservation."""

    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Property:
    """A place that can be booked. Money is in the smallest currency unit (cents)."""

    property_id: str
    name: str
    description: str
    capacity: int
    nightly_rate_cents: int
    currency: str


MAX_NIGHTS = 30
"""The longest stay that can be booked, in nights."""

MAX_YEARS_AHEAD = 2
"""How far ahead a stay may end, in years from today."""


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Calendar:
    """The gateway's one calendar: today in its time zone (`--chat-time-zone`), from an injectable clock.

    Built once in `app.py`; the reservation rules ("not before today") and the chat's dates ("tomorrow") read
    today from the same one, so the agent never offers a day the service refuses.
    """

    zone: ZoneInfo
    clock: Callable[[], datetime.datetime] = utc_now

    @classmethod
    def named(cls, zone: str, clock: Callable[[], datetime.datetime] | None = None) -> Calendar:
        """The calendar of an IANA time zone name ("Europe/Berlin")."""
        return cls(ZoneInfo(zone), clock or utc_now)

    @property
    def zone_name(self) -> str:
        return self.zone.key

    def today(self) -> datetime.date:
        """The date it is now in the calendar's time zone."""
        return self.clock().astimezone(self.zone).date()


@dataclass(frozen=True)
class Stay:
    """Consecutive nights at one property: check-in inclusive, check-out exclusive."""

    property_id: str
    check_in: datetime.date
    check_out: datetime.date
    guests: int

    @property
    def nights(self) -> tuple[datetime.date, ...]:
        """Each night of the stay, named by the date it starts, in order."""
        count = (self.check_out - self.check_in).days
        return tuple(self.check_in + datetime.timedelta(days=n) for n in range(count))


@dataclass(frozen=True)
class NightAvailability:
    """Whether one night is free."""

    night: datetime.date
    available: bool


@dataclass(frozen=True)
class Availability:
    """Which nights of a stay are free, and what the stay costs."""

    property: Property
    nights: tuple[NightAvailability, ...]
    available: bool
    total_cents: int
    currency: str


@dataclass(frozen=True)
class Reservation:
    """A guest's booking of consecutive nights at one property. `owner` is the booker's Cognito `sub`."""

    reservation_id: ReservationId
    owner: Sub
    stay: Stay
    property_name: str
    status: ReservationStatus
    total_cents: int
    currency: str
    created_at: datetime.datetime
    guest_id: GuestId | None = None

    @property
    def nights(self) -> tuple[datetime.date, ...]:
        """The nights this reservation holds (while confirmed)."""
        return self.stay.nights


@dataclass(frozen=True)
class ReservationPage:
    """One page of a guest's reservations, newest first; `next_page_token` is empty on the last page."""

    reservations: tuple[Reservation, ...]
    next_page_token: str = ""


# Sign-in ------------------------------------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_guest_id(now: datetime.datetime) -> GuestId:
    """A fresh guest id like "GST-2026-7K2Q9D": the year, then 6 random Crockford base-32 characters."""
    suffix = "".join(secrets.choice(_CROCKFORD) for _ in range(6))
    return GuestId(f"GST-{now.year:04d}-{suffix}")


@dataclass(frozen=True)
class GuestProfile:
    """A signed-in person's profile, keyed by their Cognito subject."""

    guest_id: GuestId
    sub: Sub
    email: str
    name: str
    created_at: datetime.datetime


@dataclass(frozen=True)
class LoginStarted:
    """A sent one-time code: the login to verify it with, where it went, and until when it works.

    Identical in shape for a new and for a known address, so it never tells whether an account exists.
    """

    login_id: LoginId
    destination: str
    expires_at: datetime.datetime
    resend_allowed_at: datetime.datetime


@dataclass(frozen=True)
class IssuedTokens:
    """Tokens from the identity provider. `refresh_token` is None when a refresh keeps the old one."""

    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in_seconds: int
    token_type: str = "Bearer"  # noqa: S105 - a token type name, not a secret


@dataclass(frozen=True)
class TokenDelivery:
    """A successful sign-in: the tokens and who they belong to. Never logged."""

    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in_seconds: int
    token_type: str
    guest_id: GuestId
    email: str
    sub: Sub


@dataclass(frozen=True)
class OtpChallenge:
    """A code the identity provider sent, and the session that answers it.

    `session` is None when the account cannot sign in with an email code (disabled, say): nothing was sent, and
    the login is played out like any other so that the answer does not reveal it. `destination` is masked
    ("j***@e***"). `valid_for_seconds` is how long the provider honours the session.
    """

    session: str | None = field(repr=False)
    destination: str
    valid_for_seconds: float


LoginDoor = Literal["unary", "chat"]
"""Where a login was started, and so the only place its code is answered: the unary RPCs, or its chat."""


@dataclass(frozen=True)
class LoginState:
    """A login in progress, kept server-side under `login_key` (a login id, or a chat session id).

    `nonce` identifies this login among those for the same email: only the latest one works. `idp_session` is
    the identity provider's session string; it never leaves the server and is never logged.
    """

    login_key: str
    email: str
    name: str
    sub: Sub | None
    idp_session: str | None = field(repr=False)
    nonce: str
    attempts_used: int
    max_attempts: int
    sent_at: datetime.datetime
    expires_at: datetime.datetime
    door: LoginDoor = "unary"

    @property
    def attempts_left(self) -> int:
        """Codes that may still be tried."""
        return max(self.max_attempts - self.attempts_used, 0)


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` events per `window_seconds`, counted per subject (an address, an email)."""

    name: str
    limit: int
    window_seconds: float


@dataclass(frozen=True)
class RateGrant:
    """One counted event, so that it can be given back if the work it allowed could not be done."""

    limit: RateLimit
    subject: str = field(repr=False)
    counted_at: datetime.datetime


# Chat ---------------------------------------------------------------------------------------------------------
# The conversation the agent models read and write: a flat list of entries; a model adapter groups them into its
# own message format.

JsonObject = dict[str, Any]
"""A JSON object (tool arguments and tool results), as decoded by `json.loads`."""


@dataclass(frozen=True)
class UserText:
    """What the person typed."""

    text: str


@dataclass(frozen=True)
class AssistantText:
    """Reply text the model wrote in one round."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """The model asks to run a tool. `call_id` is unique within the session."""

    call_id: str
    name: str
    arguments: JsonObject


UNPARSABLE_ARGUMENTS = "$unparsable"
"""The only key of a tool call's arguments when the model's JSON could not be parsed (the tool refuses it)."""


@dataclass(frozen=True)
class ToolResult:
    """What a tool answered, as the model sees it: never tokens, Cognito sessions or login ids."""

    call_id: str
    name: str
    ok: bool
    content: JsonObject


ConversationEntry = UserText | AssistantText | ToolCall | ToolResult


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model is told about it: name, what it does, a JSON schema of its arguments."""

    name: str
    description: str
    input_schema: JsonObject


@dataclass(frozen=True)
class TurnFacts:
    """What the gateway (not the conversation) knows about the current turn, for the model's instructions."""

    authenticated: bool
    guest_id: str
    today: datetime.date
    time_zone: str = "UTC"
    """The IANA name of the time zone `today` is in (the chat's `--chat-time-zone`)."""


@dataclass(frozen=True)
class Usage:
    """Model tokens read and written."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class TextChunk:
    """A piece of reply text streamed by the model."""

    text: str


@dataclass(frozen=True)
class RoundEnd:
    """The model finished one round: `wants_tools` when it asked for tools and expects their results."""

    wants_tools: bool
    usage: Usage


ModelOutput = TextChunk | ToolCall | RoundEnd


@dataclass(frozen=True)
class ApprovalDecision:
    """The person's answer to an approval the gateway asked for: run the held action, or not."""

    approval_id: str
    approve: bool


@dataclass(frozen=True)
class PendingAction:
    """A tool call with side effects, held until the session's owner decides (`services/chat/approval.py`).

    `call` is exactly what runs on approval; `summary` is the gateway's own description of it; `decide_by` is
    when the approval expires (epoch seconds).
    """

    approval_id: str
    session_id: str
    owner_sub: Sub
    call: ToolCall
    summary: str
    decide_by: float
