"""Chaos over durable turns: three `gateway serve` replicas over one table; keep_running turns whose stream is cut
at a random point (after the first event, in the middle of the text, between a tool's start and its finish) and
resumed on another replica. Every client's events must equal the reference transcript: same kinds and text,
sequences without gap or duplicate, one TurnComplete. Sign-in turns cut before or after their TokenDelivery and
resumed elsewhere deliver the tokens exactly once, and they work; booking turns cut at random points and resumed
elsewhere ask for approval (the ApprovalRequested is kept and resumed), and their decisions, cut and resumed the
same way, book exactly once.

Sized by `DURABLE_CHAOS_TURNS` (default 6, small enough for `make test`; the issue's run is 200) and seeded by
`DURABLE_CHAOS_SEED` (printed on failure).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator

import pytest
from grpc import aio

from booking.v1 import chat_pb2, reservations_pb2, reservations_pb2_grpc
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.devstack.bootstrap import ensure_table
from tests.rpc.test_chat_durable import kept_events, resume, without_tokens
from tests.scaleout.replicas import running_replicas
from tests.support.auth import new_email
from tests.support.chat import Turn, chat, stub
from tests.support.processes import GatewayProcess
from tests.support.reservations import create_property, days_ahead

pytestmark = pytest.mark.slow

TURNS = int(os.environ.get("DURABLE_CHAOS_TURNS", "6"))
SEED = int(os.environ.get("DURABLE_CHAOS_SEED", str(random.randrange(1 << 30))))
REPLICAS = 3


@pytest.fixture(scope="module")
async def chaos_table(aws: AwsClients) -> AsyncIterator[str]:
    name = f"booking-gateway-chaos-{uuid.uuid4().hex[:8]}"
    await ensure_table(aws, name)
    try:
        yield name
    finally:
        await aws.dynamodb.delete_table(TableName=name)


@pytest.fixture(scope="module")
async def trio(settings: Settings, chaos_table: str) -> AsyncIterator[list[GatewayProcess]]:
    own = settings.replace(table_name=chaos_table, scripted_delta_delay_ms=20.0, aws_timeout_seconds=30.0)
    async with running_replicas(own, REPLICAS) as started:
        yield started


def shape(events: list[chat_pb2.ChatEvent]) -> list[tuple[str, str]]:
    """What must match the reference: each event's kind and its text (tool summaries included)."""
    out = []
    for event in without_tokens(events):
        kind = str(event.WhichOneof("kind"))
        detail = ""
        if kind == "text_delta":
            detail = event.text_delta.text
        elif kind == "tool_call_finished":
            detail = f"{event.tool_call_finished.name}:{event.tool_call_finished.ok}"
        elif kind == "turn_complete":
            detail = str(event.turn_complete.stop_reason)
        out.append((kind, detail))
    return out


def merged_text(shaped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Text deltas merged (their split depends on timing), everything else as is."""
    merged: list[tuple[str, str]] = []
    for kind, detail in shaped:
        if kind == "text_delta" and merged and merged[-1][0] == "text_delta":
            merged[-1] = (kind, merged[-1][1] + detail)
        else:
            merged.append((kind, detail))
    return merged


async def test_turns_cut_at_random_points_and_resumed_on_another_replica_equal_their_reference(
    trio: list[GatewayProcess],
) -> None:
    rng = random.Random(SEED)
    channels = [aio.insecure_channel(f"127.0.0.1:{replica.port}") for replica in trio]
    stay = f"{days_ahead(500).isoformat()} to {days_ahead(503).isoformat()}"
    messages = ["help, what can you do", f"what is available {stay}?"]
    try:
        references = {m: merged_text(shape((await chat(channels[0], m)).events)) for m in messages}

        async def one(n: int) -> None:
            message = messages[n % len(messages)]
            reference = references[message]
            start = rng.randrange(REPLICAS)
            other = (start + 1 + rng.randrange(REPLICAS - 1)) % REPLICAS
            cut_after = 1 + rng.randrange(len(reference) + 1)
            first = await kept_events(channels[start], message, stop_after=cut_after)
            started = first[0].session_started
            rest = await resume(channels[other], started.session_id, first[-1].sequence, started.resume_token)
            whole = first + rest
            sequences = [e.sequence for e in whole]
            context = f"seed {SEED}, turn {n}: cut after {cut_after} on replica {start}, resumed on {other}"
            assert sequences == list(range(1, len(whole) + 1)), context
            assert merged_text(shape(whole)) == reference, context
            assert Turn(whole).complete.stop_reason == chat_pb2.STOP_REASON_END_TURN, context

        for batch in range(0, TURNS, 3):
            await asyncio.gather(*(one(n) for n in range(batch, min(batch + 3, TURNS))))
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


async def test_sign_in_turns_cut_at_random_points_deliver_their_tokens_exactly_once(
    trio: list[GatewayProcess], devstack: DevStack
) -> None:
    rng = random.Random(SEED + 1)
    channels = [aio.insecure_channel(f"127.0.0.1:{replica.port}") for replica in trio]
    try:
        for n in range(max(1, TURNS // 3)):
            email = new_email()
            start = rng.randrange(REPLICAS)
            other = (start + 1 + rng.randrange(REPLICAS - 1)) % REPLICAS
            asked = await kept_events(channels[start], f"Jane Roe, {email}")
            sid = asked[0].session_started.session_id
            code = await devstack.mailbox.wait_for_code(email, wait_seconds=30)
            cut_after = 1 + rng.randrange(4)
            first = await kept_events(channels[start], code, sid, stop_after=cut_after)
            token = first[0].session_started.resume_token
            rest = await resume(channels[other], sid, first[-1].sequence, token)
            whole = Turn(first + rest)
            context = f"seed {SEED + 1}, sign-in {n}: cut after {cut_after} on replica {start}, resumed on {other}"
            assert len(whole.of("token_delivery")) == 1, context
            assert whole.sequences == list(range(whole.sequences[0], whole.sequences[0] + len(whole.events))), context
            delivered = whole.token_delivery
            assert delivered is not None
            bearer = (("authorization", f"Bearer {delivered.access_token}"),)
            mine = await chat(channels[other], "what are my reservations?", sid, metadata=bearer)
            assert mine.started.authenticated, context
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


async def cut_and_resume(
    start: aio.Channel,
    other: aio.Channel,
    request: chat_pb2.ChatRequest,
    bearer: tuple[tuple[str, str], ...],
    cut_after: int,
) -> Turn:
    """A keep_running call on `start` cancelled after `cut_after` events, the rest resumed on `other`."""
    request.keep_running = True
    call = stub(start).Chat(request, metadata=bearer, timeout=30)
    first: list[chat_pb2.ChatEvent] = []
    async for response in call:
        first.append(response.event)
        if len(first) >= cut_after:
            call.cancel()
            break
    token = first[0].session_started.resume_token
    rest = await resume(other, first[0].session_started.session_id, first[-1].sequence, token)
    return Turn(first + rest)


async def test_booking_turns_cut_at_random_points_book_exactly_once(
    trio: list[GatewayProcess], devstack: DevStack, aws: AwsClients, chaos_table: str
) -> None:
    rng = random.Random(SEED + 2)
    channels = [aio.insecure_channel(f"127.0.0.1:{replica.port}") for replica in trio]
    table = chaos_table
    try:
        for n in range(max(1, TURNS // 3)):
            # Letters only: a run of 6 to 8 digits in a name would be redacted as a sign-in code.
            letters = uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))
            prop = await create_property(aws.dynamodb, table, name=f"Loft {letters}")
            email = new_email()
            start = rng.randrange(REPLICAS)
            other = (start + 1 + rng.randrange(REPLICAS - 1)) % REPLICAS
            asked = await kept_events(channels[start], f"Jane Roe, {email}")
            sid = asked[0].session_started.session_id
            code = await devstack.mailbox.wait_for_code(email, wait_seconds=30)
            delivered = Turn(await kept_events(channels[start], code, sid)).token_delivery
            assert delivered is not None
            bearer = (("authorization", f"Bearer {delivered.access_token}"),)
            # Each booking has a property of its own; the stay stays within the agent's two years ahead at any size.
            stay = f"{days_ahead(400 + n % 300).isoformat()} to {days_ahead(403 + n % 300).isoformat()}"
            await chat(channels[start], f"what's available {stay}?", sid, metadata=bearer)
            context = f"seed {SEED + 2}, booking {n}: replicas {start} then {other}"
            # The booking is asked for in a kept turn cut at a random point and resumed on another replica: the
            # resumed turn carries the approval (kept with the other events).
            booking = await cut_and_resume(
                channels[start],
                channels[other],
                chat_pb2.ChatRequest(session_id=sid, message=f"book the {prop.name} for 2 guests"),
                bearer,
                1 + rng.randrange(6),
            )
            approval = booking.approval
            assert approval is not None, (context, booking.kinds, booking.text)
            assert booking.complete.stop_reason == chat_pb2.STOP_REASON_AWAITING_APPROVAL, context
            # The decision, kept too, cut at a random point and resumed on another replica: booked exactly once.
            whole = await cut_and_resume(
                channels[other],
                channels[start],
                chat_pb2.ChatRequest(
                    session_id=sid, decision=chat_pb2.ApprovalDecision(approval_id=approval.approval_id, approve=True)
                ),
                bearer,
                1 + rng.randrange(6),
            )
            assert [(t.name, t.ok) for t in whole.tools] == [("create_reservation", True)], context
            listed = await reservations_pb2_grpc.ReservationServiceStub(channels[other]).ListReservations(
                reservations_pb2.ListReservationsRequest(), metadata=bearer, timeout=30
            )
            assert [r.property_id for r in listed.reservations] == [prop.property_id], context
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
