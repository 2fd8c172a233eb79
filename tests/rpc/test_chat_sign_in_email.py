"""A person whose email address has a run of digits in it signs in through the chat like anybody else.

The digits of jane.19851231@example.com are not a sign-in code (the gateway neither hides them from the model nor
from the stored conversation) and not a date, a count or a code to the scripted agent, which reads the rest of
the message: the booking asked for before the sign-in is still asked for after it.
"""

from __future__ import annotations

import dataclasses
import random
import string

import pytest

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb.guest_store import MAX_ID_TRIES
from gateway.config import Settings
from tests.support.auth import gateway_with
from tests.support.chat import chat, decide
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway
from tests.support.identity import Tokens
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


async def test_a_chat_sign_in_without_a_guest_profile_still_books(
    gateway: RunningGateway, settings: Settings, aws: AwsClients, table: str
) -> None:
    """The rare sign-in whose new guest profile the table could not store (every try contended): inside the chat
    the person is signed in all the same, nobody is told about an empty guest id, and the booking waiting for the
    sign-in is asked for and, approved, made."""
    prop = await create_property(aws.dynamodb, table, name=f"Studio g{letters(8)}")
    email = f"{letters(10)}@example.com"
    stay = f"{days_ahead(236).isoformat()} to {days_ahead(238).isoformat()}"
    target = gateway.devstack.endpoints.target
    async with (
        FaultyDynamo(target.endpoint_url or "") as proxy,
        gateway_with(gateway, settings, target=dataclasses.replace(target, endpoint_url=proxy.url)) as flaky,
    ):
        asked = await chat(flaky.channel, f"book the {prop.name} for 2 guests {stay}")
        await chat(flaky.channel, f"Jane Roe, {email}", asked.session_id)
        code = await gateway.devstack.mailbox.wait_for_code(email, wait_seconds=30)
        proxy.inject("TransactWriteItems", *["cancel_conflict"] * (MAX_ID_TRIES * 3))
        verified = await chat(flaky.channel, code, asked.session_id)
        assert proxy.pending("TransactWriteItems") == 0

        assert verified.token_delivery is not None
        assert verified.token_delivery.guest_id == ""
        assert [(t.name, t.summary) for t in verified.tools] == [("verify_code", "verified")]
        assert "guest ." not in verified.text
        assert "You're signed in." in verified.text
        assert verified.approval is not None, verified.text
        bearer = Tokens(verified.token_delivery.access_token, verified.token_delivery.id_token, "").bearer()
        booked = await decide(flaky.channel, verified, bearer)
    assert [(t.name, t.ok) for t in booked.tools] == [("create_reservation", True)]
