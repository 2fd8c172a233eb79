"""Only a process that runs the emulator can make a gateway trust the emulator's signing key, and only down a pipe.

moto signs every emulated pool's tokens with a key whose private half is public. Gateways started here are real
`gateway serve` subprocesses pointed at the session's emulator (its JWKS on loopback), as `--workers` and the
scale-out tests start them; what differs is only how (and whether) trust is handed to them.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from grpc import aio

from booking.v1 import auth_pb2, auth_pb2_grpc, reservations_pb2, reservations_pb2_grpc
from gateway.config import DEVSTACK_TRUST_FD_VARIABLE, Settings
from gateway.devstack import DevStack, trust
from tests.scaleout.replicas import START_TIMEOUT_SECONDS, replica_environment, start_replica
from tests.support.identity import Tokens, emulator_sign_in
from tests.support.processes import GatewayProcess, start_gateway
from tests.support.status import reason_of

REFUSED = "devstack trust hand-off refused"
TRUSTED = "devstack trust handed down"


async def list_reservations(target: str, tokens: Tokens) -> tuple[grpc.StatusCode, str]:
    """(code, reason) of a REQUIRED call with the emulator's access token; reason "" when it passes."""
    async with aio.insecure_channel(target) as channel:
        stub = reservations_pb2_grpc.ReservationServiceStub(channel)
        try:
            await stub.ListReservations(
                reservations_pb2.ListReservationsRequest(), metadata=tokens.bearer(), timeout=10
            )
        except aio.AioRpcError as error:
            return reason_of(error)
    return grpc.StatusCode.OK, ""


@asynccontextmanager
async def gateway_with(env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> AsyncIterator[GatewayProcess]:
    """A `gateway serve` over the session's emulator with this environment and these inherited descriptors."""
    process = await start_gateway("--log-format", "json", env=env, pass_fds=pass_fds, timeout=START_TIMEOUT_SECONDS)
    try:
        yield process
    finally:
        await process.stop()


def logged(process: GatewayProcess, text: str) -> int:
    return sum(text in line for line in process.stderr_lines)


async def test_the_old_worker_marker_variable_no_longer_makes_a_gateway_trust_the_emulators_key(
    devstack: DevStack, settings: Settings
) -> None:
    tokens = await emulator_sign_in(devstack)
    env = {**replica_environment(settings), "GATEWAY_INTERNAL_DEVSTACK_WORKER": "1"}
    async with gateway_with(env) as gateway:
        assert await list_reservations(gateway.target, tokens) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
        assert logged(gateway, TRUSTED) == 0


async def test_the_trust_pointer_without_the_emulators_secret_is_refused(
    devstack: DevStack, settings: Settings, tmp_path: Path
) -> None:
    tokens = await emulator_sign_in(devstack)
    # A pipe with 32 bytes the emulator does not know; a file a deployment could mount with the real secret's size.
    read_end, write_end = os.pipe()
    os.write(write_end, secrets.token_bytes(trust.SECRET_BYTES))
    os.close(write_end)
    mounted = tmp_path / "secret"
    mounted.write_bytes(secrets.token_bytes(trust.SECRET_BYTES))
    file_fd = os.open(mounted, os.O_RDONLY)
    try:
        for fd in (read_end, file_fd):
            env = {**replica_environment(settings), DEVSTACK_TRUST_FD_VARIABLE: str(fd)}
            async with gateway_with(env, (fd,)) as gateway:
                code_reason = await list_reservations(gateway.target, tokens)
                assert code_reason == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"), fd
                assert logged(gateway, REFUSED) == 1
        # A standard stream never counts, whatever it carries.
        env = {**replica_environment(settings), DEVSTACK_TRUST_FD_VARIABLE: "0"}
        async with gateway_with(env) as gateway:
            assert await list_reservations(gateway.target, tokens) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    finally:
        os.close(read_end)
        os.close(file_fd)


async def test_a_gateway_handed_the_secret_by_the_process_running_the_emulator_trusts_its_key(
    devstack: DevStack, settings: Settings
) -> None:
    tokens = await emulator_sign_in(devstack)
    replica = await start_replica(settings)
    try:
        assert await list_reservations(replica.target, tokens) == (grpc.StatusCode.OK, "")
        assert logged(replica, TRUSTED) == 1
    finally:
        await replica.stop()


MAILBOX = re.compile(r"\[dev mailbox\] code for \S+: (\d+)$")


async def sign_in_over_the_wire(gateway: GatewayProcess, email: str) -> auth_pb2.TokenDelivery:
    """InitiateLogin, the code from the console, VerifyOtp: the tokens the gateway delivers."""
    async with aio.insecure_channel(gateway.target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        started = await stub.InitiateLogin(auth_pb2.InitiateLoginRequest(email=email, name="Worker Test"), timeout=30)

        def code() -> str | None:
            return next((m.group(1) for line in gateway.stdout_lines if (m := MAILBOX.search(line))), None)

        verified = await stub.VerifyOtp(
            auth_pb2.VerifyOtpRequest(login_id=started.login_id, code=await gateway.printed(code)), timeout=30
        )
    return verified.token_delivery


async def test_gateway_serve_with_two_workers_on_the_devstack_hands_both_the_trust_and_accepts_its_tokens() -> None:
    gateway = await start_gateway("--workers", "2", "--log-format", "json", timeout=120)
    try:
        await gateway.printed(lambda: logged(gateway, TRUSTED) == 2 or None, timeout=30)
        tokens = await sign_in_over_the_wire(gateway, f"workers-{secrets.token_hex(4)}@example.com")
        bearer = Tokens(tokens.access_token, tokens.id_token, tokens.refresh_token)
        for _ in range(6):  # separate connections, spread over the workers by the kernel
            assert await list_reservations(gateway.target, bearer) == (grpc.StatusCode.OK, "")
        assert logged(gateway, REFUSED) == 0
        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.wait(timeout=60) == 0
    finally:
        await gateway.stop()
