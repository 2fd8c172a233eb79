"""Codes typed in the chat: never stored, and read by the model only while a sign-in of the session waits for one.

What counts as a code: a run of 6 to 8 digits standing alone (what `verify_code` accepts), see docs/chat.md."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from gateway.adapters.aws import AwsClients
from gateway.adapters.dynamodb import keys
from tests.support.auth import mailed_code, new_email
from tests.support.chat import chat
from tests.support.gateway import RunningGateway


def a_code(digits: int = 8) -> str:
    """A code-like run of digits no other test types (first digit not 0, so it cannot be read as shorter)."""
    return str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(digits - 1))


async def table_text(aws: AwsClients, table: str) -> str:
    """Every item of the table, as one string to search."""
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        page = await (
            aws.dynamodb.scan(TableName=table, ExclusiveStartKey=start) if start else aws.dynamodb.scan(TableName=table)
        )
        items.extend(page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        if not start:
            return repr(items)


async def session_text(aws: AwsClients, table: str, session_id: str) -> str:
    """The items of one chat session (session and turns), as one string."""
    page = await aws.dynamodb.query(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.chat_partition(session_id)}},
    )
    return repr(page["Items"])


@pytest.mark.parametrize(
    "message",
    ["{code}", "my number is {code}, thanks", "my code is {code}", "here: {code}.", "{short} then {code}"],
    ids=["alone", "in-a-sentence", "called-a-code", "punctuated", "two-codes"],
)
async def test_a_code_typed_when_no_sign_in_is_pending_is_neither_stored_nor_given_to_the_model(
    gateway: RunningGateway, aws: AwsClients, table: str, message: str
) -> None:
    code, short = a_code(8), a_code(6)
    turn = await chat(gateway.channel, message.format(code=code, short=short))

    # The scripted model would try verify_code on "my code is ...": it never saw a code, so it tries nothing.
    assert [t.name for t in turn.tools] == []
    assert turn.complete is not None
    stored = await table_text(aws, table)
    assert code not in stored
    assert short not in stored
    assert "[redacted]" in await session_text(aws, table, turn.session_id)


async def test_longer_numbers_dates_and_ids_are_not_codes(gateway: RunningGateway, aws: AwsClients, table: str) -> None:
    nine = a_code(9)
    turn = await chat(gateway.channel, f"order {nine}, ref RES-{nine[:8]}, on 2026-12-04")
    assert turn.complete is not None
    stored = await session_text(aws, table, turn.session_id)
    assert f"order {nine}, ref RES-{nine[:8]}, on 2026-12-04" in stored


async def test_a_code_typed_while_a_sign_in_waits_is_checked_and_not_stored(
    gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    email = new_email("typed-code")
    sent = await chat(gateway.channel, f"Jane Roe, {email}")
    code = mailed_code(gateway, email)

    verified = await chat(gateway.channel, f"it is {code}", sent.session_id)
    assert verified.token_delivery is not None
    assert code not in await table_text(aws, table)
