"""A deterministic booking agent that works offline: the default model, used by `make run` and the tests.

It understands a small booking language: greetings and help, "what's available March 15-20" (and ISO dates),
"book the Harbor Loft for 2 guests", a name and an email address, a one-time code (6 to 8 digits), "what are
my reservations", "cancel RES-…". It keeps the conversation's state in its memory (the property, dates and
guests being discussed, a booking waiting for a sign-in) and streams its replies word by word. Its token counts
are its own: words read, and text chunks plus tool calls written.

Booking while signed out, it first checks that the stay is free and says its price, then asks for a sign-in,
then asks for the booking it checked. A booking or a cancellation is only ever asked for: the gateway holds it
for the person's approval (`services/chat/approval.py`), and a typed "yes" approves nothing.

Like any model it only asks for tools; the gateway runs them. It never sees tokens or login state.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from gateway.adapters.scripted_words import (
    bare_count,
    capacity_refusal,
    cheapest_first,
    date_examples,
    help_text,
    named_but_unknown,
    parse_guests,
    unknown_property,
    wants_cheapest,
)
from gateway.domain import (
    AssistantText,
    ConversationEntry,
    JsonObject,
    ModelOutput,
    RoundEnd,
    TextChunk,
    ToolCall,
    ToolResult,
    ToolSpec,
    TurnFacts,
    Usage,
    UserText,
)
from gateway.language.dates import (
    AmbiguousDate,
    DateProblem,
    NightsOnly,
    StartDate,
    StayDates,
    StayReading,
    nice_date,
    read_stay,
)
from gateway.language.emails import EMAIL_IN_TEXT

_EMAIL = EMAIL_IN_TEXT
_CODE = re.compile(r"(?<![\d-])(\d{6,8})(?![\d-])")
_RESERVATION = re.compile(r"\bRES-[A-Z0-9]{4,24}\b", re.I)
_GREETING = re.compile(r"^\s*(hi|hello|hey|hiya|good (?:morning|afternoon|evening))\b", re.I)
_HELP = re.compile(r"\b(help|what can you do|how does this work)\b", re.I)
_THANKS = re.compile(r"\b(thanks|thank you|cheers)\b", re.I)
_MY_RESERVATIONS = re.compile(r"\b(my|our)\s+(reservations?|bookings?|stays?|trips?)\b|\bwhat have i booked\b", re.I)
_BOOK = re.compile(r"\b(book|reserve)\b", re.I)
_CANCEL = re.compile(r"\bcancel\b", re.I)
_AVAILABILITY = re.compile(r"\b(available|availability|free|vacanc\w*|open)\b", re.I)
_YES = re.compile(r"^\s*(yes|yep|yeah|sure|ok(?:ay)?|go ahead|please do|confirm|do it|book it)\b", re.I)
_NAME_NOISE = re.compile(
    r"\b(my name is|my name's|i am|i'm|im|this is|name|email|e-mail|address|is|and|my|it's|here|me)\b|[:,;!?()]",
    re.I,
)
_NAME = re.compile(r"^[^\W\d_][^\W\d_ .'-]*(?:[ .'-]+[^\W\d_][^\W\d_.'-]*)*$")


def parse_dates(text: str, today: date) -> tuple[date, date] | None:
    """A whole stay's check-in and check-out read from `text` (see `gateway.language.dates`), or None."""
    reading = read_stay(text, today)
    return (reading.check_in, reading.check_out) if isinstance(reading, StayDates) else None


def parse_name(text: str, email: str) -> str:
    """The person's name from a message like "John Doe, john@example.com" (empty when there is none)."""
    rest = _NAME_NOISE.sub(" ", text.replace(email, " "))
    rest = " ".join(rest.split()).strip(" .-'")
    return rest if rest and len(rest) <= 100 and _NAME.match(rest) else ""


def _nice(day: date) -> str:
    return f"{calendar.month_name[day.month]} {day.day}, {day.year}"


def _stay(check_in: str, check_out: str) -> str:
    return f"{_nice(date.fromisoformat(check_in))} to {_nice(date.fromisoformat(check_out))}"


@dataclass
class _Reply:
    """What one round says and which tools it asks for."""

    text: str = ""
    calls: list[tuple[str, JsonObject]] = field(default_factory=list)


class _Notes:
    """Typed access to the agent's memory (a JSON object kept with the chat session)."""

    def __init__(self, memory: JsonObject) -> None:
        self.memory = memory

    @property
    def properties(self) -> dict[str, str]:
        value = self.memory.get("properties")
        return dict(value) if isinstance(value, dict) else {}

    @property
    def capacities(self) -> dict[str, int]:
        value = self.memory.get("capacities")
        return {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def learn_properties(self, found: Sequence[JsonObject]) -> None:
        known = self.properties
        capacities = self.capacities
        for prop in found:
            known[str(prop["property_id"])] = str(prop["name"])
            if "capacity" in prop:
                capacities[str(prop["property_id"])] = int(prop["capacity"])
        self.memory["properties"] = known
        self.memory["capacities"] = capacities

    def get(self, key: str) -> Any:
        return self.memory.get(key)

    def set(self, key: str, value: Any) -> None:
        if value is None:
            self.memory.pop(key, None)
        else:
            self.memory[key] = value

    def next_call_id(self) -> str:
        number = int(self.memory.get("calls", 0)) + 1
        self.memory["calls"] = number
        return f"call-{number}"


def _remember_dates(reading: StayReading | None, notes: _Notes) -> bool:
    """Keep what the message says of the stay; True when the stay it talks about is now whole."""
    if isinstance(reading, StayDates):
        notes.set("check_in", reading.check_in.isoformat())
        notes.set("check_out", reading.check_out.isoformat())
        return True
    if isinstance(reading, StartDate):
        notes.set("check_in", reading.check_in.isoformat())
        notes.set("check_out", None)
        return True
    if isinstance(reading, NightsOnly) and notes.get("check_in"):
        check_in = date.fromisoformat(str(notes.get("check_in")))
        notes.set("check_out", (check_in + timedelta(days=reading.nights)).isoformat())
        return True
    return False


def _until_when(notes: _Notes) -> str:
    check_in = date.fromisoformat(str(notes.get("check_in")))
    until = _nice(check_in + timedelta(days=3))
    return f'Until when, from {nice_date(check_in)}? Say for example "for 2 nights" or "until {until}".'


def _find_property(text: str, properties: dict[str, str]) -> str | None:
    lowered = text.lower()
    for property_id, name in properties.items():
        if name.lower() in lowered or property_id in lowered:
            return property_id
    # A distinctive word of one property's name ("the loft").
    words = re.findall(r"[a-z]+", lowered)
    matches = {
        property_id
        for property_id, name in properties.items()
        for part in name.lower().split()
        if len(part) >= 4 and part in words
    }
    return matches.pop() if len(matches) == 1 else None


class ScriptedAgent:
    """Implements the `AgentModel` port without any model service."""

    def __init__(self, *, delta_delay_seconds: float = 0.0) -> None:
        self._delay = delta_delay_seconds

    async def run_round(
        self,
        conversation: Sequence[ConversationEntry],
        tools: Sequence[ToolSpec],
        facts: TurnFacts,
        memory: JsonObject,
    ) -> AsyncGenerator[ModelOutput, None]:
        """Decide this round from the person's last message and this turn's tool results; stream it."""
        notes = _Notes(memory)
        available = {tool.name for tool in tools}
        message, results = _current(conversation)
        if results:
            reply = self._react(results[-1], message, facts, notes)
        elif _withdrawn_before(conversation) and _YES.search(message):
            # A typed "yes" is a message: it withdrew the approval the gateway asked for, and approves nothing.
            reply = _Reply(
                'A typed "yes" cannot approve a booking or a cancellation: please answer the approval question '
                "itself (Approve or Decline). Nothing has been done."
            )
        else:
            reply = self._plan(message, facts, notes)
        calls = [ToolCall(notes.next_call_id(), name, args) for name, args in reply.calls if name in available]
        chunks = re.findall(r"\S+\s*", reply.text)
        for index, chunk in enumerate(chunks):
            if self._delay and index:
                await asyncio.sleep(self._delay)
            yield TextChunk(chunk)
        for call in calls:
            yield call
        yield RoundEnd(wants_tools=bool(calls), usage=Usage(_words(conversation), len(chunks) + len(calls)))

    # --- the first round of a turn: what did the person ask? ----------------------------------------------------

    def _plan(self, message: str, facts: TurnFacts, notes: _Notes) -> _Reply:
        if facts.authenticated and notes.get("awaiting"):
            notes.set("awaiting", None)
        email = _EMAIL.search(message)
        # An email address is never a date, a count or a code (jane.19851231@example.com): read the rest.
        words = _EMAIL.sub(" ", message) if email else message
        reading = read_stay(words, facts.today)
        dates = _remember_dates(reading, notes)
        guests = parse_guests(words)
        if not guests and notes.get("pending_booking") and notes.get("check_out") and not notes.get("guests"):
            guests = bare_count(words)  # the answer to "For how many guests?"
        if guests:
            notes.set("guests", guests)
        if wants_cheapest(words):
            notes.set("cheapest", True)
        code = _CODE.search(words)

        if code and not email and (notes.get("awaiting") in ("code", "new_code") or "code" in message.lower()):
            if facts.authenticated:
                return _Reply(f"You're already signed in as guest {facts.guest_id}.")
            return _Reply("Checking your code.", [("verify_code", {"code": code.group(1)})])
        if email:
            if facts.authenticated:
                return _Reply(f"You're already signed in as guest {facts.guest_id}.")
            name = parse_name(message, email.group(0)) or str(notes.get("name") or "")
            notes.set("name", name or None)
            args: JsonObject = {"email": email.group(0)}
            if name:
                args["name"] = name
            return _Reply("Thanks! I'm sending you a one-time sign-in code.", [("start_login", args)])
        if _CANCEL.search(message):
            reservation = _RESERVATION.search(message)
            if reservation:
                reservation_id = reservation.group(0).upper()
                return _Reply(
                    f"I'd like to cancel {reservation_id} for you: please approve or decline.",
                    [("cancel_reservation", {"reservation_id": reservation_id})],
                )
            return _Reply('Which reservation should I cancel? Say "cancel RES-…" with its id.')
        if _MY_RESERVATIONS.search(message):
            return _Reply("", [("list_my_reservations", {})])
        if isinstance(reading, AmbiguousDate):
            return _Reply(reading.question)
        if isinstance(reading, DateProblem):
            return _Reply(reading.sentence)
        booking = bool(_BOOK.search(message) or (_YES.search(message) and notes.get("pending_booking")))
        # An answer to the agent's question ("3 nights", "for 2 adults") goes on with what was being done.
        answer = bool(dates or guests) and bool(notes.get("pending_booking")) and not _AVAILABILITY.search(message)
        asking = booking or answer or dates or guests or _AVAILABILITY.search(message) or wants_cheapest(message)
        if asking and (refusal := self._refusal(message, notes)) is not None:
            return refusal
        if booking or answer:
            if notes.get("check_in") and not notes.get("check_out"):
                return _Reply(_until_when(notes))
            return self._book(message, facts, notes)
        if dates or guests or _AVAILABILITY.search(message) or wants_cheapest(message):
            return self._availability(message, facts, notes)
        if _GREETING.search(message) or _HELP.search(message):
            return _Reply(f"Hello! I'm the booking assistant. {help_text(facts.today)}")
        if _THANKS.search(message):
            return _Reply("You're welcome! Anything else?")
        return _Reply(f"Sorry, I didn't catch that. {help_text(facts.today)}")

    def _refusal(self, message: str, notes: _Notes) -> _Reply | None:
        """What cannot be asked of any property: an unknown place, more guests than any sleeps."""
        properties = notes.properties
        named = named_but_unknown(message, properties) if properties else None
        if named is not None:
            notes.set("property_id", None)
            return _Reply(unknown_property(named, properties))
        guests = notes.get("guests")
        if guests and not notes.properties and not notes.get("listed"):
            # Learn what each property sleeps before looking for a place for this many.
            notes.set("listed", True)
            return _Reply("", [("list_properties", {})])
        if guests and (refusal := capacity_refusal(int(guests), notes.capacities, properties)) is not None:
            notes.set("guests", None)
            return _Reply(refusal)
        return None

    def _availability(self, message: str, facts: TurnFacts, notes: _Notes) -> _Reply:
        check_in, check_out = notes.get("check_in"), notes.get("check_out")
        if check_in and not check_out:
            return _Reply(_until_when(notes))
        if not check_in or not check_out:
            written, iso = date_examples(facts.today)
            return _Reply(f'For which dates? For example "{written}", "next friday for 2 nights" or "{iso}".')
        if not notes.properties and (named_but_unknown(message, {}) is not None):
            # A place is named: learn the properties first, to know whether it is one of them.
            return _Reply("", [("list_properties", {})])
        args: JsonObject = {"check_in": check_in, "check_out": check_out}
        property_id = _find_property(message, notes.properties)
        if property_id:
            args["property_id"] = property_id
            notes.set("property_id", property_id)
        if notes.get("guests"):
            args["guests"] = notes.get("guests")
        return _Reply(f"Let me check {_stay(check_in, check_out)}.", [("check_availability", args)])

    def _book(self, message: str, facts: TurnFacts, notes: _Notes) -> _Reply:
        properties = notes.properties
        if not properties:
            return _Reply("", [("list_properties", {})])
        property_id = _find_property(message, properties) or notes.get("property_id")
        notes.set("property_id", property_id)
        notes.set("pending_booking", True)
        if not property_id:
            return _Reply(f"Which property would you like? We have {', '.join(properties.values())}.")
        if not notes.get("check_in"):
            return _Reply(f"For which dates would you like the {properties.get(property_id, property_id)}?")
        if not notes.get("guests"):
            return _Reply("For how many guests?")
        if not facts.authenticated:
            if notes.get("quoted") != _quote_key(notes):
                # Is the stay free, and what does it cost? Said before the person goes through a sign-in.
                args: JsonObject = {
                    "check_in": notes.get("check_in"),
                    "check_out": notes.get("check_out"),
                    "property_id": property_id,
                    "guests": notes.get("guests"),
                }
                name = properties.get(property_id, property_id)
                stay = _stay(str(notes.get("check_in")), str(notes.get("check_out")))
                return _Reply(f"Let me check the {name} from {stay}.", [("check_availability", args)])
            notes.set("awaiting", "email")
            return _Reply(
                "To book, I need to sign you in. What are your name and email address? I'll send you a one-time code."
            )
        return self._create(notes, "")

    def _quote(self, content: JsonObject, notes: _Notes) -> _Reply:
        """The checked stay of a booking waiting for a sign-in: free (say the price, ask for the sign-in) or not."""
        found: JsonObject = content["results"][0]
        stay = _stay(content["check_in"], content["check_out"])
        if not found["available"] or found["too_many_guests"]:
            notes.set("pending_booking", None)
            why = f"sleeps at most {found['capacity']}" if found["too_many_guests"] else "is not free then"
            return _Reply(f"Sorry, the {found['name']} {why} ({stay}). Try other dates?")
        notes.set("quoted", _quote_key(notes))
        notes.set("awaiting", "email")
        return _Reply(
            f"The {found['name']} is free from {stay} for {content['guests']} guests: {found['total']} in total. "
            "To book, I need to sign you in. What are your name and email address? I'll send you a one-time code."
        )

    def _create(self, notes: _Notes, prefix: str) -> _Reply:
        args: JsonObject = {
            "property_id": notes.get("property_id"),
            "check_in": notes.get("check_in"),
            "check_out": notes.get("check_out"),
            "guests": notes.get("guests"),
        }
        name = notes.properties.get(str(args["property_id"]), str(args["property_id"]))
        text = (
            f"{prefix}I'd like to book the {name} from {_stay(str(args['check_in']), str(args['check_out']))} "
            "for you: please approve or decline."
        )
        return _Reply(text.strip(), [("create_reservation", args)])

    # --- later rounds: what did the tools answer? ---------------------------------------------------------------

    def _react(self, result: ToolResult, message: str, facts: TurnFacts, notes: _Notes) -> _Reply:
        content = result.content
        if not result.ok:
            return self._failure(result.name, content, notes)
        if result.name == "list_properties":
            notes.learn_properties(content["properties"])
            if not notes.properties:
                return _Reply("There are no properties to book right now.")
            return self._plan(message, facts, notes)
        if result.name == "check_availability":
            single = content["results"][0] if len(content["results"]) == 1 else None
            if (
                notes.get("pending_booking")
                and not facts.authenticated
                and single is not None
                and single["property_id"] == notes.get("property_id")
            ):
                notes.learn_properties(content["results"])
                return self._quote(content, notes)
            return self._availability_answer(content, notes)
        if result.name == "start_login":
            notes.set("awaiting", "code")
            return _Reply(f"I've sent a one-time code to {content['destination']}. Please type it here.")
        if result.name == "verify_code":
            notes.set("awaiting", None)
            guest = content.get("guest_id", "")
            prefix = f"You're signed in as guest {guest}. " if guest else "You're signed in. "
            if notes.get("pending_booking") and notes.get("property_id") and notes.get("check_in"):
                if notes.get("guests"):
                    return self._create(notes, prefix)
                return _Reply(prefix + "For how many guests should I book?")
            return _Reply(prefix + "What would you like to do next?")
        if result.name == "create_reservation":
            notes.set("pending_booking", None)
            r = content["reservation"]
            return _Reply(
                f"Booked! Your reservation {r['reservation_id']}: {r['property_name']}, "
                f"{_stay(r['check_in'], r['check_out'])}, {r['guests']} guests, total {r['total']}."
            )
        if result.name == "list_my_reservations":
            found = content["reservations"]
            if not found:
                return _Reply("You have no reservations yet.")
            lines = [
                f"{r['reservation_id']}: {r['property_name']}, {_stay(r['check_in'], r['check_out'])}, "
                f"{r['guests']} guests, {r['status'].lower()}, {r['total']}"
                for r in found
            ]
            return _Reply("Your reservations: " + "; ".join(lines) + ".")
        if result.name == "cancel_reservation":
            return _Reply(f"Cancelled {content['reservation']['reservation_id']}; its nights are free again.")
        return _Reply("Done.")

    def _declined(self, tool: str, notes: _Notes) -> _Reply:
        if tool == "create_reservation":
            notes.set("pending_booking", None)
            return _Reply("OK, I haven't booked anything. Would you like other dates or another property?")
        return _Reply("OK, I haven't cancelled anything; your reservation stays as it is.")

    def _availability_answer(self, content: JsonObject, notes: _Notes) -> _Reply:
        results: list[JsonObject] = content["results"]
        notes.learn_properties(results)
        stay = _stay(content["check_in"], content["check_out"])
        free = [r for r in results if r["available"]]
        guests = int(content.get("guests") or 1)
        if results and all(r.get("too_many_guests") for r in results):
            names = {str(r["property_id"]): str(r["name"]) for r in results}
            capacities = {str(r["property_id"]): int(r["capacity"]) for r in results}
            refusal = capacity_refusal(guests, capacities, names)
            if refusal is not None:
                return _Reply(refusal)
        if not free:
            return _Reply(f"Sorry, nothing is free from {stay}. Try other dates?")
        cheapest = bool(notes.get("cheapest"))
        if cheapest:
            notes.set("cheapest", None)
            free = cheapest_first(free)
        parts = [f"{r['name']} (sleeps {r['capacity']}, {r['total']} total)" for r in free]
        if len(free) == 1:
            notes.set("property_id", free[0]["property_id"])
        example = free[0]["name"]
        asked = int(notes.get("guests") or 2)
        people = f"{asked} guest{'s' if asked != 1 else ''}"
        nights = int(content["nights"])
        lead = f"For {nights} night{'s' if nights != 1 else ''} from {stay}"
        if cheapest:
            lead = f"The cheapest is the {example}. {lead}"
        return _Reply(
            f'{lead}, these are free: {"; ".join(parts)}. To book, say for example "book the {example} for {people}".'
        )

    def _failure(self, tool: str, content: JsonObject, notes: _Notes) -> _Reply:
        reason = str(content.get("error", ""))
        message = str(content.get("message", ""))
        if reason == "APPROVAL_DECLINED":
            return self._declined(tool, notes)
        if reason == "INVALID_ARGUMENT" and message.startswith(("check_in", "check_out")):
            return _Reply(f"Sorry, I couldn't use those dates ({message}). Which dates do you mean?")
        if reason == "SIGN_IN_REQUIRED":
            notes.set("awaiting", "email")
            if tool == "create_reservation":
                notes.set("pending_booking", True)
            return _Reply("You need to sign in first. What are your name and email address?")
        if reason == "OTP_INVALID":
            left = content.get("attempts_left")
            if str(left) == "0":
                # Not asked for again: a code typed anyway is checked and refused with what to do instead.
                notes.set("awaiting", "new_code")
                return _Reply(
                    "That code isn't right, and it was the last try for this code. Send me your email address "
                    "again and I'll send you a new code."
                )
            plural = "" if str(left) == "1" else "s"
            tail = f" You have {left} attempt{plural} left: type the code again." if left is not None else ""
            return _Reply("That code isn't right." + tail)
        if reason in ("OTP_ATTEMPTS_EXHAUSTED", "OTP_EXPIRED", "LOGIN_NOT_FOUND"):
            notes.set("awaiting", "email")
            why = "Too many wrong codes." if reason == "OTP_ATTEMPTS_EXHAUSTED" else "That code has expired."
            return _Reply(f"{why} Send me your email address again and I'll send a new code.")
        if reason == "RATE_LIMITED":
            wait = content.get("retry_after_seconds")
            return _Reply(f"Too many attempts; please try again in {wait} seconds." if wait else f"{message}.")
        if reason == "NIGHTS_TAKEN":
            notes.set("pending_booking", None)
            taken = str(content.get("taken_nights", "")).replace(",", ", ")
            return _Reply(
                f"Sorry, some of those nights are already booked ({taken}), so nothing was booked. Try other dates?"
            )
        return _Reply(f"Sorry, that didn't work: {message}.")


def _quote_key(notes: _Notes) -> str:
    """The stay a signed-out booking was checked for (property, dates, guests)."""
    return "|".join(str(notes.get(k)) for k in ("property_id", "check_in", "check_out", "guests"))


def _withdrawn_before(conversation: Sequence[ConversationEntry]) -> bool:
    """True when the person's last message withdrew an approval (the gateway answered the held call so)."""
    for index in range(len(conversation) - 1, 0, -1):
        if isinstance(conversation[index], UserText):
            before = conversation[index - 1]
            return isinstance(before, ToolResult) and before.content.get("error") in (
                "APPROVAL_WITHDRAWN",
                "APPROVAL_EXPIRED",
            )
    return False


def _current(conversation: Sequence[ConversationEntry]) -> tuple[str, list[ToolResult]]:
    """The person's last message and the tool results that came after it."""
    results: list[ToolResult] = []
    for entry in reversed(conversation):
        if isinstance(entry, UserText):
            results.reverse()
            return entry.text, results
        if isinstance(entry, ToolResult):
            results.append(entry)
    results.reverse()
    return "", results


def _words(conversation: Sequence[ConversationEntry]) -> int:
    count = 0
    for entry in conversation:
        if isinstance(entry, UserText | AssistantText):
            count += len(entry.text.split())
        elif isinstance(entry, ToolResult):
            count += len(json.dumps(entry.content).split())
        else:
            count += len(json.dumps(entry.arguments).split()) + 1
    return count
