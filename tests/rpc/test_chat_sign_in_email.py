"""A person whose email address has a run of digits in it signs in through the chat like anybody else.

The digits of jane.19851231@example.com are not a sign-in code (the gateway neither hides them from the model nor
from the stored conversation) and not a date, a count or a code to the scripted agent, which reads the rest of
the message: the booking asked for before the sign-in is still asked for after it.
"""

from __future__ import annotations

import random
import string

import pytest

from gateway.adapters.aws import AwsClients
from tests.support.chat import chat
from tests.support.gateway import RunningGateway
from tests.support.reservations import create_property, days_ahead

SHAPES = ["{w}.19851231@example.com", "{w}-ab123456@example.com", "12345678.{w}@example.com", "{w}+2468101@example.com"]


def letters(count: int) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=count))


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_booking_waits_through_a_sign_in_whose_email_has_digits(
    gateway: RunningGateway, aws: AwsClients, table: str, shape: str
) -> None:
    prop = await create_property(aws.dynamodb, table, name=f"Studio e{letters(8)}")
    email = shape.format(w=letters(10))
    stay = f"{days_ahead(230).isoformat()} to {days_ahead(232).isoformat()}"
    asked = await chat(gateway.channel, f"book the {prop.name} for 2 guests {stay}")
    sent = await chat(gateway.channel, f"Jane Roe, {email}", asked.session_id)
    assert "one-time code" in sent.text, (asked.text, sent.text)
    code = await gateway.devstack.mailbox.wait_for_code(email, wait_seconds=30)
    verified = await chat(gateway.channel, code, asked.session_id)

    assert verified.token_delivery is not None, verified.text
    assert verified.token_delivery.email == email
    assert verified.approval is not None, verified.text
    assert prop.name in verified.approval.summary
