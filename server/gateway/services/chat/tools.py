"""The agent's tool registry, shared by every model: schemas, argument checks, and the tools themselves.

A tool answers with a `ToolResult` the model reads. A bad argument, a refused call or a failing service is a
failed result the model can react to (`ok=False`, `content={"error": REASON, "message": ...}`), never a broken
stream. Authenticated tools run as the turn's principal (the bearer's, or the person who just verified a code
in this stream), never as anybody named in the conversation. No result ever holds a token, a Cognito session
or a login id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, get_args

from gateway.domain import (
    UNPARSABLE_ARGUMENTS,
    Availability,
    Calendar,
    JsonObject,
    Principal,
    Property,
    Reservation,
    Stay,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from gateway.errors import GatewayError
from gateway.language.dates import stay_argument_problem
from gateway.language.emails import EMAIL_IN_TEXT
from gateway.services.chat.backends import BookingTools, SignInTools
from gateway.services.chat.events import Emit
from gateway.services.chat.sign_in import ChatSignIn
from gateway.services.chat.summaries import service_summary

log = logging.getLogger(__name__)

MAX_LISTED_RESERVATIONS = 20
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ArgumentError(ValueError):
    """A tool argument does not match the tool's schema; the message names the argument."""


def validate_arguments(schema: Mapping[str, Any], arguments: object) -> None:
    """Check `arguments` against the subset of JSON Schema the registry uses; raise ArgumentError.

    Supported: an object with `properties`, `required` and `additionalProperties: false`; properties of type
    string (`minLength`, `maxLength`, `pattern`, `format: date`), integer (`minimum`, `maximum`) and boolean.
    """
    if not isinstance(arguments, dict):
        raise ArgumentError("the arguments must be a JSON object")
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in arguments:
            raise ArgumentError(f"{name}: required")
    if schema.get("additionalProperties") is False:
        for name in arguments:
            if name not in properties:
                raise ArgumentError(f"{str(name)[:40]}: unknown argument")
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is not None:
            _check_value(name, spec, value)


def _check_value(name: str, spec: Mapping[str, Any], value: object) -> None:
    kind = spec.get("type")
    if kind == "string":
        if not isinstance(value, str):
            raise ArgumentError(f"{name}: must be a string")
        if len(value) < spec.get("minLength", 0):
            raise ArgumentError(f"{name}: must not be empty")
        if "maxLength" in spec and len(value) > spec["maxLength"]:
            raise ArgumentError(f"{name}: at most {spec['maxLength']} characters")
        if "pattern" in spec and not re.fullmatch(spec["pattern"], value):
            raise ArgumentError(f"{name}: {spec.get('description', 'has the wrong form')}")
        if spec.get("format") == "date":
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ArgumentError(f"{name}: must be a calendar date like 2026-03-15") from None
            if not _DATE.fullmatch(value):
                raise ArgumentError(f"{name}: must be a calendar date like 2026-03-15")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArgumentError(f"{name}: must be a whole number")
        if "minimum" in spec and value < spec["minimum"]:
            raise ArgumentError(f"{name}: must be at least {spec['minimum']}")
        if "maximum" in spec and value > spec["maximum"]:
            raise ArgumentError(f"{name}: must be at most {spec['maximum']}")
    elif kind == "boolean" and not isinstance(value, bool):
        raise ArgumentError(f"{name}: must be true or false")


@dataclass(frozen=True)
class Outcome:
    """What a tool did: the result content for the model and a one-line summary for the person."""

    ok: bool
    content: JsonObject
    summary: str


# The reasons a tool fails with on its own (each a `booking.v1.ErrorReason` name); a service's refusal carries its
# GatewayError's reason instead (`_outcome`).
ToolFailureReason = Literal[
    "INVALID_ARGUMENT",
    "INTERNAL",
    "SIGN_IN_REQUIRED",
    "UNKNOWN_TOOL",
    "ALREADY_SIGNED_IN",
    "APPROVAL_DECLINED",
    "APPROVAL_WITHDRAWN",
    "APPROVAL_EXPIRED",
]
TOOL_FAILURE_REASONS: frozenset[str] = frozenset(get_args(ToolFailureReason))


def failed(reason: ToolFailureReason | GatewayError, message: str, *, summary: str = "", **extra: str) -> Outcome:
    """A failed outcome the model can react to: one of the tool's own reasons, or a service's refusal.

    `message` is for the model (it may say what to do next); `summary` is the short sentence the person sees
    (default: `message`, for messages that are fit for people).
    """
    error = reason.reason if isinstance(reason, GatewayError) else reason
    return Outcome(False, {"error": error, "message": message, **extra}, summary or message)


def service_refusal(exc: GatewayError) -> Outcome:
    """A service's refusal (its GatewayError) as a failed outcome, with the error's metadata and a line for the
    person (`service_summary`)."""
    extra = {key: value for key, value in exc.metadata.items() if key != "nights"}
    if "nights" in exc.metadata:
        extra["taken_nights"] = exc.metadata["nights"]
    if exc.retry_after_seconds is not None:
        extra["retry_after_seconds"] = str(round(exc.retry_after_seconds))
    return failed(exc, exc.message, summary=service_summary(exc, extra), **extra)


@dataclass
class ToolContext:
    """What a tool may know about the turn it runs in, and may use in it.

    `principal` changes when a code is verified; `sign_in` completes that sign-in and `emit` hands the turn's
    events (the TokenDelivery) to its stream.
    """

    session_id: str
    principal: Principal | None
    client: str
    turn_number: int
    sign_in: ChatSignIn
    emit: Emit


Handler = Callable[[ToolContext, JsonObject], Awaitable[Outcome]]


@dataclass(frozen=True)
class Tool:
    """One tool: its name, description and argument schema (what a model is told), and its handler.

    `secret_arguments` are redacted from the stored conversation once the turn is over.
    """

    name: str
    description: str
    input_schema: JsonObject
    handler: Handler
    secret_arguments: frozenset[str] = field(default_factory=frozenset)

    @property
    def spec(self) -> ToolSpec:
        """The tool as a model sees it."""
        return ToolSpec(self.name, self.description, self.input_schema)


def _object(properties: JsonObject, required: Sequence[str] = ()) -> JsonObject:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_DATE_ARG = {"type": "string", "format": "date", "description": "an ISO 8601 calendar date like 2026-03-15"}


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def money(cents: int, currency: str) -> str:
    """The one money format of the chat and every client: the amount with two decimals, then the property's
    currency code ("945.00 USD"); exact for any amount (no float)."""
    sign, whole = ("-", -cents) if cents < 0 else ("", cents)
    return f"{sign}{whole // 100}.{whole % 100:02d} {currency}"


def _property_json(prop: Property) -> JsonObject:
    return {
        "property_id": prop.property_id,
        "name": prop.name,
        "description": prop.description,
        "capacity": prop.capacity,
        "nightly_rate": money(prop.nightly_rate_cents, prop.currency),
    }


def _availability_json(found: Availability, guests: int) -> JsonObject:
    return {
        "property_id": found.property.property_id,
        "name": found.property.name,
        "capacity": found.property.capacity,
        "available": found.available,
        "taken_nights": [n.night.isoformat() for n in found.nights if not n.available],
        "too_many_guests": guests > found.property.capacity,
        "total": money(found.total_cents, found.currency),
    }


def _reservation_json(reservation: Reservation) -> JsonObject:
    stay = reservation.stay
    return {
        "reservation_id": reservation.reservation_id,
        "property_id": stay.property_id,
        "property_name": reservation.property_name,
        "check_in": stay.check_in.isoformat(),
        "check_out": stay.check_out.isoformat(),
        "guests": stay.guests,
        "status": reservation.status.value,
        "total": money(reservation.total_cents, reservation.currency),
    }


def _stay(arguments: JsonObject, property_id: str) -> Stay:
    return Stay(
        property_id=property_id,
        check_in=date.fromisoformat(arguments["check_in"]),
        check_out=date.fromisoformat(arguments["check_out"]),
        guests=int(arguments.get("guests", 1)),
    )


async def _all_of(checks: Sequence[Coroutine[Any, Any, Availability]]) -> list[Availability]:
    """Run the checks concurrently; a failure of any is raised as itself (not as an ExceptionGroup)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(check) for check in checks]
    except ExceptionGroup as failed:
        first = failed.exceptions[0]
        if isinstance(first, Exception):
            raise first from None
        raise
    return [task.result() for task in tasks]


def sign_in_required() -> Outcome:
    return failed(
        "SIGN_IN_REQUIRED",
        "the person is not signed in: ask for their name and email address, then call start_login",
        summary="you need to sign in first",
    )


_DATE_FIELDS = {"check_in": "check-in date", "check_out": "check-out date"}


def _date_summary(field_name: str, arguments: JsonObject) -> str:
    """What was wrong with a date, for the person (the model's message says how to correct it)."""
    value = str(arguments.get(field_name, ""))[:40]
    return f"the {_DATE_FIELDS.get(field_name, field_name)} {value} was not usable ({field_name})"


def _argument_summary(problem: str) -> str:
    """An argument problem ("guests: must be at least 1") for the person, without what the model should do."""
    return problem.split(";")[0]


class ToolRegistry:
    """Every tool the agent may call, bound to the services that do the work."""

    def __init__(self, booking: BookingTools, sign_in: SignInTools, *, calendar: Calendar | None = None) -> None:
        self._booking = booking
        self._sign_in = sign_in
        self._calendar = calendar or Calendar.named("UTC")
        tools = [
            Tool(
                "list_properties",
                "List every property that can be booked, with its capacity and nightly rate.",
                _object({}),
                self._list_properties,
            ),
            Tool(
                "check_availability",
                "Check which properties are free for a stay (check-in inclusive, check-out exclusive) and what the "
                "stay costs. Omit property_id to check every property.",
                _object(
                    {
                        "check_in": _DATE_ARG,
                        "check_out": _DATE_ARG,
                        "property_id": {"type": "string", "minLength": 1, "maxLength": 64},
                        "guests": {"type": "integer", "minimum": 1, "maximum": 50},
                    },
                    ["check_in", "check_out"],
                ),
                self._check_availability,
            ),
            Tool(
                "create_reservation",
                "Book a stay for the signed-in person. Needs a sign-in first (start_login, verify_code).",
                _object(
                    {
                        "property_id": {"type": "string", "minLength": 1, "maxLength": 64},
                        "check_in": _DATE_ARG,
                        "check_out": _DATE_ARG,
                        "guests": {"type": "integer", "minimum": 1, "maximum": 50},
                    },
                    ["property_id", "check_in", "check_out", "guests"],
                ),
                self._create_reservation,
            ),
            Tool(
                "list_my_reservations",
                "List the signed-in person's reservations, newest first.",
                _object({}),
                self._list_reservations,
            ),
            Tool(
                "cancel_reservation",
                "Cancel one of the signed-in person's reservations by its id (like RES-7K2Q9D4M).",
                _object(
                    {
                        "reservation_id": {
                            "type": "string",
                            "pattern": r"RES-[A-Z0-9]{4,24}",
                            "description": "a reservation id like RES-7K2Q9D4M",
                        }
                    },
                    ["reservation_id"],
                ),
                self._cancel_reservation,
            ),
            Tool(
                "start_login",
                "Send a one-time sign-in code to the person's email address. Ask for their name and email first.",
                _object(
                    {
                        "email": {"type": "string", "minLength": 3, "maxLength": 254},
                        "name": {"type": "string", "maxLength": 100},
                    },
                    ["email"],
                ),
                self._start_login,
            ),
            Tool(
                "verify_code",
                "Check the one-time code the person received by email (6 to 8 digits). On success the person is "
                "signed in; the result names their guest id.",
                _object(
                    {
                        "code": {
                            "type": "string",
                            "pattern": r"[0-9]{6,8}",
                            "description": "the code is 6 to 8 digits",
                        }
                    },
                    ["code"],
                ),
                self._verify_code,
                secret_arguments=frozenset({"code"}),
            ),
        ]
        self._tools = {tool.name: tool for tool in tools}

    @property
    def specs(self) -> list[ToolSpec]:
        """What models are told about the tools."""
        return [tool.spec for tool in self._tools.values()]

    async def sign_in_pending(self, session_id: str) -> bool:
        """True while a sign-in started in this chat session waits for its code."""
        return await self._sign_in.is_pending(login_key(session_id), door="chat")

    def secret_arguments(self, call: ToolCall) -> list[str]:
        """The values of `call`'s arguments that must not be stored."""
        tool = self._tools.get(call.name)
        if tool is None:
            return []
        return [str(call.arguments[name]) for name in tool.secret_arguments if call.arguments.get(name)]

    async def run(self, call: ToolCall, context: ToolContext) -> tuple[ToolResult, str]:
        """Run one tool call; return its result for the model and a summary for the person.

        Never raises for a bad call or a refused one: those are failed results. Cancellation propagates.
        """
        outcome = await self._outcome(call, context)
        return ToolResult(call.call_id, call.name, outcome.ok, outcome.content), outcome.summary

    def refused(self, call: ToolCall) -> Outcome | None:
        """Why `call` cannot run as asked (an unknown tool, arguments off its schema), or None."""
        tool = self._tools.get(call.name)
        if tool is None:
            return failed(
                "UNKNOWN_TOOL", f"there is no tool named {call.name[:60]!r}", summary="the assistant made a mistake"
            )
        if UNPARSABLE_ARGUMENTS in call.arguments:
            return failed(
                "INVALID_ARGUMENT",
                "the arguments are not valid JSON; send a JSON object",
                summary="the assistant made a mistake",
            )
        # Dates first: ISO 8601 only, and what a wrong one would have meant, so that a model can correct itself.
        if isinstance(call.arguments, dict) and "check_in" in tool.input_schema.get("properties", {}):
            problem = stay_argument_problem(call.arguments, self._calendar.today(), self._calendar.zone_name)
            if problem is not None:
                field_name, message = problem
                return failed("INVALID_ARGUMENT", message, summary=_date_summary(field_name, call.arguments))
        try:
            validate_arguments(tool.input_schema, call.arguments)
        except ArgumentError as exc:
            return failed("INVALID_ARGUMENT", str(exc), summary=_argument_summary(str(exc)))
        return None

    async def _outcome(self, call: ToolCall, context: ToolContext) -> Outcome:
        refusal = self.refused(call)
        if refusal is not None:
            return refusal
        tool = self._tools[call.name]
        try:
            return await tool.handler(context, call.arguments)
        except GatewayError as exc:
            return service_refusal(exc)
        except Exception:
            # A bug, not the person's fault: the model is told the tool failed, the log has the traceback.
            log.exception("tool failed", extra={"tool": call.name})
            return failed(
                "INTERNAL",
                "the tool failed unexpectedly; try again or ask the person to retry later",
                summary="something went wrong on our side; please try again",
            )

    # --- the tools ---------------------------------------------------------------------------------------------

    async def _list_properties(self, context: ToolContext, arguments: JsonObject) -> Outcome:
        properties = await self._booking.list_properties()
        return Outcome(
            True,
            {"properties": [_property_json(p) for p in properties]},
            _count(len(properties), "property", "properties"),
        )

    async def _check_availability(self, context: ToolContext, arguments: JsonObject) -> Outcome:
        property_id = arguments.get("property_id")
        ids = [str(property_id)] if property_id else [p.property_id for p in await self._booking.list_properties()]
        stays = [_stay(arguments, pid) for pid in ids]
        found = await _all_of([self._booking.check_availability(stay) for stay in stays])
        first = stays[0]
        free = [f.property.name for f in found if f.available]
        summary = f"{first.check_in.isoformat()} to {first.check_out.isoformat()}: " + (
            f"free: {', '.join(free)}" if free else "nothing free"
        )
        return Outcome(
            True,
            {
                "check_in": first.check_in.isoformat(),
                "check_out": first.check_out.isoformat(),
                "nights": len(first.nights),
                "guests": first.guests,
                "results": [_availability_json(f, first.guests) for f in found],
            },
            summary,
        )

    async def _create_reservation(self, context: ToolContext, arguments: JsonObject) -> Outcome:
        principal = context.principal
        if principal is None:
            return sign_in_required()
        stay = _stay(arguments, str(arguments["property_id"]))
        # The same booking asked twice in one turn (a model retrying) books once.
        seed = "|".join(
            (context.session_id, str(context.turn_number), principal.sub, stay.property_id, f"{stay.check_in}")
        )
        seed += f"|{stay.check_out}|{stay.guests}"
        request_id = "chat-" + hashlib.sha256(seed.encode()).hexdigest()[:32]
        reservation = await self._booking.create_reservation(principal, stay, request_id=request_id)
        return Outcome(
            True,
            {"reservation": _reservation_json(reservation)},
            f"booked {reservation.reservation_id}: {reservation.property_name}, "
            f"{stay.check_in.isoformat()} to {stay.check_out.isoformat()}",
        )

    async def _list_reservations(self, context: ToolContext, arguments: JsonObject) -> Outcome:
        principal = context.principal
        if principal is None:
            return sign_in_required()
        page = await self._booking.list_reservations(principal, page_size=MAX_LISTED_RESERVATIONS)
        return Outcome(
            True,
            {"reservations": [_reservation_json(r) for r in page.reservations], "more": bool(page.next_page_token)},
            _count(len(page.reservations), "reservation", "reservations"),
        )

    async def _cancel_reservation(self, context: ToolContext, arguments: JsonObject) -> Outcome:
        principal = context.principal
        if principal is None:
            return sign_in_required()
        reservation = await self._booking.cancel_reservation(principal, str(arguments["reservation_id"]))
        return Outcome(True, {"reservation": _reservation_json(reservation)}, f"cancelled {reservation.reservation_id}")

    async def _start_login(self, context: ToolContext, arguments: JsonObject) -> Outcome:
        if context.principal is not None:
            guest = context.principal.guest_id or "this account"
            return failed(
                "ALREADY_SIGNED_IN",
                f"the person is already signed in as {guest}",
                summary=f"you're already signed in as {guest}",
            )
        started = await self._sign_in.initiate(
            str(arguments["email"]),
            str(arguments.get("name", "")),
            context.client,
            login_key=login_key(context.session_id),
            door="chat",
        )
        return Outcome(
            True,
            {"code_sent": True, "destination": started.destination, "expires_at": started.expires_at.isoformat()},
            f"code sent to {started.destination}",
        )

    async def _verify_code(self, context: ToolContext, arguments: JsonObject) -> Outcome:
        if context.principal is not None:
            guest = context.principal.guest_id or "this account"
            return failed(
                "ALREADY_SIGNED_IN",
                f"the person is already signed in as {guest}",
                summary=f"you're already signed in as {guest}",
            )
        delivery = await self._sign_in.verify(
            login_key(context.session_id), str(arguments["code"]), context.client, door="chat"
        )
        context.principal = await context.sign_in.complete(context.session_id, delivery, context.emit)
        guest_id = delivery.guest_id
        who = f"verified as guest {guest_id}" if guest_id else "verified"
        return Outcome(True, {"verified": True, "guest_id": guest_id}, who)


# What counts as a code typed in the chat: a run of 6 to 8 digits standing alone (what `verify_code` accepts), not
# part of a longer number or word, a date like 2026-12-04, an id like RES-12345678 or an email address like
# jane.19851231@example.com. Such runs are never stored, and the model sees them only while a sign-in of the
# session waits for its code.
CODE_IN_TEXT = re.compile(r"(?<![\w-])[0-9]{6,8}(?![\w-])")
REDACTED = "[redacted]"


def _code_runs(text: str) -> list[re.Match[str]]:
    emails = [match.span() for match in EMAIL_IN_TEXT.finditer(text)]
    return [
        match for match in CODE_IN_TEXT.finditer(text) if not any(start <= match.start() < end for start, end in emails)
    ]


def typed_codes(text: str) -> list[str]:
    """The code-like runs in a message (see `CODE_IN_TEXT`)."""
    return [match.group(0) for match in _code_runs(text)]


def redact_codes(text: str) -> str:
    """The message with its code-like runs replaced by `REDACTED` (email addresses left whole)."""
    out, last = [], 0
    for match in _code_runs(text):
        out += [text[last : match.start()], REDACTED]
        last = match.end()
    return "".join([*out, text[last:]])


def login_key(session_id: str) -> str:
    """The key the login service keeps a chat session's login state under."""
    return f"chat:{session_id}"
