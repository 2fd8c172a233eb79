"""The Chat stream over the wire with the scripted model: events, sequence numbers, sessions, bad input,
coalescing, cancellation and deadlines."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from booking.v1 import chat_pb2
from gateway.adapters.scripted_words import help_text
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.testing import eventually
from tests.support.chat import Turn, chat, stub
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.identity import emulator_sign_in
from tests.support.status import field_violations, reason_of


def greeting() -> str:
    """The scripted agent's answer to "hello" (its examples are computed from today, in UTC by default)."""
    return f"Hello! I'm the booking assistant. {help_text(datetime.datetime.now(datetime.UTC).date())}"


# The slow gateway's scripted model pauses this long between words, so a turn lasts seconds.
SLOW_WORD_MS = 100.0


async def test_a_turn_starts_with_session_started_and_ends_with_turn_complete(gateway: RunningGateway) -> None:
    turn = await chat(gateway.channel, "hello")

    started = turn.started
    assert started.session_id
    assert (started.resumed, started.authenticated, started.guest_id) == (False, False, "")
    assert turn.text == greeting()
    complete = turn.complete
    assert complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert complete.usage.input_tokens > 0
    assert complete.usage.output_tokens > 0
    assert set(turn.kinds[1:-1]) == {"text_delta"}


async def test_sequence_numbers_increase_by_one_across_the_turns_of_a_session(gateway: RunningGateway) -> None:
    first = await chat(gateway.channel, "hello")
    second = await chat(gateway.channel, "thanks", session_id=first.session_id)
    third = await chat(gateway.channel, "help", session_id=first.session_id)

    assert first.sequences[0] == 1
    everything = first.sequences + second.sequences + third.sequences
    assert everything == list(range(1, len(everything) + 1))
    assert second.started.resumed
    assert third.started.session_id == first.session_id


async def test_text_deltas_faster_than_the_flush_interval_are_merged_and_the_text_is_intact(
    gateway: RunningGateway,
) -> None:
    turn = await chat(gateway.channel, "hello")

    # The scripted model streams one delta per word and counts each as an output token.
    deltas_written = turn.complete.usage.output_tokens
    messages = turn.of("text_delta")
    assert deltas_written == len(greeting().split())
    assert len(messages) < deltas_written
    assert turn.text == greeting()


@pytest.mark.parametrize(
    ("message", "problem"),
    [("", "must not be empty"), ("   \n", "must not be empty"), ("x" * 4001, "at most 4000 characters")],
)
async def test_a_bad_message_is_invalid_argument(gateway: RunningGateway, message: str, problem: str) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await chat(gateway.channel, message)
    assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert problem in field_violations(caught.value)["message"]


async def test_a_message_of_4000_characters_is_accepted(gateway: RunningGateway) -> None:
    turn = await chat(gateway.channel, "hello " + "x" * 3994)
    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN


async def test_a_malformed_session_id_is_invalid_argument(gateway: RunningGateway) -> None:
    for session_id in ("short", "x" * 65, "no spaces allowed here!", "../../etc/passwd-xxxxxxxx"):
        with pytest.raises(aio.AioRpcError) as caught:
            await chat(gateway.channel, "hello", session_id=session_id)
        assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert "session_id" in field_violations(caught.value)


async def test_an_unknown_session_is_not_found(gateway: RunningGateway) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await chat(gateway.channel, "hello", session_id="nO-such-session-0123456789")
    assert reason_of(caught.value) == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")


async def test_a_session_used_with_a_bearer_belongs_to_that_person(gateway: RunningGateway) -> None:
    owner = await emulator_sign_in(gateway.devstack)
    stranger = await emulator_sign_in(gateway.devstack)
    first = await chat(gateway.channel, "hello", metadata=owner.bearer())
    assert first.started.authenticated
    session_id = first.session_id

    with pytest.raises(aio.AioRpcError) as anonymous:
        await chat(gateway.channel, "what are my reservations?", session_id=session_id)
    assert reason_of(anonymous.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")

    with pytest.raises(aio.AioRpcError) as other:
        await chat(gateway.channel, "what are my reservations?", session_id=session_id, metadata=stranger.bearer())
    assert reason_of(other.value) == (grpc.StatusCode.PERMISSION_DENIED, "SESSION_NOT_OWNED")

    again = await chat(gateway.channel, "thanks", session_id=session_id, metadata=owner.bearer())
    assert again.started.resumed
    assert again.started.authenticated
    # The refused calls wrote nothing: the owner's numbering goes on where it stopped.
    assert again.sequences[0] == first.sequences[-1] + 1


async def test_an_anonymous_session_continued_with_a_bearer_becomes_that_persons(gateway: RunningGateway) -> None:
    person = await emulator_sign_in(gateway.devstack)
    first = await chat(gateway.channel, "hello")
    await chat(gateway.channel, "thanks", session_id=first.session_id, metadata=person.bearer())

    with pytest.raises(aio.AioRpcError) as caught:
        await chat(gateway.channel, "hello", session_id=first.session_id)
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


# --- a gateway whose scripted model types slowly: cancellation and deadlines -------------------------------------


@pytest.fixture(scope="module")
async def slow(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=SLOW_WORD_MS)) as running:
        yield running


def _turn_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("chat-turn-", "HandleExceptions[/booking"))]


async def _settled(gateway: RunningGateway) -> bool:
    """Wait (bounded) until no chat turn is open and no task of one is left."""
    return await eventually(lambda: gateway.app.chat.load.open == 0 and not _turn_tasks(), timeout_seconds=15)


async def test_a_client_cancelling_mid_stream_stops_the_turn_and_frees_the_session(slow: RunningGateway) -> None:
    call = stub(slow.channel).Chat(chat_pb2.ChatRequest(message="hello"), timeout=30)
    seen: list[chat_pb2.ChatEvent] = []
    async for response in call:
        seen.append(response.event)
        if response.event.WhichOneof("kind") == "text_delta":
            break
    assert slow.app.chat.load.open == 1
    call.cancel()

    assert await _settled(slow), [t.get_name() for t in _turn_tasks()]
    session_id = Turn(seen).session_id
    # The lease was released and the sequence recorded: the next turn starts at once, after what was seen.
    following = await chat(slow.channel, "thanks", session_id=session_id, timeout=10)
    assert following.started.resumed
    assert following.sequences[0] > seen[-1].sequence
    assert following.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN


async def test_a_deadline_ends_the_turn_with_stop_reason_timeout_before_the_call_expires(slow: RunningGateway) -> None:
    # The greeting takes about five seconds to type; the call allows three.
    turn = await chat(slow.channel, "hello", timeout=3)

    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_TIMEOUT
    assert greeting().startswith(turn.text)
    assert 0 < len(turn.text) < len(greeting())
    assert await _settled(slow)


async def test_the_time_spent_before_a_turn_starts_is_gone_from_its_deadline(
    devstack: DevStack, settings: Settings
) -> None:
    """The chat limits' first read (a BatchGetItem) takes 1.5 s at a proxy in front of DynamoDB, as a slow table
    would; the call allows three seconds. The turn gets what is left (about one second, less the margin), not
    2.5 s counted from its own start, which would end after the call: it ends TIMEOUT and the call ends OK."""
    target = devstack.endpoints.target
    async with (
        FaultyDynamo(target.endpoint_url or "") as proxy,
        running_gateway(
            devstack,
            settings.replace(scripted_delta_delay_ms=SLOW_WORD_MS),
            target=dataclasses.replace(target, endpoint_url=proxy.url),
        ) as running,
    ):
        proxy.slow("BatchGetItem", 1.5)
        turn = await chat(running.channel, "hello", timeout=3)
        assert "BatchGetItem" in proxy.seen

    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_TIMEOUT
    assert greeting().startswith(turn.text)
