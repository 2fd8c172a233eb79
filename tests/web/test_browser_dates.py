"""Booking with natural dates in a real browser: "next friday for 2 nights" is read, booked and read back
(`clients/web/tests/browser-dates.mjs`, Debian's Chromium through playwright-core)."""

from __future__ import annotations

import calendar
import datetime
import uuid
from pathlib import Path

from gateway.adapters.aws import AwsClients
from tests.support.gateway import RunningGateway
from tests.support.mailbox_http import mailbox_server
from tests.support.node import CHROMIUM, run_node
from tests.support.reservations import create_property


def _written(day: datetime.date) -> str:
    return f"{calendar.month_name[day.month]} {day.day}, {day.year}"


async def test_next_friday_for_2_nights_is_booked_and_read_back_in_chromium(
    gateway: RunningGateway, aws: AwsClients, table: str, tmp_path: Path
) -> None:
    assert CHROMIUM.exists(), "Chromium is missing: `make test` installs it (apt-get install -y chromium)"
    # The gateway reads dates in UTC by default; "next friday" is the coming one (a week on, said on a Friday).
    today = datetime.datetime.now(datetime.UTC).date()
    check_in = today + datetime.timedelta(days=(4 - today.weekday()) % 7 or 7)
    check_out = check_in + datetime.timedelta(days=2)
    letters = "".join(chr(ord("a") + int(digit, 16)) for digit in uuid.uuid4().hex[:8])  # no code-like digits
    prop = await create_property(aws.dynamodb, table, capacity=2, name=f"Attic {letters}")
    config = {
        "chromium": str(CHROMIUM),
        "webUrl": gateway.web_url,
        "propertyName": prop.name,
        "stayText": f"{_written(check_in)} to {_written(check_out)}",
        "name": "Robin Dates",
        "email": f"robin-dates-{uuid.uuid4().hex[:10]}@example.com",
    }
    async with mailbox_server(gateway.devstack.mailbox) as mailbox_url:
        output = await run_node("tests/browser-dates.mjs", {**config, "mailboxUrl": mailbox_url}, tmp_path)
    assert "browser dates passed" in output
