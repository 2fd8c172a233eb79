"""Operating the gateway as a person would: `gateway serve` as a subprocess, buf curl, signals, bad config."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from booking.v1 import reservations_pb2, reservations_pb2_grpc
from tests.support.buf import buf_curl, url
from tests.support.calls import NOT_SERVING, SERVING, health_status, health_watch
from tests.support.processes import GATEWAY_SCRIPT, run_to_exit, start_gateway

CONTRACT_SERVICES = {"booking.v1.AuthService", "booking.v1.ChatService", "booking.v1.ReservationService"}


async def test_serve_answers_health_and_buf_curl_lists_and_calls_through_reflection() -> None:
    gateway = await start_gateway("--log-format", "json")
    try:
        code, out, err = await buf_curl(gateway.target, "--list-services", url(gateway.target))
        assert code == 0, err
        services = set(out.split())
        assert CONTRACT_SERVICES | {"grpc.health.v1.Health"} <= services
        code, out, err = await buf_curl(gateway.target, "--list-methods", url(gateway.target))
        assert code == 0, err
        assert "booking.v1.AuthService/InitiateLogin" in out.split()
        code, out, err = await buf_curl(gateway.target, url(gateway.target, "grpc.health.v1.Health/Check"), data={})
        assert code == 0, err
        assert json.loads(out) == {"status": "SERVING"}
        assert any("local AWS emulator (moto) listening on http://127.0.0.1:" in line for line in gateway.stdout_lines)
    finally:
        await gateway.stop()
    # Logs are JSON lines.
    for line in gateway.stderr_lines:
        if line.startswith("{"):
            assert "level" in json.loads(line)


async def test_make_run_from_the_readme_starts_a_gateway_that_answers_health(repo_root: Path) -> None:
    gateway = await start_gateway(
        command=["make", "--no-print-directory", "-C", str(repo_root), "run"],
        env={"GATEWAY_LISTEN": "127.0.0.1:0", "GATEWAY_WEB_LISTEN": "127.0.0.1:0"},
        timeout=120,
    )
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            assert await health_status(channel) == SERVING
    finally:
        # make does not forward signals to its child: signal the whole group, as a terminal's Ctrl-C would.
        gateway.signal_group(signal.SIGINT)
        await gateway.wait(timeout=30)  # make itself reports the interrupt; the gateway must have drained
        assert "gateway: stopped" in gateway.stdout_lines


async def test_sigterm_turns_health_not_serving_and_exits_cleanly_within_the_grace_period() -> None:
    grace = 3.0
    gateway = await start_gateway("--grace-seconds", str(grace))
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            watch = health_watch(channel)
            first = await watch.read()
            assert isinstance(first, health_pb2.HealthCheckResponse)
            assert first.status == SERVING
            loop = asyncio.get_running_loop()
            sent_at = loop.time()
            gateway.process.send_signal(signal.SIGTERM)
            update = await asyncio.wait_for(watch.read(), 5)
            assert isinstance(update, health_pb2.HealthCheckResponse)
            assert update.status == NOT_SERVING
            code = await gateway.wait(timeout=grace + 10)
            assert code == 0
            assert loop.time() - sent_at < grace + 5
            assert "gateway: stopped" in gateway.stdout_lines
    finally:
        await gateway.stop()


@pytest.mark.parametrize(
    ("setting", "variable"),
    [
        ("--listen", "GATEWAY_LISTEN"),
        ("--web-listen", "GATEWAY_WEB_LISTEN"),
        ("--metrics-listen", "GATEWAY_METRICS_LISTEN"),
    ],
)
async def test_a_port_in_use_says_which_setting_moves_it_and_exits_non_zero(setting: str, variable: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = {"--listen": "127.0.0.1:0", "--web-listen": "127.0.0.1:0"}
        others[setting] = f"127.0.0.1:{port}"
        args = [part for pair in others.items() for part in pair]
        code, out, _ = await run_to_exit(str(GATEWAY_SCRIPT), "serve", *args)
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("gateway: error:"))
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert setting in line
    assert variable in line


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {"GATEWAY_GRACE_SECONDS": "soon"}, "GATEWAY_GRACE_SECONDS='soon'"),
        (("--max-concurrent-rpcs", "0"), {}, "--max-concurrent-rpcs='0': must be 1 or more"),
        (("--listen", "nowhere"), {}, "--listen='nowhere': expected HOST:PORT"),
        ((), {"GATEWAY_LOG_FORMAT": "xml"}, "GATEWAY_LOG_FORMAT='xml'"),
        (("--tls-cert", "/no/such/cert.pem"), {}, "--tls-cert='/no/such/cert.pem': no such file"),
        (("--listen", "0.0.0.0:0"), {}, "a non-loopback address needs TLS"),
        ((), {"GATEWAY_LOGIN_PER_PEER_LIMIT": "many"}, "GATEWAY_LOGIN_PER_PEER_LIMIT='many'"),
        (("--chat-flush-interval-ms", "100"), {}, "GATEWAY_CHAT_LATENCY_BUDGET_MS=80.0: must be at least"),
    ],
)
async def test_bad_configuration_exits_non_zero_with_one_line_naming_the_key_and_value(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    code, _, err = await run_to_exit(str(GATEWAY_SCRIPT), "serve", *args, env=env)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]


async def test_insecure_allows_a_non_loopback_address_and_says_so() -> None:
    gateway = await start_gateway("--listen", "0.0.0.0:0", "--insecure", command=None)
    try:
        # Printed right after the listening line, which start_gateway returned on.
        assert await gateway.printed(
            lambda: next((line for line in gateway.stdout_lines if "--insecure" in line), None)
        )
    finally:
        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.wait(timeout=20) == 0


def test_the_gateway_script_is_installed() -> None:
    assert os.access(GATEWAY_SCRIPT, os.X_OK)


async def test_workers_share_one_port_and_drain_together_on_sigterm() -> None:
    gateway = await start_gateway("--workers", "2", timeout=120)
    try:
        assert any("2 workers" in line for line in gateway.stdout_lines)
        # Separate connections, which the kernel spreads over the workers; every one is served.
        for _ in range(6):
            async with grpc.aio.insecure_channel(gateway.target) as channel:
                assert await health_status(channel) == SERVING
        code, out, err = await buf_curl(
            gateway.target, url(gateway.target, "booking.v1.ReservationService/ListProperties"), data={}
        )
        assert code == 0, err
        assert "harbor-loft" in out
        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.wait(timeout=60) == 0
        assert gateway.stdout_lines.count("[worker 0] gateway: stopped") == 1
        assert gateway.stdout_lines.count("[worker 1] gateway: stopped") == 1
        assert gateway.stdout_lines[-1] == "gateway: stopped"
    finally:
        await gateway.stop()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_the_gateway_serves_and_drains_on_either_event_loop(loop: str) -> None:
    gateway = await start_gateway("--event-loop", loop, "--grace-seconds", "1")
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            assert await health_status(channel) == SERVING
            stub = reservations_pb2_grpc.ReservationServiceStub(channel)
            answer = await stub.ListProperties(reservations_pb2.ListPropertiesRequest(), timeout=10)
            assert answer.properties
        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.wait(timeout=30) == 0
        assert "gateway: stopped" in gateway.stdout_lines
    finally:
        await gateway.stop()
