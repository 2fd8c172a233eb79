"""The Python client keeps a chat turn across a dropped connection, and stops it on `cancel()`."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from grpc import aio

from booking.v1 import chat_pb2
from booking_client import (
    BookingClient,
    ChatEvent,
    MemorySessionStore,
    Reconnecting,
    ResumeBackoff,
    SessionStarted,
    SignedIn,
    TextDelta,
    ToolCallFinished,
    TurnComplete,
    Unavailable,
    connect,
)
from booking_client.client import CANCEL_TIMEOUT_SECONDS
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from tests.clients.dark_proxy import DarkableProxy
from tests.rpc.test_chat_durable import resume
from tests.support.chat import Turn
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import emulator_sign_in, unique_email
from tests.support.reservations import create_property, days_ahead
from tests.support.sessions import session_from
from tests.support.tcp_cut import CuttableProxy

HELP = "help, what can you do"


@pytest.fixture(scope="module")
async def typing_gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=30.0)) as running:
        yield running


def text_of(events: Sequence[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_a_dropped_connection_mid_answer_reconnects_and_the_answer_is_whole_with_no_event_twice(
    typing_gateway: RunningGateway,
) -> None:
    async with connect(
        typing_gateway.target, tls=False, session_store=MemorySessionStore(), keep_running=False
    ) as plain:
        reference = [e async for e in plain.chat(HELP)]
    async with (
        CuttableProxy(typing_gateway.server.port) as proxy,
        connect(
            proxy.target,
            tls=False,
            session_store=MemorySessionStore(),
            resume_backoff=ResumeBackoff(first_seconds=0.05),
        ) as client,
    ):
        events: list[ChatEvent] = []
        states: list[bool] = []
        async for event in client.chat(HELP):
            events.append(event)
            if isinstance(event, Reconnecting):
                states.append(client.reconnecting)
            if sum(isinstance(e, TextDelta) for e in events) == 3 and not states:
                proxy.cut()
        assert states == [True] * len(states)
        assert states
        assert not client.reconnecting
        assert proxy.connections >= 2
    kept = [e for e in events if not isinstance(e, Reconnecting)]
    sequences = [e.sequence for e in kept]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert text_of(kept) == text_of(reference)
    assert isinstance(kept[-1], TurnComplete)
    assert kept[-1].stop_reason == "END_TURN"


async def test_cancel_stops_the_running_turn_and_the_conversation_goes_on(typing_gateway: RunningGateway) -> None:
    async with connect(typing_gateway.target, tls=False, session_store=MemorySessionStore()) as client:
        events: list[ChatEvent] = []
        async for event in client.chat(HELP):
            events.append(event)
            if isinstance(event, TextDelta) and len(events) == 3:
                assert await client.cancel()
        assert isinstance(events[-1], TurnComplete)
        assert events[-1].stop_reason == "CANCELLED"
        assert not await client.cancel()
        after = [e async for e in client.chat("hello")]
        assert isinstance(after[0], SessionStarted)
        assert after[0].resumed
        assert after[0].sequence == events[-1].sequence + 1


async def test_cancel_while_the_network_is_down_fails_as_unavailable_within_its_short_timeout(
    typing_gateway: RunningGateway,
) -> None:
    async with (
        DarkableProxy(typing_gateway.server.port) as proxy,
        connect(proxy.target, tls=False, session_store=MemorySessionStore()) as client,
    ):
        async for event in client.chat(HELP):
            if isinstance(event, TextDelta):
                proxy.go_dark()
            if isinstance(event, Reconnecting):
                started = time.monotonic()
                with pytest.raises(Unavailable) as caught:
                    await client.cancel()
                # Not the client's 30 s call timeout: stopping an answer must not hang on a dead network.
                assert time.monotonic() - started < CANCEL_TIMEOUT_SECONDS + 10
                assert caught.value.code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
                break


async def test_leaving_the_loop_stops_the_kept_turn_so_the_next_message_does_not_wait(
    typing_gateway: RunningGateway,
) -> None:
    async with connect(typing_gateway.target, tls=False, session_store=MemorySessionStore()) as client:
        seen = 0
        async for event in client.chat(HELP):
            seen = event.sequence
            if isinstance(event, TextDelta):
                break
        turn = client._turn
        assert turn is not None
        rest = Turn(await resume(typing_gateway.channel, turn.session_id, seen, turn.resume_token))
        assert rest.complete.stop_reason == chat_pb2.STOP_REASON_CANCELLED
        after = [e async for e in client.chat("hello")]
        assert isinstance(after[-1], TurnComplete)
        assert after[-1].stop_reason == "END_TURN"


async def test_a_stream_deadline_shorter_than_the_answer_is_resumed_until_the_turn_ends(
    devstack: DevStack, settings: Settings
) -> None:
    # The answer takes about six seconds to type, each stream may last two: the turn is followed over three or
    # more calls, and the first one has time to start the turn (its SessionStarted carries the resume token) even
    # on a loaded machine.
    async with (
        running_gateway(devstack, settings.replace(scripted_delta_delay_ms=100.0)) as slow_typing,
        aio.insecure_channel(slow_typing.target) as channel,
    ):
        client = BookingClient(
            channel,
            session_store=MemorySessionStore(),
            chat_timeout=2.0,
            resume_backoff=ResumeBackoff(first_seconds=0.02),
        )
        events = [e async for e in client.chat(HELP)]
    reconnects = [e for e in events if isinstance(e, Reconnecting)]
    kept = [e for e in events if not isinstance(e, Reconnecting)]
    assert reconnects
    assert {e.reason for e in reconnects} == {"DEADLINE_EXCEEDED"}
    sequences = [e.sequence for e in kept]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert isinstance(kept[-1], TurnComplete)
    assert kept[-1].stop_reason == "END_TURN"


async def test_an_approval_whose_stream_drops_is_resumed_and_books_once(
    typing_gateway: RunningGateway, aws: AwsClients, table: str
) -> None:
    """approve() runs kept like chat(): a connection cut during the decision's turn reconnects, the booking is
    done once, and its result arrives whole."""
    prop = await create_property(aws.dynamodb, table, name=f"Studio s{uuid.uuid4().hex[:8]}")
    tokens = await emulator_sign_in(typing_gateway.devstack)
    stay = f"{days_ahead(140).isoformat()} to {days_ahead(142).isoformat()}"
    async with (
        CuttableProxy(typing_gateway.server.port) as proxy,
        connect(
            proxy.target,
            tls=False,
            session_store=MemorySessionStore(session_from(tokens)),
            resume_backoff=ResumeBackoff(first_seconds=0.05),
        ) as client,
    ):
        asked = [e async for e in client.chat(f"book the {prop.name} for 2 guests {stay}")]
        approval = client.pending_approval
        assert approval is not None, text_of(asked)
        assert isinstance(asked[-1], TurnComplete)
        assert asked[-1].stop_reason == "AWAITING_APPROVAL"
        events: list[ChatEvent] = []
        async for event in client.approve(approval.approval_id):
            events.append(event)
            if len(events) == 1:
                proxy.cut()
        assert any(isinstance(e, Reconnecting) for e in events)
        kept = [e for e in events if not isinstance(e, Reconnecting)]
        sequences = [e.sequence for e in kept]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        booked = [e for e in kept if isinstance(e, ToolCallFinished) and e.name == "create_reservation"]
        assert [e.ok for e in booked] == [True]
        assert isinstance(kept[-1], TurnComplete)
        assert kept[-1].stop_reason == "END_TURN"
        assert len((await client.list_reservations()).reservations) == 1


def exp_claim(token: str) -> datetime.datetime:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return datetime.datetime.fromtimestamp(claims["exp"], datetime.UTC)


async def test_a_sign_in_replayed_by_resume_chat_expires_when_its_access_token_does(
    devstack: DevStack, settings: Settings
) -> None:
    """A TokenDelivery replayed after a drop carries the `expires_in` it had when issued: the session's expiry is
    the access token's own `exp`, not the time of the replay plus `expires_in`.

    The code turn's attempt (its UpdateItem) waits at a proxy in front of DynamoDB until the client's stream has
    been cut, so the sign-in can only reach the client in the replay, however loaded the machine."""
    email = unique_email("replayed")
    target = devstack.endpoints.target
    async with (
        FaultyDynamo(target.endpoint_url or "") as table_proxy,
        running_gateway(devstack, settings, target=dataclasses.replace(target, endpoint_url=table_proxy.url)) as gw,
        DarkableProxy(gw.server.port) as proxy,
        connect(
            proxy.target,
            tls=False,
            session_store=MemorySessionStore(),
            resume_backoff=ResumeBackoff(first_seconds=0.05),
        ) as client,
    ):
        for message in ("book the Harbor Loft for 2 guests", f"Jane Replayed, {email}"):
            [e async for e in client.chat(message)]
        checking = table_proxy.hold("UpdateItem", b"attempts_used = attempts_used + :one")
        events: list[ChatEvent] = []
        async for event in client.chat(await devstack.mailbox.wait_for_code(email)):
            events.append(event)
            if isinstance(event, SessionStarted):
                proxy.go_dark()  # before the code is checked: the sign-in is delivered to nobody
                checking.release.set()
                turn = client._turn
                assert turn is not None
                # The turn runs on; once it has ended, its sign-in comes to the client only in the replay.
                rest = Turn(await resume(gw.channel, turn.session_id, event.sequence, turn.resume_token))
                assert [e for e in rest.events if e.WhichOneof("kind") == "token_delivery"]
                proxy.go_light()
        assert checking.arrived.is_set()
        kinds = [type(e) for e in events]
        assert Reconnecting in kinds
        assert SignedIn in kinds
        assert kinds.index(Reconnecting) < kinds.index(SignedIn)
        session = client.session
        assert session is not None
        assert session.expires_at == exp_claim(session.access_token)
