"""The Bedrock model over the wire: the gateway's aioboto3 `converse_stream` calls against a fake endpoint on
loopback that speaks the real event-stream encoding."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from booking.v1 import chat_pb2
from gateway.adapters.aws import AwsTarget
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.testing import eventually
from tests.support.auth import mailed_code, new_email
from tests.support.bedrock import (
    FakeBedrock,
    Reply,
    encode_event,
    encode_exception,
    error_reply,
    text_reply,
    tool_reply,
)
from tests.support.chat import Turn, chat, stub
from tests.support.gateway import RunningGateway, running_gateway


@dataclass
class BedrockWorld:
    gateway: RunningGateway
    fake: FakeBedrock
    settings: Settings


@pytest.fixture(scope="module")
async def world(devstack: DevStack, settings: Settings) -> AsyncIterator[BedrockWorld]:
    fake = FakeBedrock()
    await fake.start()
    bedrock_settings = settings.replace(agent_model="bedrock", bedrock_endpoint_url=fake.url)
    target = AwsTarget(
        region="us-east-1", endpoint_url=fake.url, access_key_id="fake-bedrock", secret_access_key="fake-bedrock"
    )
    try:
        async with running_gateway(devstack, bedrock_settings, bedrock=target) as gateway:
            yield BedrockWorld(gateway, fake, bedrock_settings)
    finally:
        await fake.stop()


def _blocks(message: dict[str, Any], kind: str) -> list[Any]:
    content = message["content"]
    assert isinstance(content, list)
    return [block[kind] for block in content if kind in block]


async def test_a_tool_call_runs_and_its_result_goes_back_until_end_turn(world: BedrockWorld) -> None:
    world.fake.script(
        # The model asks with an argument that is not a date: the tool answers with a failed result, not an error.
        tool_reply("Let me check.", "tooluse-1", "check_availability", ['{"check_in": "so', 'on", "check_out": "x"}']),
        text_reply("Which ", "dates ", "exactly?"),
    )

    turn = await chat(world.gateway.channel, "is the loft free soon?")

    assert turn.kinds[0] == "session_started"
    assert turn.text == "Let me check.Which dates exactly?"
    assert [(t.call_id, t.name, t.ok) for t in turn.tools] == [("tooluse-1", "check_availability", False)]
    assert "check_in" in turn.tools[0].summary
    started = turn.of("tool_call_started")
    assert [(e.tool_call_started.call_id, e.tool_call_started.name) for e in started] == [
        ("tooluse-1", "check_availability")
    ]
    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
    assert (turn.complete.usage.input_tokens, turn.complete.usage.output_tokens) == (20 + 11, 9 + 7)

    first, second = world.fake.requests
    assert world.fake.paths[0] == f"/model/{world.settings.chat.bedrock_model_id}/converse-stream"
    tool_names = {t["toolSpec"]["name"] for t in first["toolConfig"]["tools"]}
    assert tool_names == {
        "list_properties",
        "check_availability",
        "create_reservation",
        "list_my_reservations",
        "cancel_reservation",
        "start_login",
        "verify_code",
    }
    assert "not signed in" in first["system"][0]["text"]
    assert first["messages"] == [{"role": "user", "content": [{"text": "is the loft free soon?"}]}]
    user, assistant, results = second["messages"]
    assert user == first["messages"][0]
    assert _blocks(assistant, "text") == ["Let me check."]
    assert _blocks(assistant, "toolUse") == [
        {"toolUseId": "tooluse-1", "name": "check_availability", "input": {"check_in": "soon", "check_out": "x"}}
    ]
    [result] = _blocks(results, "toolResult")
    assert result["toolUseId"] == "tooluse-1"
    assert result["status"] == "error"
    today = datetime.datetime.now(datetime.UTC).date()
    problem = f"check_in: 'soon' is not an ISO 8601 date YYYY-MM-DD; today is {today.isoformat()} ({today:%A}) in UTC"
    assert result["content"] == [{"json": {"error": "INVALID_ARGUMENT", "message": problem}}]


async def test_the_system_prompt_carries_today_in_the_chat_time_zone_and_tools_say_what_a_date_would_be(
    devstack: DevStack, settings: Settings
) -> None:
    fake = FakeBedrock()
    await fake.start()
    zoned = settings.replace(agent_model="bedrock", bedrock_endpoint_url=fake.url, chat_time_zone="Pacific/Auckland")
    target = AwsTarget(
        region="us-east-1", endpoint_url=fake.url, access_key_id="fake-bedrock", secret_access_key="fake-bedrock"
    )
    # 20:30 UTC on Tuesday March 9 is already Wednesday March 10 in Auckland.
    now = datetime.datetime(2027, 3, 9, 20, 30, tzinfo=datetime.UTC)
    try:
        async with running_gateway(devstack, zoned, bedrock=target, clock=lambda: now) as gateway:
            fake.script(
                tool_reply("", "tooluse-9", "check_availability", ['{"check_in": "next friday", "check_out": "x"}']),
                text_reply("Which dates?"),
            )
            turn = await chat(gateway.channel, "is anything free next friday?")
    finally:
        await fake.stop()

    system = fake.requests[0]["system"][0]["text"]
    assert "Today is Wednesday, 2027-03-10 in the time zone Pacific/Auckland" in system
    [result] = _blocks(fake.requests[1]["messages"][-1], "toolResult")
    assert result["content"][0]["json"]["message"] == (
        "check_in: 'next friday' is not an ISO 8601 date YYYY-MM-DD (that would be 2027-03-12); "
        "today is 2027-03-10 (Wednesday) in Pacific/Auckland"
    )
    # The person reads what went wrong, not what the model should do about it.
    assert [t.summary for t in turn.tools] == ["the check-in date next friday was not usable (check_in)"]


async def test_a_successful_tool_result_reaches_the_model_as_json(world: BedrockWorld) -> None:
    world.fake.script(
        tool_reply("Looking.", "tooluse-p", "list_properties", ["{}"]),
        text_reply("We have the Harbor Loft."),
    )

    turn = await chat(world.gateway.channel, "what places do you have?")

    [finished] = turn.tools
    assert (finished.name, finished.ok) == ("list_properties", True)
    [result] = _blocks(world.fake.requests[1]["messages"][2], "toolResult")
    assert result["status"] == "success"
    [payload] = result["content"]
    names = {p["property_id"]: p["name"] for p in payload["json"]["properties"]}
    assert names["harbor-loft"] == "Harbor Loft"
    assert turn.text == "Looking.We have the Harbor Loft."


async def test_signing_in_through_the_model_delivers_tokens_on_the_stream_never_to_the_model(
    world: BedrockWorld,
) -> None:
    email = new_email("bedrock")
    world.fake.script(
        tool_reply("Sending a code.", "tu-login", "start_login", [json.dumps({"email": email, "name": "Ann Lee"})]),
        text_reply("Please type the code."),
    )
    first = await chat(world.gateway.channel, f"I'm Ann Lee, {email}")
    session_id = first.session_id
    assert [(t.name, t.ok) for t in first.tools] == [("start_login", True)]
    code = mailed_code(world.gateway, email)

    world.fake.script(
        tool_reply("Checking.", "tu-verify", "verify_code", [json.dumps({"code": code})]),
        text_reply("You are signed in."),
    )
    second = await chat(world.gateway.channel, f"the code is {code}", session_id)
    delivery = second.token_delivery
    assert delivery is not None
    assert [(t.name, t.ok) for t in second.tools] == [("verify_code", True)]
    [result] = _blocks(world.fake.requests[1]["messages"][-1], "toolResult")
    assert result["content"] == [{"json": {"verified": True, "guest_id": delivery.guest_id}}]

    world.fake.script(text_reply("Anything else?"))
    bearer = (("authorization", f"Bearer {delivery.access_token}"),)
    await chat(world.gateway.channel, "thanks", session_id, bearer)
    later = json.dumps(world.fake.requests[-1])
    assert f"signed in as guest {delivery.guest_id}" in later

    # Nothing the model was ever sent holds a token; the code is gone from the stored conversation.
    sent_to_model = json.dumps(world.fake.requests)
    for token in (delivery.access_token, delivery.id_token, delivery.refresh_token):
        assert token not in sent_to_model
    assert code not in later
    assert "[redacted]" in later


async def test_a_code_typed_when_no_sign_in_is_pending_never_reaches_the_model(world: BedrockWorld) -> None:
    world.fake.script(text_reply("Noted."))
    await chat(world.gateway.channel, "my code is 73914628, what now?")
    sent = json.dumps(world.fake.requests)
    assert "73914628" not in sent
    assert "my code is [redacted], what now?" in sent


async def test_digits_inside_an_email_address_reach_the_model_whole(world: BedrockWorld) -> None:
    world.fake.script(text_reply("Noted."))
    await chat(world.gateway.channel, "I'm Jane Roe, jane.19851231@example.com, and 12345678 is my code")
    sent = json.dumps(world.fake.requests)
    assert "jane.19851231@example.com" in sent
    assert "12345678" not in sent


@pytest.mark.parametrize(
    "parts",
    [['{"check_in": "2030-01-01", '], ["[" * 3000, "]" * 3000]],
    ids=["cut-short", "nested-3000-deep"],
)
async def test_tool_input_that_is_not_json_is_a_failed_result_the_model_reads(
    world: BedrockWorld, parts: list[str]
) -> None:
    world.fake.script(
        tool_reply("Checking.", "tu-bad", "check_availability", parts),
        text_reply("Sorry, let me try again."),
    )

    turn = await chat(world.gateway.channel, "is anything free?")

    assert [(t.name, t.ok) for t in turn.tools] == [("check_availability", False)]
    [result] = _blocks(world.fake.requests[1]["messages"][-1], "toolResult")
    assert result["content"] == [
        {"json": {"error": "INVALID_ARGUMENT", "message": "the arguments are not valid JSON; send a JSON object"}}
    ]
    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN


async def test_the_next_turn_sends_the_whole_conversation_with_roles_alternating(world: BedrockWorld) -> None:
    world.fake.script(
        tool_reply("One moment.", "tooluse-a", "verify_code", ['{"code": "12"}']),
        text_reply("That code looks too short."),
        text_reply("Sure."),
    )
    first = await chat(world.gateway.channel, "my code is 12")
    await chat(world.gateway.channel, "ok", session_id=first.session_id)

    last = world.fake.requests[-1]
    roles = [m["role"] for m in last["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    # Tool results and the next message travel together in one user message.
    assert _blocks(last["messages"][4], "text") == ["ok"]
    assert _blocks(last["messages"][2], "toolResult")[0]["toolUseId"] == "tooluse-a"


def _upstream_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str, str]]:
    """(level, message, service, error) of the shared AWS translator's log lines."""
    return [
        (r.levelname, r.getMessage(), getattr(r, "service", ""), getattr(r, "error", ""))
        for r in caplog.records
        if r.name == "gateway.adapters._upstream"
    ]


async def test_an_endpoint_that_fails_ends_the_turn_with_model_error(
    world: BedrockWorld, caplog: pytest.LogCaptureFixture
) -> None:
    # botocore retries a 503 once; both attempts fail.
    world.fake.script(error_reply(503, "ServiceUnavailableException"), error_reply(503, "ServiceUnavailableException"))

    with caplog.at_level(logging.WARNING, logger="gateway.adapters._upstream"):
        turn = await chat(world.gateway.channel, "hello")

    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_MODEL_ERROR
    assert turn.kinds == ["session_started", "turn_complete"]
    assert len(world.fake.requests) == 2
    assert _upstream_logs(caplog) == [("WARNING", "upstream failed", "bedrock-runtime", "ServiceUnavailableException")]


async def test_a_refused_model_call_ends_the_turn_with_model_error_and_an_error_log_without_the_message(
    world: BedrockWorld, caplog: pytest.LogCaptureFixture
) -> None:
    # Not retried by botocore: access denied (or an unknown model id) is the operator's to fix.
    world.fake.script(error_reply(403, "AccessDeniedException"))

    with caplog.at_level(logging.WARNING, logger="gateway.adapters._upstream"):
        turn = await chat(world.gateway.channel, "hello")

    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_MODEL_ERROR
    assert _upstream_logs(caplog) == [
        ("ERROR", "unexpected upstream error", "bedrock-runtime", "AccessDeniedException")
    ]
    assert "scripted failure" not in caplog.text  # AWS's message is never logged


async def test_a_failure_inside_the_stream_keeps_the_text_sent_and_ends_with_model_error(
    world: BedrockWorld, caplog: pytest.LogCaptureFixture
) -> None:
    world.fake.script(
        Reply(
            [
                encode_event("messageStart", {"role": "assistant"}),
                encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello, I"}}),
                encode_exception("throttlingException", "Too many tokens, please wait before trying again."),
            ]
        ),
        text_reply("Hello again."),
    )

    with caplog.at_level(logging.WARNING, logger="gateway.adapters._upstream"):
        turn = await chat(world.gateway.channel, "hello")
    assert turn.text == "Hello, I"
    assert turn.complete.stop_reason == chat_pb2.STOP_REASON_MODEL_ERROR
    # An exception inside a stream Bedrock opened with HTTP 200 is recognised by its name: throttling.
    assert _upstream_logs(caplog) == [("WARNING", "upstream throttling", "bedrock-runtime", "throttlingException")]

    # The partial reply is part of the conversation the model reads next time.
    await chat(world.gateway.channel, "hello?", session_id=turn.session_id)
    messages = world.fake.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert _blocks(messages[1], "text") == ["Hello, I"]


async def test_a_client_cancelling_closes_the_upstream_model_stream(world: BedrockWorld) -> None:
    reply = text_reply("Let ", "me ", "think ", "about ", "that.")
    reply.hold_after = 2  # messageStart and the first delta, then the model keeps "thinking"
    world.fake.script(reply)

    call = stub(world.gateway.channel).Chat(chat_pb2.ChatRequest(message="hello"), timeout=30)
    seen: list[chat_pb2.ChatEvent] = []
    async for response in call:
        seen.append(response.event)
        if response.event.WhichOneof("kind") == "text_delta":
            break
    call.cancel()

    await asyncio.wait_for(world.fake.closed_by_client.wait(), timeout=10)
    await eventually(lambda: world.gateway.app.chat.load.open == 0, timeout_seconds=5)
    assert world.gateway.app.chat.load.open == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("chat-turn-")]
    assert Turn(seen).text == "Let "


async def test_more_chats_than_a_small_connection_pool_stream_from_the_model_at_once(world: BedrockWorld) -> None:
    # A streaming round holds its HTTP connection to Bedrock until its last event. With botocore's pool at 64
    # connections (the gateway's setting before), the 65th chat at once waited for a whole answer to end before
    # its model round even started. The pool is now as large as the calls the gateway admits.
    count = 80
    replies = []
    for n in range(count):
        reply = text_reply(f"reply {n} ", "and more")
        reply.hold_after = 2  # messageStart and the first delta, then the model keeps "thinking"
        replies.append(reply)
    world.fake.script(*replies)

    async def first_text(call: Any) -> str:
        async for response in call:
            if response.event.WhichOneof("kind") == "text_delta":
                return str(response.event.text_delta.text)
        raise AssertionError("the stream ended before any text")

    calls = [
        stub(world.gateway.channel).Chat(chat_pb2.ChatRequest(message=f"hello {n}"), timeout=60) for n in range(count)
    ]
    try:
        texts = await asyncio.wait_for(asyncio.gather(*(first_text(call) for call in calls)), timeout=30)
    finally:
        for call in calls:
            call.cancel()

    assert len(world.fake.requests) == count
    assert sorted(texts) == sorted(f"reply {n} " for n in range(count))
    await eventually(lambda: world.gateway.app.chat.load.open == 0, timeout_seconds=10)
