"""Durable chat turns on the web face (the Connect protocol by hand): keep_running, ResumeChat, CancelTurn."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from booking.v1 import chat_pb2
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.testing.connect import CONNECT_STREAM_HEADERS, END_STREAM, envelope, envelopes
from tests.rpc.test_chat_durable import HELP, without_tokens
from tests.support.chat import Turn, chat
from tests.support.gateway import RunningGateway, running_gateway

CONNECT_JSON = {"content-type": "application/json", "connect-protocol-version": "1"}


@pytest.fixture(scope="module")
async def typing_gateway(devstack: DevStack, settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(devstack, settings.replace(scripted_delta_delay_ms=30.0)) as running:
        yield running


class ConnectError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.code = error.get("code")
        self.reason = ""
        for detail in error.get("details", []):
            if detail.get("type") == "google.rpc.ErrorInfo":
                value = detail["value"]
                raw = base64.b64decode(value + "=" * (-len(value) % 4))
                self.reason = error_details_pb2.ErrorInfo.FromString(raw).reason


async def stream(web: str, method: str, request: Message, *, stop_after: int | None = None) -> list[chat_pb2.ChatEvent]:
    """A server-streaming call over Connect; cut (the connection closed) after `stop_after` events."""
    events: list[chat_pb2.ChatEvent] = []
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(
            f"{web}/booking.v1.ChatService/{method}",
            data=envelope(request.SerializeToString()),
            headers=CONNECT_STREAM_HEADERS,
        ) as response,
    ):
        assert response.status == 200
        async for flags, payload in envelopes(response.content):
            if flags & END_STREAM:
                end = json.loads(payload)
                if "error" in end:
                    raise ConnectError(end["error"])
                return events
            events.append(chat_pb2.ResumeChatResponse.FromString(payload).event)
            if stop_after is not None and len(events) >= stop_after:
                return events
    return events


async def cancel_turn(web: str, session_id: str, token: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(
            f"{web}/booking.v1.ChatService/CancelTurn",
            json={"sessionId": session_id, "resumeToken": token},
            headers=CONNECT_JSON,
        ) as response,
    ):
        body: dict[str, Any] = await response.json()
        if response.status != 200:
            raise ConnectError(body)
        return body


async def test_a_kept_turn_cut_on_the_web_face_resumes_whole_there(typing_gateway: RunningGateway) -> None:
    web = typing_gateway.web_url
    reference = await chat(typing_gateway.channel, HELP)
    first = await stream(web, "Chat", chat_pb2.ChatRequest(message=HELP, keep_running=True), stop_after=3)
    started = first[0].session_started
    assert started.resume_token
    rest = await stream(
        web,
        "ResumeChat",
        chat_pb2.ResumeChatRequest(
            session_id=started.session_id, after_sequence=first[-1].sequence, resume_token=started.resume_token
        ),
    )
    whole = Turn(without_tokens(first + rest))
    assert whole.sequences == list(range(1, len(whole.events) + 1))
    assert whole.text == reference.text
    assert whole.complete.stop_reason == chat_pb2.STOP_REASON_END_TURN


async def test_cancel_turn_on_the_web_face_stops_the_turn_and_errors_carry_their_reason(
    typing_gateway: RunningGateway,
) -> None:
    web = typing_gateway.web_url
    first = await stream(web, "Chat", chat_pb2.ChatRequest(message=HELP, keep_running=True), stop_after=2)
    started = first[0].session_started
    assert (await cancel_turn(web, started.session_id, started.resume_token)) == {"cancelled": True}
    rest = Turn(
        await stream(
            web,
            "ResumeChat",
            chat_pb2.ResumeChatRequest(
                session_id=started.session_id, after_sequence=first[-1].sequence, resume_token=started.resume_token
            ),
        )
    )
    assert rest.complete.stop_reason == chat_pb2.STOP_REASON_CANCELLED
    assert (await cancel_turn(web, started.session_id, started.resume_token)) == {}
    with pytest.raises(ConnectError) as caught:
        await cancel_turn(web, started.session_id, "z" * 43)
    assert (caught.value.code, caught.value.reason) == ("permission_denied", "RESUME_TOKEN_INVALID")
    with pytest.raises(ConnectError) as caught_stream:
        await stream(
            web,
            "ResumeChat",
            chat_pb2.ResumeChatRequest(
                session_id=started.session_id, after_sequence=10_000, resume_token=started.resume_token
            ),
        )
    assert (caught_stream.value.code, caught_stream.value.reason) == ("invalid_argument", "RESUME_SEQUENCE_AHEAD")
