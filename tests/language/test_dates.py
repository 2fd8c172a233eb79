"""The chat's date reading (gateway/language/dates.py): the glue around dateparser, the calendar's time zone, and
what the tools say about dates that are not ISO or make no stay."""

from __future__ import annotations

import datetime

import pytest

from gateway.domain import Calendar
from gateway.language.dates import (
    AmbiguousDate,
    DateProblem,
    NightsOnly,
    StartDate,
    StayDates,
    StayReading,
    read_stay,
    stay_argument_problem,
)

WEDNESDAY = datetime.date(2027, 3, 10)
D = datetime.date


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("15-18 March", StayDates(D(2027, 3, 15), D(2027, 3, 18))),  # dateparser alone reads 2118
        ("March 15-20, 2028", StayDates(D(2028, 3, 15), D(2028, 3, 20))),
        ("Dec 30 - Jan 2", StayDates(D(2027, 12, 30), D(2028, 1, 2))),
        ("December 30 - 2", StayDates(D(2027, 12, 30), D(2028, 1, 2))),
        ("15.3.", StartDate(D(2027, 3, 15))),
        ("1.3.", StartDate(D(2028, 3, 1))),  # a day gone by this year is next year's
        ("March 10 for 2 nights", StayDates(D(2027, 3, 10), D(2027, 3, 12))),  # today is not next year
        ("3 nights", NightsOnly(3)),
        ("two weeks", NightsOnly(14)),
        ("may I book?", None),  # a month name alone is no date
        ("I want to sit on the sat", None),
        ("my code is 12345678", None),
        ("ann@example.com", None),
        ("cancel RES-20270312", None),
        ("for 4 guests", None),
        ("book the Studio 02d36317", None),
        ("book the Studio 17910d95 on the 2nd", StartDate(D(2027, 4, 2))),
        ("13/13", None),
        ("03/03", StartDate(D(2028, 3, 3))),  # both readings are the same day
        ("30 February", None),
    ],
)
def test_readings(text: str, reading: StayReading | None) -> None:
    assert read_stay(text, WEDNESDAY) == reading


def test_a_weekend_from_saturday_is_saturday_to_sunday_and_next_weekend_is_a_week_later() -> None:
    saturday = D(2027, 3, 13)
    assert read_stay("this weekend", saturday) == StayDates(saturday, D(2027, 3, 14))
    assert read_stay("next weekend", saturday) == StayDates(D(2027, 3, 19), D(2027, 3, 21))
    assert read_stay("this weekend for 3 nights", WEDNESDAY) == StayDates(D(2027, 3, 12), D(2027, 3, 15))


def test_an_ambiguous_date_names_both_readings_and_how_to_write_it() -> None:
    reading = read_stay("from 03/04 for 2 nights", WEDNESDAY)
    assert isinstance(reading, AmbiguousDate)
    assert reading.readings == (D(2027, 4, 3), D(2028, 3, 4))
    assert reading.question == (
        'By "03/04" do you mean Saturday, April 3, 2027 or Saturday, March 4, 2028? '
        'Please write the month as a word, like "April 3".'
    )


def test_problems_are_sentences() -> None:
    assert read_stay("2027-03-09 to 2027-03-11", WEDNESDAY) == DateProblem(
        "March 9, 2027 is in the past: today is March 10, 2027. Which dates do you mean?"
    )
    assert read_stay("tomorrow for 31 nights", WEDNESDAY) == DateProblem(
        "That is 31 nights; the longest stay I can book is 30 nights."
    )


def test_the_calendar_is_today_in_its_time_zone_by_its_clock() -> None:
    late = datetime.datetime(2027, 3, 9, 23, 30, tzinfo=datetime.UTC)
    assert Calendar.named("UTC", lambda: late).today() == D(2027, 3, 9)
    assert Calendar.named("Europe/Berlin", lambda: late).today() == D(2027, 3, 10)
    assert Calendar.named("America/New_York", lambda: late).today() == D(2027, 3, 9)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"check_in": "2027-03-12", "check_out": "2027-03-14"}, None),
        (
            {"check_in": "12/03/2027", "check_out": "2027-03-14"},
            (
                "check_in",
                "check_in: '12/03/2027' is not an ISO 8601 date YYYY-MM-DD (it could be 2027-03-12 or 2027-12-03: ask "
                "the person which); "
                "today is 2027-03-10 (Wednesday) in Europe/Berlin",
            ),
        ),
        (
            {"check_in": "15.3.", "check_out": "2027-03-18"},
            (
                "check_in",
                "check_in: '15.3.' is not an ISO 8601 date YYYY-MM-DD (that would be 2027-03-15); "
                "today is 2027-03-10 (Wednesday) in Europe/Berlin",
            ),
        ),
        (
            {"check_in": "2027-02-30", "check_out": "2027-03-14"},
            (
                "check_in",
                "check_in: '2027-02-30' is not a calendar date; today is 2027-03-10 (Wednesday) in Europe/Berlin",
            ),
        ),
        (
            {"check_in": "2027-03-01", "check_out": "2027-03-04"},
            ("check_in", "check_in: 2027-03-01 is in the past; today is 2027-03-10 (Wednesday) in Europe/Berlin"),
        ),
        (
            {"check_in": "2027-03-14", "check_out": "2027-03-14"},
            ("check_out", "check_out: 2027-03-14 must be after check_in 2027-03-14"),
        ),
        (
            {"check_in": "2027-03-14", "check_out": "2027-05-14"},
            ("check_out", "check_out: the stay is 61 nights; at most 30"),
        ),
    ],
)
def test_tool_dates_are_iso_only_and_the_problem_says_how_to_correct_it(
    arguments: dict[str, object], problem: tuple[str, str] | None
) -> None:
    assert stay_argument_problem(arguments, WEDNESDAY, "Europe/Berlin") == problem
