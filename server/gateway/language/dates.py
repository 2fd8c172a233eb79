"""What a person means by the dates in a chat message, and whether a tool's ISO dates make a stay.

Built on dateparser's `search_dates` ("tomorrow", "next friday", "15/03", "March 15", "the 15th", "March 30 to
April 2"), with the glue it lacks: day ranges ("15-18 March", "March 15-20"), dotted day-months ("15.3."),
weekends ("this weekend"), lengths ("for 3 nights", "a week"), a second date that rolls past the first
("tuesday to thursday"), and numeric forms both readings of which are dates ("03/04": asked, never guessed).
Everything is resolved against today in the gateway's time zone (`gateway.domain.Calendar`, with an injectable
clock), the same today the reservation rules judge stays by.

`read_stay` answers with one of: `StayDates` (check-in and check-out), `StartDate` (a check-in without an end),
`NightsOnly` (a length without a start), `AmbiguousDate` (ask which reading), `DateProblem` (a sentence for the
person: a past date, a check-out not after the check-in, a stay too long or too far ahead), or None (no date).
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dateparser.search import search_dates

from gateway.domain import MAX_NIGHTS, MAX_YEARS_AHEAD

__all__ = [
    "AmbiguousDate",
    "DateProblem",
    "NightsOnly",
    "StartDate",
    "StayDates",
    "StayReading",
    "nice_date",
    "read_stay",
    "stay_argument_problem",
]

_MONTH_NAMES = [name for name in calendar.month_name if name]
_MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?"
    r"|nov(?:ember)?|dec(?:ember)?)\.?"
)
_ANY_MONTH = _MONTH.replace("(", "(?:", 1)
_ORD = r"(?:st|nd|rd|th)?"
_DASH = r"\s*(?:-|\u2013|\u2014|to|until|till|through|thru)\s*"
# "15-18 March", "15th to 18th of March"
_YEAR = r"(?:,?\s+(\d{4}))?"
_DAYS_MONTH = re.compile(rf"\b(\d{{1,2}}){_ORD}{_DASH}(\d{{1,2}}){_ORD}\s+(?:of\s+)?{_MONTH}{_YEAR}", re.I)
# "March 15-20", "Mar 15th - 20th" (not "March 15 - April 2", which dateparser reads)
_MONTH_DAYS = re.compile(
    rf"\b{_MONTH}\s+(\d{{1,2}}){_ORD}{_DASH}(\d{{1,2}}){_ORD}\b(?!\s*(?:/|\.|{_ANY_MONTH})){_YEAR}", re.I
)
_DOTTED = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(\d{2,4})?(?![\d.])")
_SLASHED = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?(?![\d/])")
_ISO_DASH = re.compile(r"(\d{4}-\d{2}-\d{2})\s*(?:-|\u2013|\u2014)\s*(\d{4}-\d{2}-\d{2})")
# Counts written as words, for nights here and for guests in the scripted agent (`adapters/scripted_words`).
NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fourteen": 14,
}
_COUNT = r"(\d{1,3}|a|an|one|two|three|four|five|six|seven|eight|nine|ten|fourteen)"
_NIGHTS = re.compile(rf"\b(?<!in )(?:for\s+)?{_COUNT}\s+(nights?|weeks?)\b", re.I)
_WEEKEND = re.compile(r"\b(?:(this|next|the|coming)\s+)?weekend\b", re.I)
# What is not a date, taken out before dateparser reads the rest: emails, reservation ids, codes, guest counts.
_NOISE = re.compile(
    r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+|\bRES-[A-Z0-9]+\b|(?<![\w-])\d{5,}(?![\w-])"
    r"|\b\d{1,3}\s+(?:guests?|people|persons|adults?|children|kids?|child|rooms?)\b",
    re.I,
)
# Words mixing letters and digits ("02d36317", a name or an id) other than ordinals ("15th") are no dates either.
_MIXED = re.compile(r"\b(?=[a-z]*\d)(?=\d*[a-z])(?!\d{1,2}(?:st|nd|rd|th)\b)\w+\b", re.I)
# A fragment dateparser found counts only with a digit or one of these words ("may", "sat", "march" alone do not).
_DATE_WORDS = re.compile(
    r"\b(today|tomorrow|tonight|monday|tuesday|wednesday|thursday|friday|saturday|sunday|week|fortnight)\b", re.I
)
_WEEKDAYS = [name.lower() for name in calendar.day_name]
_SANE_YEARS = 10


@dataclass(frozen=True)
class StayDates:
    """A whole stay: check-in (inclusive) and check-out (exclusive)."""

    check_in: datetime.date
    check_out: datetime.date

    @property
    def nights(self) -> int:
        return (self.check_out - self.check_in).days


@dataclass(frozen=True)
class StartDate:
    """A check-in date without a check-out or a length."""

    check_in: datetime.date


@dataclass(frozen=True)
class NightsOnly:
    """A length of stay without a start ("3 nights")."""

    nights: int


@dataclass(frozen=True)
class AmbiguousDate:
    """A numeric date both readings of which are dates ("03/04"): the person is asked which one."""

    written: str
    readings: tuple[datetime.date, datetime.date]

    @property
    def question(self) -> str:
        first, second = self.readings
        return (
            f'By "{self.written}" do you mean {nice_date(first)} or {nice_date(second)}? '
            f'Please write the month as a word, like "{calendar.month_name[first.month]} {first.day}".'
        )


@dataclass(frozen=True)
class DateProblem:
    """Dates that make no stay, said in one sentence for the person."""

    sentence: str


StayReading = StayDates | StartDate | NightsOnly | AmbiguousDate | DateProblem


def nice_date(day: datetime.date) -> str:
    """ "Friday, March 12, 2027"."""
    return f"{calendar.day_name[day.weekday()]}, {calendar.month_name[day.month]} {day.day}, {day.year}"


def _short(day: datetime.date) -> str:
    return f"{calendar.month_name[day.month]} {day.day}, {day.year}"


def _month_number(text: str) -> int:
    key = text.lower().rstrip(".")[:3]
    return next(i for i, name in enumerate(_MONTH_NAMES, 1) if name.lower().startswith(key))


def _days_month(match: re.Match[str]) -> str:
    first, second, month, year = match.groups()
    year = f" {year}" if year else ""
    return f"{first} {month}{year} to {second} {month}{year}"


def _month_days(match: re.Match[str]) -> str:
    month, first, second, year = match.groups()
    number = _month_number(month)
    if int(second) <= int(first):
        # "March 30-2": the stay runs into the next month.
        end_year = f" {int(year) + (number == 12)}" if year else ""
        return f"{month} {first}{f' {year}' if year else ''} to {_MONTH_NAMES[number % 12]} {second}{end_year}"
    year = f" {year}" if year else ""
    return f"{month} {first}{year} to {month} {second}{year}"


def _dotted(match: re.Match[str]) -> str:
    # "15.3." is day.month wherever it is written so: say it with the month's name.
    day, month, year = match.groups()
    if not 1 <= int(month) <= 12:
        return match.group(0)
    return f"{day} {_MONTH_NAMES[int(month) - 1]}" + (f" {year}" if year else "")


def _nights(match: re.Match[str]) -> int:
    word, unit = match.group(1).lower(), match.group(2).lower()
    count = NUMBER_WORDS.get(word) or int(word)
    return count * 7 if unit.startswith("week") else count


def _weekend(which: str | None, today: datetime.date) -> datetime.date:
    """The Friday a weekend stay starts (Saturday when today is Saturday)."""
    weekday = today.weekday()
    start = today if weekday == 5 else today + datetime.timedelta(days=(4 - weekday) % 7)
    if (which or "").lower() == "next":
        start += datetime.timedelta(days=7 if weekday != 5 else 6)
    return start


def _valid(year: int, month: int, day: int) -> bool:
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def _date_order(text: str, today: datetime.date) -> str | AmbiguousDate:
    """DMY or MDY for the numeric dates in `text`, or the first one both readings of which are dates."""
    for match in _SLASHED.finditer(text):
        first, second = int(match.group(1)), int(match.group(2))
        if first > 12:
            return "DMY"
        if second > 12:
            return "MDY"
        if first != second:
            written_year = match.group(3)
            year = today.year if not written_year else int(written_year) + (2000 if len(written_year) == 2 else 0)
            readings = [datetime.date(year, m, d) for d, m in ((first, second), (second, first)) if _valid(year, m, d)]
            rolled = tuple(r if r >= today or written_year else r.replace(year=year + 1) for r in readings)
            if len(rolled) == 2:
                return AmbiguousDate(match.group(0), (rolled[0], rolled[1]))
    return "DMY"


def _roll_past(check_in: datetime.date, check_out: datetime.date, written: str) -> datetime.date:
    """A second date read as not after the first one, moved to where the person meant it ("tuesday to thursday")."""
    lowered = written.lower()
    if re.search(r"\d{4}", lowered):
        return check_out
    if any(day in lowered for day in _WEEKDAYS):
        while check_out <= check_in:
            check_out += datetime.timedelta(days=7)
        return check_out
    if re.search(_ANY_MONTH, lowered, re.I):
        year = check_out.year + 1
        return check_out.replace(year=year) if _valid(year, check_out.month, check_out.day) else check_out
    # "the 20th until the 3rd": the next month's day.
    month, year = check_in.month % 12 + 1, check_in.year + (check_in.month == 12)
    return datetime.date(year, month, check_out.day) if _valid(year, month, check_out.day) else check_out


def _next_month_day(today: datetime.date, day: int) -> datetime.date | None:
    month, year = today.month % 12 + 1, today.year + (today.month == 12)
    return datetime.date(year, month, day) if _valid(year, month, day) else None


def _found_dates(text: str, today: datetime.date, order: str) -> list[tuple[str, datetime.date]]:
    base = datetime.datetime(today.year, today.month, today.day)
    settings: Mapping[str, object] = {
        "RELATIVE_BASE": base,
        "PREFER_DATES_FROM": "future",
        "DATE_ORDER": order,
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    found = search_dates(text, languages=["en"], settings=dict(settings)) or []
    dates: list[tuple[str, datetime.date]] = []
    for written, when in found:
        if not (re.search(r"\d", written) or _DATE_WORDS.search(written)):
            continue
        if abs(when.year - today.year) > _SANE_YEARS:
            continue
        day = when.date()
        same_day = (day.month, day.day) == (today.month, today.day)
        if day.year == today.year + 1 and same_day and not re.search(r"\d{4}", written):
            # dateparser's "future" skips today itself ("November 25" on November 25).
            day = today
        elif day < today and not re.search(rf"\d{{4}}|[/.]|{_ANY_MONTH}", written, re.I):
            # "the 2nd" on the 10th is next month's (dateparser keeps this month's).
            day = _next_month_day(today, day.day) or day
        dates.append((written, day))
    return dates


def read_stay(text: str, today: datetime.date, *, max_nights: int = MAX_NIGHTS) -> StayReading | None:
    """The stay a message asks about, read against `today`; None when it names no date or length."""
    text = _MIXED.sub(" ", _NOISE.sub(" ", text))
    text = _ISO_DASH.sub(r"\1 to \2", text)
    text = _DAYS_MONTH.sub(_days_month, text)
    text = _MONTH_DAYS.sub(_month_days, text)
    text = _DOTTED.sub(_dotted, text)
    nights: int | None = None
    if match := _NIGHTS.search(text):
        nights = _nights(match)
        text = text[: match.start()] + " " + text[match.end() :]
    weekend: datetime.date | None = None
    if match := _WEEKEND.search(text):
        weekend = _weekend(match.group(1), today)
        text = text[: match.start()] + " " + text[match.end() :]
    order = _date_order(text, today)
    if isinstance(order, AmbiguousDate):
        return order
    dates = [] if not text.strip() else _found_dates(text, today, order)
    if weekend is not None and not dates:
        end = weekend + datetime.timedelta(days=nights or (7 - weekend.weekday()) - 1 or 1)
        return _judge(weekend, end, today, max_nights)
    if not dates:
        return NightsOnly(nights) if nights else None
    check_in, rest = dates[0][1], dates[1:]
    if check_in < today:
        return DateProblem(f"{_short(check_in)} is in the past: today is {_short(today)}. Which dates do you mean?")
    if nights is not None:
        return _judge(check_in, check_in + datetime.timedelta(days=nights), today, max_nights)
    if not rest:
        return StartDate(check_in)
    second_text, check_out = rest[0]
    if check_out <= check_in:
        check_out = _roll_past(check_in, check_out, second_text)
    return _judge(check_in, check_out, today, max_nights)


def _judge(check_in: datetime.date, check_out: datetime.date, today: datetime.date, max_nights: int) -> StayReading:
    """The stay, or the sentence that says why it is none."""
    if check_in < today:
        return DateProblem(f"{_short(check_in)} is in the past: today is {_short(today)}. Which dates do you mean?")
    if check_out <= check_in:
        return DateProblem(
            f"The check-out date ({_short(check_out)}) must be after the check-in date ({_short(check_in)})."
        )
    nights = (check_out - check_in).days
    if nights > max_nights:
        return DateProblem(f"That is {nights} nights; the longest stay I can book is {max_nights} nights.")
    last = _years_later(today, MAX_YEARS_AHEAD)
    if check_out > last:
        return DateProblem(f"I can only book up to {MAX_YEARS_AHEAD} years ahead (until {_short(last)}).")
    return StayDates(check_in, check_out)


def _years_later(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # February 29
        return day.replace(year=day.year + years, day=28)


def stay_argument_problem(
    arguments: Mapping[str, object], today: datetime.date, zone: str, *, max_nights: int = MAX_NIGHTS
) -> tuple[str, str] | None:
    """What is wrong with a tool's `check_in`/`check_out` arguments, for a model to correct: (field, message).

    Tools take ISO 8601 dates only (YYYY-MM-DD). Anything else is refused with what it would have meant when it
    reads as a date, and with today's date in the chat's time zone.
    """
    when = f"today is {today.isoformat()} ({calendar.day_name[today.weekday()]}) in {zone}"
    values: dict[str, datetime.date] = {}
    for name in ("check_in", "check_out"):
        value = arguments.get(name)
        if not isinstance(value, str):
            continue
        try:
            parsed = datetime.date.fromisoformat(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
        except ValueError:
            return name, f"{name}: {value[:40]!r} is not a calendar date; {when}"
        if parsed is None:
            return name, f"{name}: {value[:40]!r} is not an ISO 8601 date YYYY-MM-DD{_meaning(value, today)}; {when}"
        values[name] = parsed
    check_in, check_out = values.get("check_in"), values.get("check_out")
    if check_in is not None and check_in < today:
        return "check_in", f"check_in: {check_in.isoformat()} is in the past; {when}"
    if check_in is not None and check_out is not None:
        if check_out <= check_in:
            return "check_out", f"check_out: {check_out.isoformat()} must be after check_in {check_in.isoformat()}"
        if (check_out - check_in).days > max_nights:
            return "check_out", f"check_out: the stay is {(check_out - check_in).days} nights; at most {max_nights}"
    return None


def _meaning(value: str, today: datetime.date) -> str:
    """What a date written another way would be, for the model: " (that would be 2027-03-12)" or nothing."""
    reading = read_stay(value, today)
    if isinstance(reading, StartDate | StayDates):
        return f" (that would be {reading.check_in.isoformat()})"
    if isinstance(reading, AmbiguousDate):
        first, second = reading.readings
        return f" (it could be {first.isoformat()} or {second.isoformat()}: ask the person which)"
    return ""
