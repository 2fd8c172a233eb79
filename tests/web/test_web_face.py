"""The web face as HTTP: the browser chat's files, the health probe, TLS, drain on SIGTERM, its settings.

RPC behaviour over Connect and gRPC-Web is tested from Node (`test_wire.py`), with the client browsers use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from booking.v1 import chat_pb2
from gateway.app import gateway_server
from gateway.config import Settings
from gateway.testing import CONNECT_STREAM_HEADERS, END_STREAM, envelope, envelopes, eventually
from tests.rpc.test_tls import self_signed
from tests.support.calls import NOT_SERVING, SERVING, health_status
from tests.support.gateway import RunningGateway
from tests.support.processes import GATEWAY_SCRIPT, run_to_exit, start_gateway

TIMEOUT = aiohttp.ClientTimeout(total=10)
DRAINING = "gateway: draining"  # what `serve` prints once it has taken the first signal


async def get(url: str, **kwargs: object) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.get(url, **kwargs) as response,  # type: ignore[arg-type]
    ):
        return response.status, dict(response.headers), await response.text()


async def test_the_browser_chat_is_served_from_the_web_face_under_a_strict_content_security_policy(
    gateway: RunningGateway,
) -> None:
    status, headers, body = await get(f"{gateway.web_url}/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert 'data-testid="chat-input"' in body
    assert 'data-testid="send-button"' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, _ = await get(f"{gateway.web_url}/favicon.svg")
    assert status == 200
    status, _, _ = await get(f"{gateway.web_url}/no-such-file.js")
    assert status == 404


async def test_healthz_reports_the_same_state_as_grpc_health(gateway: RunningGateway) -> None:
    status, _, body = await get(f"{gateway.web_url}/healthz")
    assert (status, body) == (200, "SERVING")
    assert await health_status(gateway.channel) == SERVING


async def test_tls_applies_to_the_web_face_with_the_same_certificate(
    tmp_path: Path, gateway: RunningGateway, settings: Settings
) -> None:
    cert, key = self_signed(tmp_path)
    tls_settings = settings.replace(tls_cert=cert, tls_key=key)
    app = dataclasses.replace(gateway.app, settings=tls_settings)
    async with gateway_server(app, tls_settings) as server:
        assert server.web_url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        status, _, body = await get(f"https://localhost:{server.web_port}/healthz", ssl=trusted)
        assert (status, body) == (200, "SERVING")
        with pytest.raises(aiohttp.ClientError):
            await get(f"http://127.0.0.1:{server.web_port}/healthz")


async def test_no_web_serves_the_grpc_face_alone(gateway: RunningGateway, settings: Settings) -> None:
    without = settings.replace(no_web=True)
    app = dataclasses.replace(gateway.app, settings=without)
    async with gateway_server(app, without) as server:
        assert server.web is None
        assert server.web_url == ""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert await health_status(channel) == SERVING


async def test_sigterm_turns_both_faces_not_serving_then_exits() -> None:
    gateway = await start_gateway("--drain-delay-seconds", "1", "--grace-seconds", "2")
    try:
        web = await gateway.web_url()
        assert (await get(f"{web}/healthz"))[::2] == (200, "SERVING")
        gateway.process.send_signal(signal.SIGTERM)

        async def not_serving() -> bool:
            return (await get(f"{web}/healthz"))[0] == 503

        await eventually(not_serving, timeout_seconds=5, what="/healthz answering 503")
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            assert await health_status(channel) == NOT_SERVING
        assert await gateway.wait(timeout=15) == 0
        assert "gateway: stopped" in gateway.stdout_lines
    finally:
        await gateway.stop()


async def connect_chat_stream(web: str, message: str) -> AsyncIterator[chat_pb2.ChatEvent]:
    """A Chat call over the Connect protocol by hand (5-byte envelopes): each event as it arrives."""
    body = chat_pb2.ChatRequest(message=message).SerializeToString()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(
            f"{web}/booking.v1.ChatService/Chat", data=envelope(body), headers=CONNECT_STREAM_HEADERS
        ) as response,
    ):
        assert response.status == 200
        async for flags, payload in envelopes(response.content):
            if flags & END_STREAM:  # {} or {"error": ...}
                assert payload == b"{}", payload
                return
            yield chat_pb2.ChatResponse.FromString(payload).event


async def test_sigterm_lets_an_open_web_stream_finish_then_exits() -> None:
    # The scripted agent types its greeting a word every 40 ms: the turn is still going when SIGTERM arrives.
    gateway = await start_gateway("--scripted-delta-delay-ms", "40", "--grace-seconds", "20")
    try:
        web = await gateway.web_url()
        events = connect_chat_stream(web, "hello")
        kinds = [(await anext(events)).WhichOneof("kind"), (await anext(events)).WhichOneof("kind")]
        assert kinds == ["session_started", "text_delta"]
        gateway.process.send_signal(signal.SIGTERM)
        rest = [event async for event in events]
        assert rest[-1].WhichOneof("kind") == "turn_complete"
        assert rest[-1].turn_complete.stop_reason == chat_pb2.STOP_REASON_END_TURN
        assert await gateway.wait(timeout=30) == 0
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(f"{web}/healthz")
    finally:
        await gateway.stop()


async def test_a_second_sigterm_ends_an_open_web_stream_at_once_with_canceled_and_nothing_logged_as_an_error() -> None:
    gateway = await start_gateway("--scripted-delta-delay-ms", "200", "--grace-seconds", "60")
    try:
        web = await gateway.web_url()
        body = chat_pb2.ChatRequest(message="what can you do?").SerializeToString()
        headers = {"content-type": "application/connect+proto", "connect-protocol-version": "1"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.post(
                f"{web}/booking.v1.ChatService/Chat", data=struct.pack(">BI", 0, len(body)) + body, headers=headers
            ) as response,
        ):
            first = await response.content.readexactly(5)
            await response.content.readexactly(struct.unpack(">BI", first)[1])  # session_started
            gateway.process.send_signal(signal.SIGTERM)
            # The second signal only counts as one once the first has been taken: the gateway says so.
            await gateway.printed(lambda: next((line for line in gateway.stdout_lines if DRAINING in line), None))
            gateway.process.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(response.content.read(), 10)
        # The last envelope is the end-of-stream message (flag 0x02) with Connect's "canceled" error.
        while rest:
            flags, length = struct.unpack(">BI", rest[:5])
            payload, rest = rest[5 : 5 + length], rest[5 + length :]
        assert flags & 0x02
        assert json.loads(payload)["error"]["code"] == "canceled"
        assert await gateway.wait(timeout=30) == 0
        logged = [json.loads(line) for line in gateway.stderr_lines if line.startswith("{")]
        assert [e for e in logged if e["level"] in ("ERROR", "CRITICAL") or "exception" in e] == []
    finally:
        await gateway.stop()


async def test_a_web_port_in_use_is_a_clear_error_and_a_non_zero_exit() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, _ = await run_to_exit(
            str(GATEWAY_SCRIPT), "serve", "--listen", "127.0.0.1:0", "--web-listen", f"127.0.0.1:{port}"
        )
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port} (web face)" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--web-listen", "0.0.0.0:0"), "GATEWAY_WEB_LISTEN='0.0.0.0:0': a non-loopback address needs TLS"),
        (("--web-listen", "nowhere"), "--web-listen='nowhere': expected HOST:PORT"),
        (("--web-allowed-origin", "chat.example.com"), "is not an origin like https://chat.example.com"),
        (("--web-allowed-origin", "https://a.example", "--web-allowed-origin", "ftp://b"), "'ftp://b' is not"),
        (("--web-static-dir", "/no/such/dir"), "--web-static-dir='/no/such/dir': no such directory"),
    ],
)
async def test_bad_web_settings_stop_the_start_with_one_line(args: tuple[str, ...], expected: str) -> None:
    code, _, err = await run_to_exit(str(GATEWAY_SCRIPT), "serve", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]


def test_allowed_origins_repeat_or_come_as_a_comma_list_and_are_normalised() -> None:
    flags = Settings.load({}, ["--web-allowed-origin", "https://A.example/", "--web-allowed-origin", "http://b:3000"])
    assert flags.transport.web_allowed_origin == ("https://a.example", "http://b:3000")
    env = Settings.load({"GATEWAY_WEB_ALLOWED_ORIGIN": "https://a.example, http://b:3000"})
    assert env.transport.web_allowed_origin == flags.transport.web_allowed_origin


async def test_workers_share_the_web_port_too() -> None:
    gateway = await start_gateway("--workers", "2", timeout=120)
    try:
        web = await gateway.web_url()
        assert sum("browser chat: open" in line for line in gateway.stdout_lines) == 1
        for _ in range(6):  # separate connections, spread over the workers by the kernel
            assert (await get(f"{web}/healthz"))[::2] == (200, "SERVING")
        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.wait(timeout=60) == 0
    finally:
        await gateway.stop()
