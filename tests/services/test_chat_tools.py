"""The tool registry: schemas, argument checks, how failures become results the model can read, and the
in-chat sign-in the verify_code tool completes (on the real session store and bearer verifier)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.adapters.dynamodb.session_store import DynamoChatSessionStore
from gateway.domain import UNPARSABLE_ARGUMENTS, Principal, Sub, ToolCall
from gateway.errors import (
    GatewayError,
    InvalidArgumentError,
    LoginNotFoundError,
    NightsTakenError,
    OtpAttemptsExhaustedError,
    OtpExpiredError,
    OtpInvalidError,
    PropertyNotFoundError,
    RateLimitedError,
    ReservationNotFoundError,
    UpstreamUnavailableError,
)
from gateway.services.chat.events import ChatEventBody, Emit, TokenDeliveryEvent
from gateway.services.chat.sign_in import ChatSignIn
from gateway.services.chat.tools import ArgumentError, ToolContext, ToolRegistry, login_key, validate_arguments
from tests.services.chat_fakes import FakeBooking, FakeSignIn
from tests.services.conftest import Person
from tests.support.gateway import RunningGateway
from tests.support.identity import Tokens

TOKENS = Tokens(access_token="access-token-value", id_token="id-token-value", refresh_token="refresh-token-value")
PRINCIPAL = Principal(Sub("sub-1"), "user", "client", "family", 2_000_000_000.0, 1_999_996_400.0)


class Failing(FakeBooking):
    """Booking that fails the way the services do."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def create_reservation(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


def registry(booking: FakeBooking | None = None) -> ToolRegistry:
    return ToolRegistry(booking=booking or FakeBooking(), sign_in=FakeSignIn(TOKENS, "sub-1"))


Context = Callable[..., ToolContext]


@pytest.fixture
def context(store: DynamoChatSessionStore, gateway: RunningGateway) -> Context:
    """Makes the context of a tool call in turn 3 of a chat session, with the real in-chat sign-in service."""

    def make(principal: Principal | None = None, emit: Emit = lambda body: None) -> ToolContext:
        sign_in = ChatSignIn(store, gateway.app.verifier)
        return ToolContext("session-0123456789abcdef", principal, "127.0.0.1", 3, sign_in, emit)

    return make


BOOKING = {"property_id": "harbor-loft", "check_in": "2030-05-01", "check_out": "2030-05-03", "guests": 2}


def test_every_tool_has_a_json_schema_models_can_read() -> None:
    specs = registry().specs
    assert [s.name for s in specs] == [
        "list_properties",
        "check_availability",
        "create_reservation",
        "list_my_reservations",
        "cancel_reservation",
        "start_login",
        "verify_code",
    ]
    for spec in specs:
        assert spec.description
        schema = json.loads(json.dumps(spec.input_schema))
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ([], "the arguments must be a JSON object"),
        ({}, "check_in: required"),
        ({"check_in": "2030-05-01"}, "check_out: required"),
        ({"check_in": "May 1st", "check_out": "2030-05-03"}, "check_in: must be a calendar date like 2026-03-15"),
        ({"check_in": "2030-02-30", "check_out": "2030-05-03"}, "check_in: must be a calendar date like 2026-03-15"),
        ({"check_in": "20300501", "check_out": "2030-05-03"}, "check_in: must be a calendar date like 2026-03-15"),
        ({"check_in": 20300501, "check_out": "2030-05-03"}, "check_in: must be a string"),
        ({"check_in": "2030-05-01", "check_out": "2030-05-03", "guests": "2"}, "guests: must be a whole number"),
        ({"check_in": "2030-05-01", "check_out": "2030-05-03", "guests": True}, "guests: must be a whole number"),
        ({"check_in": "2030-05-01", "check_out": "2030-05-03", "guests": 0}, "guests: must be at least 1"),
        ({"check_in": "2030-05-01", "check_out": "2030-05-03", "guests": 51}, "guests: must be at most 50"),
        ({"check_in": "2030-05-01", "check_out": "2030-05-03", "property_id": ""}, "property_id: must not be empty"),
        ({"check_in": "2030-05-01", "check_out": "2030-05-03", "sub": "x"}, "sub: unknown argument"),
    ],
)
def test_check_availability_arguments_are_checked(arguments: Any, problem: str) -> None:
    [spec] = [s for s in registry().specs if s.name == "check_availability"]
    with pytest.raises(ArgumentError) as caught:
        validate_arguments(spec.input_schema, arguments)
    assert str(caught.value) == problem


@pytest.mark.parametrize("code", ["12345", "123456789", "12a456", " 123456", "\uff11\uff12\uff13\uff14\uff15\uff16"])
def test_verify_code_wants_6_to_8_ascii_digits(code: str) -> None:
    [spec] = [s for s in registry().specs if s.name == "verify_code"]
    with pytest.raises(ArgumentError, match="the code is 6 to 8 digits"):
        validate_arguments(spec.input_schema, {"code": code})
    validate_arguments(spec.input_schema, {"code": "123456"})
    validate_arguments(spec.input_schema, {"code": "12345678"})


async def test_a_bad_argument_is_a_failed_result_not_an_exception(context: Context) -> None:
    result, summary = await registry().run(ToolCall("c1", "create_reservation", {"guests": 2}), context(PRINCIPAL))
    assert (result.call_id, result.name, result.ok) == ("c1", "create_reservation", False)
    assert result.content == {"error": "INVALID_ARGUMENT", "message": "property_id: required"}
    assert summary == "property_id: required"


async def test_an_unknown_tool_is_a_failed_result(context: Context) -> None:
    result, _ = await registry().run(ToolCall("c1", "drop_tables", {}), context())
    assert result.content["error"] == "UNKNOWN_TOOL"


async def test_authenticated_tools_need_a_principal(context: Context) -> None:
    tools = registry()
    for name, arguments in (
        ("create_reservation", BOOKING),
        ("list_my_reservations", {}),
        ("cancel_reservation", {"reservation_id": "RES-23456789"}),
    ):
        result, _ = await tools.run(ToolCall("c", name, arguments), context(None))
        assert result.content["error"] == "SIGN_IN_REQUIRED", name


async def test_service_errors_become_results_with_their_reason_and_details(context: Context) -> None:
    taken = NightsTakenError("some nights are taken", metadata={"nights": "2030-05-01,2030-05-02"})
    result, _ = await registry(Failing(taken)).run(ToolCall("c", "create_reservation", BOOKING), context(PRINCIPAL))
    assert result.content == {
        "error": "NIGHTS_TAKEN",
        "message": "some nights are taken",
        "taken_nights": "2030-05-01,2030-05-02",
    }

    limited = RateLimitedError("slow down", retry_after_seconds=42.4)
    result, _ = await registry(Failing(limited)).run(ToolCall("c", "create_reservation", BOOKING), context(PRINCIPAL))
    assert result.content == {"error": "RATE_LIMITED", "message": "slow down", "retry_after_seconds": "42"}

    down = UpstreamUnavailableError("the booking database is unavailable right now; retry shortly")
    result, _ = await registry(Failing(down)).run(ToolCall("c", "create_reservation", BOOKING), context(PRINCIPAL))
    assert result.content["error"] == "UPSTREAM_UNAVAILABLE"


async def test_a_bug_in_a_tool_is_a_failed_result_and_a_logged_traceback(
    caplog: pytest.LogCaptureFixture, context: Context
) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.services.chat.tools"):
        result, _ = await registry(Failing(KeyError("oops"))).run(
            ToolCall("c", "create_reservation", BOOKING), context(PRINCIPAL)
        )
    assert result.content["error"] == "INTERNAL"
    assert any(record.exc_info for record in caplog.records)


async def test_a_booking_asked_twice_in_one_turn_uses_one_request_id(context: Context) -> None:
    booking = FakeBooking()
    tools = registry(booking)
    await tools.run(ToolCall("c1", "create_reservation", BOOKING), context(PRINCIPAL))
    await tools.run(ToolCall("c2", "create_reservation", BOOKING), context(PRINCIPAL))
    first, second = booking.request_ids
    assert first == second
    assert first.startswith("chat-")


async def test_check_availability_without_a_property_checks_them_all(context: Context) -> None:
    result, summary = await registry().run(
        ToolCall("c", "check_availability", {"check_in": "2030-05-01", "check_out": "2030-05-04"}), context()
    )
    assert result.ok
    assert [r["property_id"] for r in result.content["results"]] == ["harbor-loft", "garden-cottage"]
    assert result.content["nights"] == 3
    assert result.content["results"][0]["total"] == "567.00 USD"
    assert "Harbor Loft" in summary


async def test_verify_code_signs_in_through_the_sign_in_service_and_tells_the_model_only_the_guest_id(
    store: DynamoChatSessionStore, gateway: RunningGateway, person: Person
) -> None:
    sign_in = FakeSignIn(person.tokens, person.principal.sub)
    tools = ToolRegistry(booking=FakeBooking(), sign_in=sign_in)
    session = await store.create(
        secrets.token_urlsafe(16), lease_id="lease-1", lease_until=time.time() + 60, expires_at=time.time() + 600
    )
    emitted: list[ChatEventBody] = []
    ctx = ToolContext(session.session_id, None, "127.0.0.1", 0, ChatSignIn(store, gateway.app.verifier), emitted.append)

    await tools.run(ToolCall("c1", "start_login", {"email": "a@example.com", "name": "A"}), ctx)
    result, summary = await tools.run(ToolCall("c2", "verify_code", {"code": "12345678"}), ctx)

    assert result.content == {"verified": True, "guest_id": "GST-2026-TESTED"}
    assert summary == "verified as guest GST-2026-TESTED"
    # The tokens went to the turn's stream, not into the result.
    [delivered] = emitted
    assert isinstance(delivered, TokenDeliveryEvent)
    assert delivered.delivery.access_token == person.tokens.access_token
    assert person.tokens.access_token not in json.dumps(result.content)
    assert ctx.principal is not None
    assert (ctx.principal.sub, ctx.principal.guest_id) == (person.principal.sub, "GST-2026-TESTED")
    assert sign_in.started == {login_key(session.session_id): "a@example.com"}
    assert tools.secret_arguments(ToolCall("c2", "verify_code", {"code": "12345678"})) == ["12345678"]


def test_the_login_key_of_a_chat_session_is_a_valid_login_key() -> None:
    assert login_key("abc_DEF-123") == "chat:abc_DEF-123"


class RaisingBooking(FakeBooking):
    """Booking every method of which fails with `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def list_properties(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def check_availability(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def create_reservation(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def list_reservations(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def cancel_reservation(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class RaisingSignIn(FakeSignIn):
    """Sign-in that fails with `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(TOKENS, "sub-1")
        self.error = error

    async def initiate(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    async def verify(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


# What a line meant for a model looks like: an instruction to call or ask, tool names, the model's own words.
MODEL_TALK = re.compile(
    r"\b(call|calls|ask|tell|the person|start_login|verify_code|list_properties|check_availability|tool|model"
    r"|arguments|JSON|Ask for a new code)\b",
    re.I,
)
STAY = {"check_in": "2030-05-01", "check_out": "2030-05-03"}
EVERY_CALL = [
    ToolCall("c", "list_properties", {}),
    ToolCall("c", "check_availability", STAY),
    ToolCall("c", "create_reservation", BOOKING),
    ToolCall("c", "list_my_reservations", {}),
    ToolCall("c", "cancel_reservation", {"reservation_id": "RES-23456789"}),
    ToolCall("c", "start_login", {"email": "ann@example.com"}),
    ToolCall("c", "verify_code", {"code": "12345678"}),
]
SERVICE_ERRORS: list[GatewayError] = [
    NightsTakenError("some nights are taken", metadata={"nights": "2030-05-01"}),
    RateLimitedError("slow down", retry_after_seconds=42.0),
    UpstreamUnavailableError("the booking database is unavailable right now; retry shortly"),
    OtpInvalidError("the code is wrong; check the email and try again", metadata={"attempts_left": "1"}),
    OtpInvalidError("the code is wrong; check the email and try again", metadata={"attempts_left": "0"}),
    OtpExpiredError("the code has expired; start a new sign-in"),
    OtpAttemptsExhaustedError("too many wrong codes; start a new sign-in"),
    LoginNotFoundError("no sign-in is waiting for a code; start one"),
    ReservationNotFoundError("no reservation with that id"),
    PropertyNotFoundError("no such property; ListProperties names them"),
    InvalidArgumentError("check_in: must not be in the past (today is 2030-01-01)"),
]


async def test_every_tool_failure_tells_the_person_what_happened_without_instructions_for_the_model(
    context: Context,
) -> None:
    seen: dict[str, str] = {}

    async def check(tools: ToolRegistry, call: ToolCall, principal: Principal | None) -> None:
        result, summary = await tools.run(call, context(principal))
        assert not result.ok, (call, result)
        assert summary, (call, result)
        assert not MODEL_TALK.search(summary), (call.name, result.content, summary)
        assert "attempts left" not in summary or not summary.startswith("1 "), summary
        seen.setdefault(str(result.content["error"]), summary)

    tools = registry()
    # The tools' own reasons.
    await check(tools, ToolCall("c", "drop_tables", {}), None)
    await check(tools, ToolCall("c", "check_availability", {UNPARSABLE_ARGUMENTS: "{"}), None)
    for arguments in ({"check_in": "next friday", "check_out": "x"}, {**BOOKING, "check_in": "2001-01-01"}):
        await check(tools, ToolCall("c", "check_availability", {**STAY, **arguments}), None)
    await check(tools, ToolCall("c", "create_reservation", {"guests": 2}), PRINCIPAL)
    await check(tools, ToolCall("c", "verify_code", {"code": "12ab"}), None)
    for call in EVERY_CALL[2:5]:
        await check(tools, call, None)
    for call in EVERY_CALL[5:]:
        await check(tools, call, PRINCIPAL)
    await check(registry(Failing(KeyError("oops"))), EVERY_CALL[2], PRINCIPAL)
    # Every service refusal, from every tool that can meet it.
    for error in SERVICE_ERRORS:
        for call in EVERY_CALL:
            signing_in = call.name in ("start_login", "verify_code")
            failing = ToolRegistry(
                booking=FakeBooking() if signing_in else RaisingBooking(error),
                sign_in=RaisingSignIn(error) if signing_in else FakeSignIn(TOKENS, "sub-1"),
            )
            await check(failing, call, None if signing_in else PRINCIPAL)

    assert set(seen) >= {
        "UNKNOWN_TOOL",
        "INVALID_ARGUMENT",
        "SIGN_IN_REQUIRED",
        "ALREADY_SIGNED_IN",
        "INTERNAL",
        *(error.reason for error in SERVICE_ERRORS),
    }
    assert seen["SIGN_IN_REQUIRED"] == "you need to sign in first"


async def test_a_wrong_code_summary_counts_grammatically_and_the_last_one_points_to_a_new_code(
    context: Context,
) -> None:
    summaries = []
    for left in ("2", "1", "0"):
        error = OtpInvalidError("the code is wrong", metadata={"attempts_left": left})
        tools = ToolRegistry(booking=FakeBooking(), sign_in=RaisingSignIn(error))
        _, summary = await tools.run(ToolCall("c", "verify_code", {"code": "12345678"}), context())
        summaries.append(summary)
    assert summaries == [
        "wrong code, 2 attempts left",
        "wrong code, 1 attempt left",
        "wrong code, and no attempts are left: send your email again to get a new code",
    ]
