"""The scripted agent's booking language: dates, guests, names, and what it asks for in which situation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import pytest

from gateway.adapters.scripted_agent import ScriptedAgent, parse_dates, parse_name
from gateway.adapters.scripted_words import date_examples, parse_guests
from gateway.domain import (
    ConversationEntry,
    JsonObject,
    ModelOutput,
    RoundEnd,
    TextChunk,
    ToolCall,
    ToolResult,
    TurnFacts,
    UserText,
)
from gateway.services.chat.tools import ToolRegistry
from tests.services.chat_fakes import FakeBooking, FakeSignIn
from tests.support.identity import Tokens

TODAY = date(2026, 11, 25)
SPECS = ToolRegistry(FakeBooking(), FakeSignIn(Tokens("a", "i", "r"), "sub")).specs
ANONYMOUS = TurnFacts(authenticated=False, guest_id="", today=TODAY)
SIGNED_IN = TurnFacts(authenticated=True, guest_id="GST-2026-AAAAAA", today=TODAY)


@pytest.mark.parametrize(
    ("text", "stay"),
    [
        ("what's available March 15-20?", (date(2027, 3, 15), date(2027, 3, 20))),
        ("Mar 15 to 20", (date(2027, 3, 15), date(2027, 3, 20))),
        ("december 1st - 5th", (date(2026, 12, 1), date(2026, 12, 5))),
        ("from March 30 to April 2", (date(2027, 3, 30), date(2027, 4, 2))),
        ("March 30-2", (date(2027, 3, 30), date(2027, 4, 2))),
        ("Dec 30 - Jan 2", (date(2026, 12, 30), date(2027, 1, 2))),
        ("15-20 March", (date(2027, 3, 15), date(2027, 3, 20))),
        ("March 15-20, 2028", (date(2028, 3, 15), date(2028, 3, 20))),
        ("2027-03-15 to 2027-03-20", (date(2027, 3, 15), date(2027, 3, 20))),
        ("2027-03-15 - 2027-03-20", (date(2027, 3, 15), date(2027, 3, 20))),
        ("November 25-27", (date(2026, 11, 25), date(2026, 11, 27))),
    ],
)
def test_stays_are_read_from_the_usual_ways_of_writing_them(text: str, stay: tuple[date, date]) -> None:
    assert parse_dates(text, TODAY) == stay


@pytest.mark.parametrize("text", ["hello", "February 30-31", "2027-13-01 to 2027-13-05", "in a few days"])
def test_text_without_a_valid_stay_has_no_dates(text: str) -> None:
    assert parse_dates(text, TODAY) is None


def test_guests_and_names() -> None:
    assert parse_guests("book the Harbor Loft for 2 guests") == 2
    assert parse_guests("for two people") == 2
    assert parse_guests("the loft please") is None
    assert parse_name("John Doe, john@example.com", "john@example.com") == "John Doe"
    assert parse_name("I'm Mary-Jane O'Neil and my email is mj@example.com", "mj@example.com") == "Mary-Jane O'Neil"
    assert parse_name("jd@example.com", "jd@example.com") == ""
    assert parse_name("<script> x@example.com", "x@example.com") == ""


async def round_of(
    message: str, memory: JsonObject, facts: TurnFacts = ANONYMOUS, results: Sequence[ToolResult] = ()
) -> tuple[str, list[ToolCall], RoundEnd]:
    conversation: list[ConversationEntry] = [UserText(message), *results]
    outputs: list[ModelOutput] = [o async for o in ScriptedAgent().run_round(conversation, SPECS, facts, memory)]
    text = "".join(o.text for o in outputs if isinstance(o, TextChunk))
    calls = [o for o in outputs if isinstance(o, ToolCall)]
    end = outputs[-1]
    assert isinstance(end, RoundEnd)
    return text, calls, end


async def test_asking_about_availability_checks_every_property_for_those_dates() -> None:
    memory: JsonObject = {}
    text, [call], end = await round_of("What's available March 15-20?", memory)
    assert call.name == "check_availability"
    assert call.arguments == {"check_in": "2027-03-15", "check_out": "2027-03-20"}
    assert end.wants_tools
    assert "March 15, 2027 to March 20, 2027" in text
    assert end.usage.output_tokens == len(text.split()) + 1


async def test_booking_without_a_sign_in_checks_the_stay_says_the_price_then_asks_for_name_and_email() -> None:
    memory: JsonObject = {
        "properties": {"harbor-loft": "Harbor Loft"},
        "check_in": "2027-03-15",
        "check_out": "2027-03-20",
    }
    message = "book the Harbor Loft for 2 guests"
    _, [check], _ = await round_of(message, memory)
    assert (check.name, check.arguments) == (
        "check_availability",
        {"check_in": "2027-03-15", "check_out": "2027-03-20", "property_id": "harbor-loft", "guests": 2},
    )
    free = ToolResult(
        check.call_id,
        "check_availability",
        True,
        {
            "check_in": "2027-03-15",
            "check_out": "2027-03-20",
            "nights": 5,
            "guests": 2,
            "results": [
                {
                    "property_id": "harbor-loft",
                    "name": "Harbor Loft",
                    "capacity": 4,
                    "available": True,
                    "taken_nights": [],
                    "too_many_guests": False,
                    "total": "900.00 EUR",
                }
            ],
        },
    )
    text, calls, _ = await round_of(message, memory, results=[free])
    assert calls == []
    assert "900.00 EUR" in text
    assert "name and email" in text
    assert memory["pending_booking"] is True
    assert (memory["property_id"], memory["guests"], memory["awaiting"]) == ("harbor-loft", 2, "email")


async def test_a_signed_out_booking_of_a_taken_stay_says_so_before_any_sign_in() -> None:
    memory: JsonObject = {
        "properties": {"harbor-loft": "Harbor Loft"},
        "check_in": "2027-03-15",
        "check_out": "2027-03-20",
    }
    message = "book the Harbor Loft for 2 guests"
    _, [check], _ = await round_of(message, memory)
    taken = {
        "property_id": "harbor-loft",
        "name": "Harbor Loft",
        "capacity": 4,
        "available": False,
        "taken_nights": ["2027-03-16"],
        "too_many_guests": False,
        "total": "900.00 EUR",
    }
    content: JsonObject = {
        "check_in": "2027-03-15",
        "check_out": "2027-03-20",
        "nights": 5,
        "guests": 2,
        "results": [taken],
    }
    text, calls, _ = await round_of(message, memory, results=[ToolResult(check.call_id, check.name, True, content)])
    assert calls == []
    assert "not free" in text
    assert "email" not in text
    assert "pending_booking" not in memory


async def test_booking_when_signed_in_asks_for_the_booking_at_once() -> None:
    memory: JsonObject = {
        "properties": {"harbor-loft": "Harbor Loft"},
        "check_in": "2027-03-15",
        "check_out": "2027-03-20",
    }
    _, [call], _ = await round_of("book the loft for 2 guests", memory, SIGNED_IN)
    assert call.name == "create_reservation"
    assert call.arguments == {
        "property_id": "harbor-loft",
        "check_in": "2027-03-15",
        "check_out": "2027-03-20",
        "guests": 2,
    }


async def test_booking_an_unknown_property_first_lists_the_properties() -> None:
    _, [call], _ = await round_of("book the Harbor Loft for 2 guests", {})
    assert call.name == "list_properties"


async def test_name_and_email_start_a_login_and_a_code_is_verified_only_when_expected() -> None:
    memory: JsonObject = {"awaiting": "email"}
    _, [call], _ = await round_of("John Doe, john@example.com", memory)
    assert (call.name, call.arguments) == ("start_login", {"email": "john@example.com", "name": "John Doe"})

    _, calls, _ = await round_of("call me at 12345678", {})
    assert calls == []
    _, [verify], _ = await round_of("12345678", {"awaiting": "code"})
    assert (verify.name, verify.arguments) == ("verify_code", {"code": "12345678"})


async def test_a_wrong_code_says_how_many_attempts_are_left() -> None:
    result = ToolResult(
        "c1", "verify_code", False, {"error": "OTP_INVALID", "message": "the code is wrong", "attempts_left": "1"}
    )
    text, calls, end = await round_of("11111111", {"awaiting": "code"}, results=[result])
    assert calls == []
    assert not end.wants_tools
    assert text == "That code isn't right. You have 1 attempt left: type the code again."


async def test_too_many_wrong_codes_asks_for_the_email_again() -> None:
    memory: JsonObject = {"awaiting": "code"}
    result = ToolResult("c1", "verify_code", False, {"error": "OTP_ATTEMPTS_EXHAUSTED", "message": "too many"})
    text, _, _ = await round_of("11111111", memory, results=[result])
    assert "Too many wrong codes" in text
    assert memory["awaiting"] == "email"


async def test_reservations_and_cancelling() -> None:
    _, [listing], _ = await round_of("what are my reservations?", {}, SIGNED_IN)
    assert listing.name == "list_my_reservations"
    _, [cancel], _ = await round_of("please cancel res-23456789", {}, SIGNED_IN)
    assert (cancel.name, cancel.arguments) == ("cancel_reservation", {"reservation_id": "RES-23456789"})
    text, calls, _ = await round_of("cancel it", {}, SIGNED_IN)
    assert calls == []
    assert "Which reservation" in text


async def test_anything_else_gets_help() -> None:
    text, calls, _ = await round_of("blorp", {})
    assert calls == []
    assert "I can check availability" in text


def test_the_help_texts_example_dates_are_read_as_the_stay_they_show_on_every_day_of_a_year() -> None:
    for offset in range(366):
        today = date(2027, 12, 1) + timedelta(days=offset)
        written, iso = date_examples(today)
        start = today + timedelta(days=21)
        stay = (start, start + timedelta(days=3))
        assert parse_dates(written, today) == stay, (today, written)
        assert parse_dates(iso, today) == stay, (today, iso)
    assert parse_guests(f"{written} for 2 adults and a child") == 3
