"""Reliability under abuse and faults, bounded in count and time, loopback only.

OTP brute force across replicas, bulk JWT fuzzing, conflicting bookings across replicas, the emulator going
away mid-run and coming back, and Cognito failing while codes are checked (no attempt is lost to an outage, and
racing guesses into an outage wins no extra ones).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import random
import secrets
import socket
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from booking.v1 import auth_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack.moto import EmulatorServer
from tests.support.auth import auth_stub, gateway_with, initiate, mailed_code, new_email, wrong_code
from tests.support.calls import SERVING, health_status
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway
from tests.support.identity import emulator_sign_in
from tests.support.reservations import create_property, days_ahead, new_request_id, night_locks
from tests.support.status import error_info, reason_of, retry_delay_seconds


@pytest.fixture(scope="module")
async def replicas(gateway: RunningGateway, settings: Settings) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    """Two replicas over the same table with production sign-in limits, trusting x-forwarded-for from loopback
    so that the attack can come from several client addresses."""
    limited = settings.replace(trusted_proxies=("127.0.0.1",), login_per_peer_limit=20, verify_per_peer_limit=30)
    async with gateway_with(gateway, limited) as one, gateway_with(gateway, limited) as two:
        yield one, two


RUN = uuid.uuid4().int % 200  # a /24 of client addresses of this run's own


def client(n: int) -> tuple[tuple[str, str], ...]:
    """Client address number `n` of the attack, as a trusted proxy reports it."""
    return (("x-forwarded-for", f"198.19.{RUN}.{n % 250 + 1}"),)


async def test_a_thousand_random_otp_guesses_across_two_replicas_never_sign_anyone_in(
    replicas: tuple[RunningGateway, RunningGateway],
) -> None:
    one, two = replicas
    emails = [new_email("victim") for _ in range(25)]
    logins = []
    for n, email in enumerate(emails):
        started = await initiate(one if n % 2 else two, email, metadata=client(n))
        logins.append(started.login_id)
    outcomes: dict[str, int] = {}
    attempts_per_login: dict[str, int] = dict.fromkeys(logins, 0)
    rng = random.Random(7)

    async def guess(n: int) -> None:
        login_id = logins[n % len(logins)]
        replica = (one, two)[n % 2]
        code = f"{rng.randrange(10**8):08d}"
        try:
            await auth_stub(replica).VerifyOtp(
                auth_pb2.VerifyOtpRequest(login_id=login_id, code=code), metadata=client(n % 20), timeout=20
            )
            outcomes["SIGNED_IN"] = outcomes.get("SIGNED_IN", 0) + 1
        except aio.AioRpcError as error:
            reason = error_info(error).reason
            outcomes[reason] = outcomes.get(reason, 0) + 1
            if reason == "OTP_INVALID":
                attempts_per_login[login_id] += 1

    for start in range(0, 1000, 50):
        await asyncio.gather(*(guess(n) for n in range(start, start + 50)))
    assert "SIGNED_IN" not in outcomes
    assert sum(outcomes.values()) == 1000
    assert set(outcomes) <= {"OTP_INVALID", "OTP_ATTEMPTS_EXHAUSTED", "RATE_LIMITED"}
    # Three wrong codes kill a login, whichever replica counted them.
    assert max(attempts_per_login.values()) <= 3
    assert outcomes.get("OTP_ATTEMPTS_EXHAUSTED", 0) > 0
    assert outcomes.get("RATE_LIMITED", 0) > 0
    # The real code of an exhausted login no longer works either.
    with pytest.raises(aio.AioRpcError) as caught:
        await auth_stub(one).VerifyOtp(
            auth_pb2.VerifyOtpRequest(login_id=logins[0], code=mailed_code(one, emails[0])),
            metadata=client(999),
            timeout=10,
        )
    assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "OTP_ATTEMPTS_EXHAUSTED")


def _mutations(token: str, rng: random.Random) -> list[str]:
    header, payload, signature = token.split(".")
    out = []
    for _ in range(600):
        chars = list(token)
        position = rng.randrange(len(chars))
        chars[position] = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
        out.append("".join(chars))
    for _ in range(400):
        out.append(token[: rng.randrange(1, len(token))])
    for _ in range(400):
        parts = [header, payload, signature]
        parts[rng.randrange(3)] = (
            base64.urlsafe_b64encode(secrets.token_bytes(rng.randrange(1, 90))).decode().rstrip("=")
        )
        out.append(".".join(parts))
    for _ in range(300):
        out.append(".".join(base64.urlsafe_b64encode(secrets.token_bytes(40)).decode() for _ in range(3)))
    for _ in range(300):
        out.append(f"{header}.{payload}.{signature}".replace(".", rng.choice([".", "..", ""]), 1))
    return [t for t in out if t != token and t.strip() and "\n" not in t]


async def test_thousands_of_mangled_tokens_are_all_refused_and_never_internal(gateway: RunningGateway) -> None:
    tokens = await emulator_sign_in(gateway.devstack)
    stub = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    mangled = _mutations(tokens.access_token, random.Random(11))
    assert len(mangled) >= 1800
    seen: dict[tuple[grpc.StatusCode, str], int] = {}

    async def attempt(token: str) -> None:
        try:
            await stub.ListReservations(
                pb.ListReservationsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=20
            )
            key = (grpc.StatusCode.OK, "")
        except aio.AioRpcError as error:
            key = reason_of(error)
        seen[key] = seen.get(key, 0) + 1

    for start in range(0, len(mangled), 100):
        await asyncio.gather(*(attempt(t) for t in mangled[start : start + 100]))
    allowed_unavailable = (grpc.StatusCode.UNAVAILABLE, "JWKS_UNAVAILABLE")  # a mangled kid, inside the interval
    for (code, reason), count in seen.items():
        assert code is grpc.StatusCode.UNAUTHENTICATED or (code, reason) == allowed_unavailable, (code, reason, count)
    assert await health_status(gateway.channel) == SERVING
    # The genuine token still works.
    await stub.ListReservations(pb.ListReservationsRequest(), metadata=tokens.bearer(), timeout=10)


async def test_two_hundred_conflicting_bookings_across_two_replicas_leave_no_overlap_and_no_orphans(
    gateway: RunningGateway, settings: Settings, aws: AwsClients, small_table: str
) -> None:
    table = small_table
    own = settings.replace(table_name=table)
    async with gateway_with(gateway, own) as one, gateway_with(gateway, own) as two:
        await _two_hundred_bookings(one, two, aws, table)


async def _two_hundred_bookings(one: RunningGateway, two: RunningGateway, aws: AwsClients, table: str) -> None:
    prop = await create_property(aws.dynamodb, table, capacity=4, nightly_rate_cents=10_000)
    guests = [await emulator_sign_in(one.devstack) for _ in range(4)]
    rng = random.Random(5)
    winners: list[pb.Reservation] = []
    refusals: dict[str, int] = {}

    async def book(n: int) -> None:
        first = 10 + rng.randrange(12)
        nights = 1 + rng.randrange(4)
        stub = reservations_pb2_grpc.ReservationServiceStub((one, two)[n % 2].channel)
        request = pb.CreateReservationRequest(
            property_id=prop.property_id,
            check_in=days_ahead(first).isoformat(),
            check_out=days_ahead(first + nights).isoformat(),
            guests=1,
            request_id=new_request_id(),
        )
        try:
            answer = await stub.CreateReservation(request, metadata=guests[n % 4].bearer(), timeout=60)
            winners.append(answer.reservation)
        except aio.AioRpcError as error:
            reason = reason_of(error)[1]
            refusals[reason] = refusals.get(reason, 0) + 1

    await asyncio.gather(*(book(n) for n in range(200)))
    assert len(winners) + sum(refusals.values()) == 200
    assert set(refusals) <= {"NIGHTS_TAKEN"}
    held: dict[datetime.date, str] = {}
    for reservation in winners:
        night = datetime.date.fromisoformat(reservation.check_in)
        while night < datetime.date.fromisoformat(reservation.check_out):
            assert night not in held, "two reservations hold one night"
            held[night] = reservation.reservation_id
            night += datetime.timedelta(days=1)
    # Every lock belongs to a winner and every winner's night is locked: no orphans, nothing missing.
    assert await night_locks(aws.dynamodb, table, prop.property_id) == held


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_when_the_emulator_goes_away_calls_fail_unavailable_in_time_and_recover_when_it_returns(
    gateway: RunningGateway, settings: Settings
) -> None:
    port = _free_port()
    emulator = EmulatorServer("127.0.0.1", port)
    emulator.start()
    target = gateway.devstack.endpoints.target
    local = type(target)(
        region=target.region,
        endpoint_url=emulator.url,
        access_key_id=target.access_key_id,
        secret_access_key=target.secret_access_key,
        timeout_seconds=2.0,
    )
    try:
        async with gateway_with(gateway, settings, target=local, aws_endpoint_url=emulator.url) as replica:
            stub = reservations_pb2_grpc.ReservationServiceStub(replica.channel)
            assert (await stub.ListProperties(pb.ListPropertiesRequest(), timeout=10)).properties
            emulator.stop()
            for call in (
                stub.ListProperties(pb.ListPropertiesRequest(), timeout=15),
                auth_stub(replica).InitiateLogin(auth_pb2.InitiateLoginRequest(email=new_email()), timeout=15),
            ):
                with pytest.raises(aio.AioRpcError) as caught:
                    await call
                assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
                assert (retry_delay_seconds(caught.value) or 0) > 0
            assert await health_status(replica.channel) == SERVING
            emulator = EmulatorServer("127.0.0.1", port)
            emulator.start()
            assert (await stub.ListProperties(pb.ListPropertiesRequest(), timeout=10)).properties
    finally:
        emulator.stop()


CHECK_CODE = "AdminRespondToAuthChallenge"


@pytest.fixture
async def flaky_cognito(
    gateway: RunningGateway, settings: Settings
) -> AsyncIterator[tuple[RunningGateway, FaultyDynamo]]:
    """A gateway whose Cognito calls pass through the fault proxy (DynamoDB's go straight to the emulator)."""
    target = gateway.devstack.endpoints.target
    async with FaultyDynamo(target.cognito_endpoint_url or target.endpoint_url or "") as proxy:
        flaky = dataclasses.replace(target, cognito_endpoint_url=proxy.url)
        async with gateway_with(gateway, settings, target=flaky) as replica:
            yield replica, proxy


async def _verify_outcome(replica: RunningGateway, login_id: str, code: str) -> tuple[str, str]:
    """(reason, attempts_left) of a VerifyOtp, ("SIGNED_IN", "") when it succeeds."""
    try:
        await auth_stub(replica).VerifyOtp(auth_pb2.VerifyOtpRequest(login_id=login_id, code=code), timeout=20)
    except aio.AioRpcError as error:
        failed = error
    else:
        return "SIGNED_IN", ""
    info = error_info(failed)
    if info.reason == "UPSTREAM_UNAVAILABLE":
        assert failed.code() is grpc.StatusCode.UNAVAILABLE
        assert (retry_delay_seconds(failed) or 0) > 0
    return info.reason, info.metadata.get("attempts_left", "")


async def test_a_code_check_cognito_never_answered_costs_no_attempt_and_the_code_works_afterwards(
    flaky_cognito: tuple[RunningGateway, FaultyDynamo],
) -> None:
    replica, proxy = flaky_cognito
    email = new_email("outage")
    started = await initiate(replica, email)
    code = mailed_code(replica, email)
    assert await _verify_outcome(replica, started.login_id, wrong_code(code)) == ("OTP_INVALID", "2")
    # More failed checks than the login has attempts: a 5xx, throttling, a dropped connection, then 5xx again.
    faults = ("fail_before", "throttle", "drop_before", "fail_before", "fail_before")
    proxy.inject(CHECK_CODE, *faults)
    for _ in faults:
        assert await _verify_outcome(replica, started.login_id, code) == ("UPSTREAM_UNAVAILABLE", "")
    assert proxy.pending(CHECK_CODE) == 0
    # Only the wrong code counted: two attempts are left, and the right code still signs in.
    assert await _verify_outcome(replica, started.login_id, wrong_code(code)) == ("OTP_INVALID", "1")
    assert await _verify_outcome(replica, started.login_id, code) == ("SIGNED_IN", "")


async def test_racing_wrong_codes_into_a_cognito_outage_gets_no_more_guesses_judged_than_the_login_allows(
    flaky_cognito: tuple[RunningGateway, FaultyDynamo],
) -> None:
    replica, proxy = flaky_cognito
    email = new_email("racer")
    started = await initiate(replica, email)
    code = mailed_code(replica, email)
    # Half of the checks fail at Cognito; the attempts they held are given back while the others race on.
    proxy.inject(CHECK_CODE, *(["fail_before", "throttle"] * 15))
    rng = random.Random(3)
    guesses = {f"{rng.randrange(10**8):08d}" for _ in range(60)} - {code}
    outcomes = await asyncio.gather(*(_verify_outcome(replica, started.login_id, guess) for guess in guesses))
    reasons = [reason for reason, _ in outcomes]
    assert set(reasons) <= {"OTP_INVALID", "UPSTREAM_UNAVAILABLE", "OTP_ATTEMPTS_EXHAUSTED"}
    assert reasons.count("UPSTREAM_UNAVAILABLE") > 0
    # Cognito judged at most three wrong codes, however the calls raced.
    assert reasons.count("OTP_INVALID") <= 3
    judged = proxy.seen.count(CHECK_CODE) - (30 - proxy.pending(CHECK_CODE))
    assert judged == reasons.count("OTP_INVALID")
    proxy.clear(CHECK_CODE)
    if reasons.count("OTP_INVALID") == 3:
        assert (await _verify_outcome(replica, started.login_id, code))[0] == "OTP_ATTEMPTS_EXHAUSTED"
    else:
        assert (await _verify_outcome(replica, started.login_id, code))[0] == "SIGNED_IN"
