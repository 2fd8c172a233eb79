"""Per-client chat limits over the wire, on gateways built with their own small limits (both faces).

Anonymous turns and new sessions per client address, turns per signed-in guest, model tokens a day per client
and for the whole gateway; all counted in the table, so replicas share them. A refused turn is
RESOURCE_EXHAUSTED with a reason and RetryInfo, creates no session item and never reaches the model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio

from booking.v1 import chat_pb2
from gateway.adapters.aws import AwsTarget
from gateway.adapters.dynamodb import keys
from gateway.adapters.dynamodb.rate_limiter import DynamoRateLimiter
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.services.chat.quota import GATEWAY_SUBJECT
from gateway.testing import CONNECT_STREAM_HEADERS, END_STREAM, envelope, envelopes
from tests.support.auth import gateway_with, new_email, sign_in
from tests.support.bedrock import FakeBedrock, text_reply
from tests.support.chat import Turn, chat
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.status import error_info, reason_of, retry_delay_seconds

TURNS_PER_MINUTE = 3
SESSIONS_PER_HOUR = 2
GUEST_TURNS_PER_MINUTE = 2
ANONYMOUS_TTL_SECONDS = 600.0
LIMITS: dict[str, Any] = {
    "trusted_proxies": ("127.0.0.1",),
    "chat_anonymous_turns_per_minute": TURNS_PER_MINUTE,
    "chat_anonymous_sessions_per_hour": SESSIONS_PER_HOUR,
    "chat_guest_turns_per_minute": GUEST_TURNS_PER_MINUTE,
    "chat_anonymous_session_ttl_seconds": ANONYMOUS_TTL_SECONDS,
}


def unique_client() -> str:
    """A random address of the shared range 100.64.0.0/10, which no other test uses."""
    n = uuid.uuid4().int
    return f"100.{64 + n % 64}.{(n >> 8) % 256}.{(n >> 16) % 254 + 1}"


def from_client(address: str, bearer: str | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata of a call the trusted proxy (loopback) forwarded for `address`, with a bearer if given."""
    metadata = [("x-forwarded-for", address)]
    if bearer is not None:
        metadata.append(("authorization", f"Bearer {bearer}"))
    return tuple(metadata)


def assert_refused(error: aio.AioRpcError, reason: str, *, longest: float) -> error_details_pb2.ErrorInfo:
    assert reason_of(error) == (grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
    delay = retry_delay_seconds(error)
    assert delay is not None
    assert 0 < delay <= longest
    return error_info(error)


async def refused(channel: aio.Channel, session_id: str, metadata: tuple[tuple[str, str], ...]) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as caught:
        await chat(channel, "hello", session_id=session_id, metadata=metadata)
    return caught.value


async def session_items(gateway: RunningGateway) -> int:
    """How many chat session items the table holds (of every test)."""
    dynamodb, table = gateway.app.clients.dynamodb, gateway.app.settings.aws.table_name
    count = 0
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="begins_with(PK, :chat) AND SK = :session",
        ExpressionAttributeValues={":chat": {"S": "CHAT#"}, ":session": {"S": "SESSION"}},
        Select="COUNT",
    )
    async for page in pages:
        count += page["Count"]
    return count


async def session_expiry(gateway: RunningGateway, session_id: str) -> float:
    """The TTL attribute of a chat session item."""
    answer = await gateway.app.clients.dynamodb.get_item(
        TableName=gateway.app.settings.aws.table_name, Key=keys.chat_session_key(session_id), ConsistentRead=True
    )
    return float(answer["Item"][keys.TTL_ATTRIBUTE]["N"])


@pytest.fixture(scope="module")
async def limited(gateway: RunningGateway, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway that believes x-forwarded-for from loopback, with small chat limits."""
    async with gateway_with(gateway, settings, **LIMITS) as gw:
        yield gw


@dataclass
class BedrockWorld:
    gateway: RunningGateway
    fake: FakeBedrock


@pytest.fixture(scope="module")
async def bedrock(devstack: DevStack, settings: Settings) -> AsyncIterator[BedrockWorld]:
    """A gateway with the small limits whose model is the Bedrock fake, which counts the calls it gets."""
    fake = FakeBedrock()
    await fake.start()
    target = AwsTarget(
        region="us-east-1", endpoint_url=fake.url, access_key_id="fake-bedrock", secret_access_key="fake-bedrock"
    )
    try:
        changed = settings.replace(agent_model="bedrock", bedrock_endpoint_url=fake.url, **LIMITS)
        async with running_gateway(devstack, changed, bedrock=target) as gateway:
            yield BedrockWorld(gateway, fake)
    finally:
        await fake.stop()


async def test_the_turn_after_the_anonymous_limit_is_rate_limited_writes_nothing_and_never_reaches_the_model(
    bedrock: BedrockWorld,
) -> None:
    client = from_client(unique_client())
    channel = bedrock.gateway.channel
    bedrock.fake.script(*(text_reply("hi") for _ in range(TURNS_PER_MINUTE + 2)))
    first = await chat(channel, "hello", metadata=client)
    for _ in range(TURNS_PER_MINUTE - 1):
        await chat(channel, "hello again", session_id=first.session_id, metadata=client)
    sessions = await session_items(bedrock.gateway)
    info = assert_refused(await refused(channel, first.session_id, client), "RATE_LIMITED", longest=60)
    assert info.metadata["limit"] == "chat-turns-anon"
    assert_refused(await refused(channel, "", client), "RATE_LIMITED", longest=60)
    assert len(bedrock.fake.requests) == TURNS_PER_MINUTE  # the refused turns never called the model
    assert await session_items(bedrock.gateway) == sessions  # and created no session
    # Another address is counted on its own.
    await chat(channel, "hello", metadata=from_client(unique_client()))


async def test_more_new_anonymous_sessions_per_hour_than_allowed_are_rate_limited(limited: RunningGateway) -> None:
    client = from_client(unique_client())
    sessions = [await chat(limited.channel, "hello", metadata=client) for _ in range(SESSIONS_PER_HOUR)]
    error = await refused(limited.channel, "", client)
    info = assert_refused(error, "RATE_LIMITED", longest=3600)
    assert info.metadata["limit"] == "chat-sessions-anon"
    delay = retry_delay_seconds(error)
    assert delay is not None
    assert delay > 60
    # The refused new session gave its turn back: the sessions already open go on.
    assert TURNS_PER_MINUTE == SESSIONS_PER_HOUR + 1
    await chat(limited.channel, "hello again", session_id=sessions[0].session_id, metadata=client)


async def test_two_replicas_over_one_table_share_the_count(
    limited: RunningGateway, gateway: RunningGateway, settings: Settings
) -> None:
    client = from_client(unique_client())
    async with gateway_with(gateway, settings, **LIMITS) as other:
        replicas = [limited, other]
        first = await chat(limited.channel, "hello", metadata=client)
        for n in range(1, TURNS_PER_MINUTE):
            await chat(replicas[n % 2].channel, "again", session_id=first.session_id, metadata=client)
        for replica in replicas:
            assert_refused(await refused(replica.channel, first.session_id, client), "RATE_LIMITED", longest=60)


async def test_a_signed_in_guest_has_a_limit_of_their_own(limited: RunningGateway) -> None:
    address = unique_client()
    anonymous = from_client(address)
    first = await chat(limited.channel, "hello", metadata=anonymous)
    for _ in range(TURNS_PER_MINUTE - 1):
        await chat(limited.channel, "again", session_id=first.session_id, metadata=anonymous)
    assert_refused(await refused(limited.channel, "", anonymous), "RATE_LIMITED", longest=60)
    # The same address, signed in: the guest's own limit, not the address's.
    tokens = await sign_in(limited, new_email("chat-limits"))
    signed_in = from_client(address, tokens.access_token)
    mine = await chat(limited.channel, "hello", metadata=signed_in)
    for _ in range(GUEST_TURNS_PER_MINUTE - 1):
        await chat(limited.channel, "again", session_id=mine.session_id, metadata=signed_in)
    info = assert_refused(await refused(limited.channel, mine.session_id, signed_in), "RATE_LIMITED", longest=60)
    assert info.metadata["limit"] == "chat-turns-guest"


async def connect_chat(web_url: str, address: str, session_id: str = "") -> tuple[str, dict[str, Any] | None]:
    """A Chat call over the Connect protocol: (the session id it started, or "", the end-of-stream error)."""
    body = chat_pb2.ChatRequest(session_id=session_id, message="hello").SerializeToString()
    session = ""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(
            f"{web_url}/booking.v1.ChatService/Chat",
            data=envelope(body),
            headers={**CONNECT_STREAM_HEADERS, "x-forwarded-for": address},
        ) as response,
    ):
        assert response.status == 200
        async for flags, payload in envelopes(response.content):
            if flags & END_STREAM:
                end = json.loads(payload)
                return session, end.get("error")
            event = chat_pb2.ChatResponse.FromString(payload).event
            if event.WhichOneof("kind") == "session_started":
                session = event.session_started.session_id
    raise AssertionError("the stream ended without its end-of-stream message")


def connect_detail(error: dict[str, Any], kind: str) -> bytes:
    for detail in error.get("details", []):
        if detail["type"] == kind:
            value: str = detail["value"]
            return base64.b64decode(value + "=" * (-len(value) % 4))
    raise AssertionError(f"no {kind} in {error}")


async def test_the_web_face_refuses_the_turn_after_the_anonymous_limit_with_reason_and_retry_info(
    limited: RunningGateway,
) -> None:
    address = unique_client()
    session, error = await connect_chat(limited.web_url, address)
    assert session
    assert error is None
    for _ in range(TURNS_PER_MINUTE - 1):
        assert await connect_chat(limited.web_url, address, session) == (session, None)
    started, error = await connect_chat(limited.web_url, address, session)
    assert started == ""
    assert error is not None
    assert error["code"] == "resource_exhausted"
    info = error_details_pb2.ErrorInfo.FromString(connect_detail(error, "google.rpc.ErrorInfo"))
    assert info.reason == "RATE_LIMITED"
    retry = error_details_pb2.RetryInfo.FromString(connect_detail(error, "google.rpc.RetryInfo"))
    assert 0 < retry.retry_delay.seconds <= 60


async def test_a_spent_client_token_budget_stops_turns_until_the_next_day_on_both_faces(
    gateway: RunningGateway, settings: Settings
) -> None:
    address = unique_client()
    async with gateway_with(gateway, settings, trusted_proxies=("127.0.0.1",), chat_client_tokens_per_day=1) as gw:
        first = await chat(gw.channel, "hello", metadata=from_client(address))
        assert first.complete.usage.input_tokens + first.complete.usage.output_tokens > 1
        sessions = await session_items(gw)
        error = await refused(gw.channel, first.session_id, from_client(address))
        info = assert_refused(error, "TOKEN_BUDGET_EXHAUSTED", longest=86400)
        assert info.metadata["budget"] == "client"
        delay = retry_delay_seconds(error)
        assert delay is not None
        # The budget renews at the next UTC midnight.
        assert abs(time.time() + delay - (time.time() // 86400 + 1) * 86400) < 5
        _, web_error = await connect_chat(gw.web_url, address)
        assert web_error is not None
        assert web_error["code"] == "resource_exhausted"
        web_info = error_details_pb2.ErrorInfo.FromString(connect_detail(web_error, "google.rpc.ErrorInfo"))
        assert web_info.reason == "TOKEN_BUDGET_EXHAUSTED"
        assert await session_items(gw) == sessions
        # Another client has a budget of its own.
        await chat(gw.channel, "hello", metadata=from_client(unique_client()))


async def test_a_spent_gateway_wide_token_budget_stops_every_clients_turns(
    gateway: RunningGateway, settings: Settings
) -> None:
    counters = DynamoRateLimiter(gateway.app.clients.dynamodb, gateway.app.settings.aws.table_name)
    budget = gateway.app.settings.chat.quota().gateway_tokens
    spent = (await counters.spent(budget, GATEWAY_SUBJECT, datetime.now(UTC))).spent
    # Room for one more turn of anybody's, then none.
    async with gateway_with(
        gateway, settings, trusted_proxies=("127.0.0.1",), chat_gateway_tokens_per_day=spent + 1
    ) as gw:
        await chat(gw.channel, "hello", metadata=from_client(unique_client()))
        error = await refused(gw.channel, "", from_client(unique_client()))
        info = assert_refused(error, "TOKEN_BUDGET_EXHAUSTED", longest=86400)
        assert info.metadata["budget"] == "gateway"


async def test_an_anonymous_session_expires_after_a_short_idle_time_and_a_signed_in_one_keeps_the_long_ttl(
    limited: RunningGateway,
) -> None:
    address = unique_client()
    before = time.time()
    anonymous: Turn = await chat(limited.channel, "hello", metadata=from_client(address))
    expiry = await session_expiry(limited, anonymous.session_id)
    assert before + ANONYMOUS_TTL_SECONDS <= expiry <= time.time() + ANONYMOUS_TTL_SECONDS + 2
    # The person signs in and goes on in the same session: it is theirs now, and kept the long time.
    tokens = await sign_in(limited, new_email("chat-ttl"))
    before = time.time()
    await chat(
        limited.channel, "hello", session_id=anonymous.session_id, metadata=from_client(address, tokens.access_token)
    )
    long_ttl = limited.app.settings.chat.session_ttl_seconds
    expiry = await session_expiry(limited, anonymous.session_id)
    assert before + long_ttl <= expiry <= time.time() + long_ttl + 2


async def test_concurrent_new_sessions_from_one_address_are_counted_exactly(limited: RunningGateway) -> None:
    client = from_client(unique_client())
    sessions = await session_items(limited)
    outcomes = await asyncio.gather(
        *(chat(limited.channel, "hello", metadata=client) for _ in range(12)), return_exceptions=True
    )
    succeeded = [o for o in outcomes if isinstance(o, Turn)]
    failed = [o for o in outcomes if not isinstance(o, Turn)]
    assert len(succeeded) == SESSIONS_PER_HOUR
    assert all(isinstance(f, aio.AioRpcError) and reason_of(f)[1] == "RATE_LIMITED" for f in failed)
    assert await session_items(limited) == sessions + SESSIONS_PER_HOUR


async def test_the_reviewed_abuse_with_default_limits_gets_ten_sessions_an_hour_from_one_address(
    gateway: RunningGateway, settings: Settings
) -> None:
    """The review's case: anonymous turns of 4,000 characters from one address, each a new session."""
    defaults = Settings.build()
    client = from_client(unique_client())
    message = ("book a room please " * 250)[:4000]
    async with gateway_with(
        gateway,
        settings,
        trusted_proxies=("127.0.0.1",),
        chat_anonymous_turns_per_minute=defaults.chat.anonymous_turns_per_minute,
        chat_anonymous_sessions_per_hour=defaults.chat.anonymous_sessions_per_hour,
        chat_client_tokens_per_day=defaults.chat.client_tokens_per_day,
    ) as gw:
        answered, refused_reasons = 0, set()
        for _ in range(30):
            try:
                await chat(gw.channel, message, metadata=client)
                answered += 1
            except aio.AioRpcError as error:
                refused_reasons.add(reason_of(error))
        assert answered == defaults.chat.anonymous_sessions_per_hour == 10
        assert refused_reasons == {(grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")}
