"""The scripted agent's reading of guests and places, and its sentences about them.

Guests: "for 2 guests", "two people", "2 adults and a child" (3), "a couple" (2), "just me" (1). Places: a
property named in full, by its id or by a distinctive word ("the loft"); a name that matches none is said to be
unknown, with a close match for a typo (difflib) and the list of properties. "cheapest" asks for the lowest
total first.
"""

from __future__ import annotations

import calendar
import datetime
import difflib
import re
from collections.abc import Mapping

from gateway.language.dates import NUMBER_WORDS

__all__ = [
    "bare_count",
    "capacity_refusal",
    "cheapest_first",
    "help_text",
    "named_but_unknown",
    "parse_guests",
    "unknown_property",
    "wants_cheapest",
]

_COUNT = r"(\d{1,2}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_PEOPLE = re.compile(
    rf"\b{_COUNT}\s+(?:more\s+)?(guests?|people|persons?|adults?|grown-?ups?|children|kids?|child|babies|baby"
    r"|infants?|teens?|teenagers?)\b",
    re.I,
)
_COUPLE = re.compile(r"\b(a couple|the two of us|two of us|me and my (?:wife|husband|partner|friend))\b", re.I)
_ALONE = re.compile(r"\b(just me|only me|myself|by myself|alone|solo)\b", re.I)
_CHEAPEST = re.compile(r"\b(cheapest|least expensive|lowest price|cheaper|budget)\b", re.I)
# What follows "book"/"reserve" (or "is the … free") when it names a place.
_BOOK_NAME = re.compile(
    r"\b(?:book|reserve)\s+(?:the\s+)?(.+?)"
    r"(?=\s+(?:for|from|on|at|in|next|this|tomorrow|today|until|to|and|please)\b|[,.!?\d]|$)",
    re.I,
)
_ASK_NAME = re.compile(r"\bis\s+the\s+(.+?)\s+(?:free|available|open|vacant)\b", re.I)
_NOT_NAMES = {
    "it",
    "a",
    "one",
    "a stay",
    "stay",
    "a room",
    "room",
    "a place",
    "place",
    "something",
    "anything",
    "that",
    "this",
    "that one",
    "this one",
    "same",
    "now",
    "cheapest",
    "the cheapest",
    "cheapest one",
    "cheapest place",
    "a night",
    "nights",
    "me",
    "us",
    "dates",
    "property",
    "a property",
}


def parse_guests(text: str) -> int | None:
    """The number of guests in "for 2 guests", "two people", "2 adults and a child", "a couple", "just me"."""
    found = _PEOPLE.findall(text)
    if found:
        return sum(NUMBER_WORDS.get(word.lower()) or int(word) for word, _kind in found)
    if _COUPLE.search(text):
        return 2
    if _ALONE.search(text):
        return 1
    return None


def bare_count(text: str) -> int | None:
    """A message that is only a number of guests ("2", "two", "for 3"), the answer to "For how many guests?"."""
    match = re.fullmatch(rf"\s*(?:for\s+)?{_COUNT}\s*[.!]?\s*", text, re.I)
    if match is None or match.group(1).lower() in ("a", "an"):
        return None
    word = match.group(1).lower()
    return NUMBER_WORDS.get(word) or int(word)


def wants_cheapest(text: str) -> bool:
    """True when the person asks for the cheapest place."""
    return bool(_CHEAPEST.search(text))


def _amount(total: str) -> float:
    """The number in a formatted total ("450.00 USD"), for ordering only."""
    match = re.search(r"\d[\d,]*(?:\.\d+)?", total)
    return float(match.group(0).replace(",", "")) if match else float("inf")


def cheapest_first(results: list[dict[str, object]]) -> list[dict[str, object]]:
    """Availability results ordered by their total, lowest first."""
    return sorted(results, key=lambda r: _amount(str(r.get("total", ""))))


def capacity_refusal(guests: int, capacities: Mapping[str, int], names: Mapping[str, str]) -> str | None:
    """The sentence for more guests than any property sleeps (None when one does, or none is known)."""
    if not capacities:
        return None
    largest_id = max(capacities, key=lambda pid: capacities[pid])
    largest = capacities[largest_id]
    if guests <= largest:
        return None
    return (
        f"Sorry, none of our properties sleeps {guests}: the largest is the {names.get(largest_id, largest_id)}, "
        f"which sleeps {largest}. You could book more than one property, or come with fewer guests."
    )


def named_but_unknown(text: str, properties: Mapping[str, str]) -> str | None:
    """A place the message names that is none of `properties` ("book the Seaview Villa"), or None."""
    match = _BOOK_NAME.search(text) or _ASK_NAME.search(text)
    if match is None:
        return None
    name = " ".join(match.group(1).split()).strip(" '\"")
    lowered = name.lower()
    if not name or lowered in _NOT_NAMES or lowered.removeprefix("the ") in _NOT_NAMES or len(name) > 60:
        return None
    known = {n.lower() for n in properties.values()} | set(properties)
    words = set(re.findall(r"[a-z]+", lowered))
    if lowered in known or any(lowered in n or n in lowered for n in known):
        return None
    if any(len(part) >= 4 and part in words for n in known for part in n.split()):
        return None
    return name


def unknown_property(name: str, properties: Mapping[str, str]) -> str:
    """ "I don't know a property called …", a close match for a typo, and the list."""
    names = list(properties.values())
    close = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
    suggestion = ""
    if close:
        match = next(n for n in names if n.lower() == close[0])
        suggestion = f" Did you mean the {match}?"
    listed = ", ".join(names[:-1]) + (f" and {names[-1]}" if len(names) > 1 else names[0] if names else "")
    return f'I don\'t know a property called "{name}".{suggestion} We have {listed}.'


def _span(start: datetime.date, nights: int) -> str:
    end = start + datetime.timedelta(days=nights)
    if end.month == start.month:
        return f"{calendar.month_name[start.month]} {start.day}-{end.day}"
    return f"{calendar.month_name[start.month]} {start.day} to {calendar.month_name[end.month]} {end.day}"


def date_examples(today: datetime.date) -> tuple[str, str]:
    """Two example stays from today: a written one ("April 1-4") and its ISO form."""
    start = today + datetime.timedelta(days=21)
    end = start + datetime.timedelta(days=3)
    return _span(start, 3), f"{start.isoformat()} to {end.isoformat()}"


def help_text(today: datetime.date) -> str:
    """What the agent can do, with example dates computed from today."""
    written, _iso = date_examples(today)
    return (
        f'I can check availability (try "what\'s free next friday for 2 nights?" or "{written} for 2 adults and '
        f'a child"), book a stay ("book the Harbor Loft for 2 guests"), and show or cancel your reservations '
        '("what are my reservations?", "cancel RES-…"). To book, I\'ll ask for your name and email and send you '
        "a one-time code."
    )
