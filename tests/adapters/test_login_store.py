"""The DynamoDB login store giving attempts back: once per refund even when botocore re-sends it, and only to the
login that spent them (faults injected at the wire, outcomes read from the table)."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.adapters.aws import AwsClients, open_aws_clients
from gateway.adapters.dynamodb import keys
from gateway.adapters.dynamodb.login_store import DynamoLoginStore
from gateway.devstack import DevStack
from gateway.domain import LoginDoor, LoginState, Sub
from gateway.errors import LoginNotFoundError, OtpAttemptsExhaustedError
from tests.support.auth import new_email
from tests.support.faults import FaultyDynamo


@pytest.fixture
async def proxy(devstack: DevStack) -> AsyncIterator[FaultyDynamo]:
    async with FaultyDynamo(devstack.endpoints.endpoint_url) as running:
        yield running


@pytest.fixture
async def store(devstack: DevStack, proxy: FaultyDynamo, table: str) -> AsyncIterator[DynamoLoginStore]:
    """The store on the gateway's own clients (botocore's standard retries), through the proxy."""
    async with open_aws_clients(dataclasses.replace(devstack.endpoints.target, endpoint_url=proxy.url)) as clients:
        yield DynamoLoginStore(clients.dynamodb, table)


def new_login(email: str | None = None) -> LoginState:
    now = datetime.now(UTC)
    return LoginState(
        login_key=secrets.token_urlsafe(24),
        email=email or new_email("refund"),
        name="",
        sub=Sub("sub-" + secrets.token_hex(4)),
        idp_session="session",
        nonce=secrets.token_urlsafe(12),
        attempts_used=0,
        max_attempts=3,
        sent_at=now,
        expires_at=now + timedelta(minutes=3),
    )


async def attempts_used(aws: AwsClients, table: str, email: str) -> int:
    found = await aws.dynamodb.get_item(
        TableName=table, Key=keys.login_email_key(keys.email_digest(email)), ConsistentRead=True
    )
    return int(found["Item"]["attempts_used"]["N"])


async def test_a_refund_resent_by_botocore_after_a_lost_answer_gives_back_one_attempt(
    aws: AwsClients, table: str, proxy: FaultyDynamo, store: DynamoLoginStore
) -> None:
    login = new_login()
    await store.save(login)
    await store.spend_attempt(login.login_key, datetime.now(UTC))
    spent = await store.spend_attempt(login.login_key, datetime.now(UTC))
    assert await attempts_used(aws, table, login.email) == 2
    proxy.inject("UpdateItem", "fail_after")  # applied, then answered 500: botocore sends it again
    await store.refund_attempt(spent)
    assert proxy.seen.count("UpdateItem") == 4
    assert await attempts_used(aws, table, login.email) == 1


async def test_refunds_never_go_below_zero_nor_reach_a_newer_login_for_the_email(
    aws: AwsClients, table: str, store: DynamoLoginStore
) -> None:
    login = new_login()
    await store.save(login)
    spent = await store.spend_attempt(login.login_key, datetime.now(UTC))
    await store.refund_attempt(spent)
    await store.refund_attempt(spent)
    assert await attempts_used(aws, table, login.email) == 0
    newer = new_login(login.email)
    await store.save(newer)
    for _ in range(3):
        await store.spend_attempt(newer.login_key, datetime.now(UTC))
    await store.refund_attempt(spent)  # the superseded login's refund
    assert await attempts_used(aws, table, login.email) == 3
    with pytest.raises(OtpAttemptsExhaustedError):
        await store.spend_attempt(newer.login_key, datetime.now(UTC))


@pytest.mark.parametrize(("started", "tried"), [("unary", "chat"), ("chat", "unary")])
async def test_a_login_is_found_only_through_the_door_it_was_started_at(
    aws: AwsClients, table: str, started: LoginDoor, tried: LoginDoor
) -> None:
    store = DynamoLoginStore(aws.dynamodb, table)
    login = dataclasses.replace(new_login(), door=started)
    await store.save(login)
    now = datetime.now(UTC)

    assert not await store.is_pending(login.login_key, now, tried)
    with pytest.raises(LoginNotFoundError):
        await store.spend_attempt(login.login_key, now, tried)
    assert await attempts_used(aws, table, login.email) == 0

    assert await store.is_pending(login.login_key, now, started)
    assert (await store.spend_attempt(login.login_key, now, started)).door == started
