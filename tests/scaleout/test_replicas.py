"""Scale-out: three `gateway serve` processes over one emulator, one client channel balancing round robin.

The seed's journey (InitiateLogin, VerifyOtp with the code from the dev mailbox, chat turns that book, SignOut)
works with every step on another replica than the step before; which replica served a call is read from that
replica's own JSON access log, by the request id the client sent. A sign-out on one replica is honoured by the
others within their revocation poll interval, though each had verified and cached the token before.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2

from booking.v1 import auth_pb2, auth_pb2_grpc, chat_pb2, reservations_pb2, reservations_pb2_grpc
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from gateway.devstack import DevStack
from gateway.devstack.bootstrap import ensure_table
from gateway.testing import eventually
from gateway.transport.pipeline import REQUEST_ID_HEADER
from tests.scaleout.replicas import running_replicas, served_by
from tests.support.auth import new_email
from tests.support.calls import SERVING
from tests.support.chat import Turn, decision, stub
from tests.support.processes import GatewayProcess
from tests.support.reservations import create_property, days_ahead
from tests.support.status import reason_of

pytestmark = pytest.mark.slow

REPLICAS = 3
REVOCATION_POLL_SECONDS = 0.5
# Generous: a replica picks a sign-out up at its next poll, which a loaded machine may delay by seconds.
REVOCATION_WAIT_SECONDS = 30.0
ROUND_ROBIN = [("grpc.lb_policy_name", "round_robin")]
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
async def table(aws: AwsClients) -> AsyncIterator[str]:
    """A table of this module's own (bookings are transactions; the emulator copies the table for each)."""
    name = f"booking-gateway-scaleout-{uuid.uuid4().hex[:8]}"
    await ensure_table(aws, name)
    try:
        yield name
    finally:
        await aws.dynamodb.delete_table(TableName=name)


@pytest.fixture(scope="module")
async def replicas(settings: Settings, table: str) -> AsyncIterator[list[GatewayProcess]]:
    """Three replicas on one table of the emulator, polling sign-outs twice a second."""
    own = settings.replace(table_name=table, revocation_poll_seconds=REVOCATION_POLL_SECONDS, aws_timeout_seconds=30.0)
    async with running_replicas(own, REPLICAS) as started:
        yield started


def round_robin_target(replicas: list[GatewayProcess]) -> str:
    """One target naming every replica, as a headless Service's DNS name resolves to every pod."""
    return "ipv4:" + ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)


class Journey:
    """Calls through one channel, each with a request id of its own; finds the replica that served each."""

    def __init__(self, channel: aio.Channel, replicas: list[GatewayProcess]) -> None:
        self.channel = channel
        self.replicas = replicas
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._run = uuid.uuid4().hex[:8]
        self.steps: list[tuple[str, str]] = []

    def tag(self, step: str) -> tuple[str, str]:
        """Call metadata with a new request id, remembered under `step`."""
        request_id = f"scaleout-{self._run}-{len(self.steps)}"
        self.steps.append((step, request_id))
        return (REQUEST_ID_HEADER, request_id)

    async def health(self) -> None:
        check: aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
        check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        answer = await check(health_pb2.HealthCheckRequest(), metadata=(self.tag("Health/Check"),), timeout=30)
        assert answer.status == SERVING

    async def chat(self, message: str, session_id: str, bearer: Metadata) -> Turn:
        call = stub(self.channel).Chat(
            chat_pb2.ChatRequest(session_id=session_id, message=message),
            metadata=(*bearer, self.tag(f"Chat: {message}")),
            timeout=60,
        )
        return Turn([response.event async for response in call])

    async def decide(self, turn: Turn, bearer: Metadata) -> Turn:
        """Approve what `turn` asked for (the decision lands on whichever replica the balancer picks)."""
        assert turn.approval is not None, turn.kinds
        call = stub(self.channel).Chat(
            decision(turn.session_id, turn.approval.approval_id, approve=True),
            metadata=(*bearer, self.tag("Chat: approve")),
            timeout=60,
        )
        return Turn([response.event async for response in call])

    async def sign_in(self, devstack: DevStack, email: str) -> auth_pb2.TokenDelivery:
        """InitiateLogin, the code from the dev mailbox (the emulator runs in this process), VerifyOtp."""
        started = await self.auth.InitiateLogin(
            auth_pb2.InitiateLoginRequest(email=email, name="Scale Out"),
            metadata=(self.tag("InitiateLogin"),),
            timeout=30,
        )
        code = await devstack.mailbox.wait_for_code(email, wait_seconds=30)
        verified = await self.auth.VerifyOtp(
            auth_pb2.VerifyOtpRequest(login_id=started.login_id, code=code),
            metadata=(self.tag("VerifyOtp"),),
            timeout=30,
        )
        return verified.token_delivery

    async def served(self) -> list[tuple[str, int]]:
        """(step, index of the replica whose access log has its request id), in call order."""
        return [(step, await served_by(self.replicas, request_id)) for step, request_id in self.steps]


async def balanced(channel: aio.Channel, replicas: list[GatewayProcess]) -> None:
    """Return once every replica has served a call on `channel` (round robin connects to them one by one)."""
    warm_up = Journey(channel, replicas)
    for _ in range(30):
        await warm_up.health()
        if {n for _, n in await warm_up.served()} == set(range(len(replicas))):
            return
    raise AssertionError(f"round robin never reached every replica: {await warm_up.served()}")


def bearer_of(tokens: auth_pb2.TokenDelivery) -> Metadata:
    return (("authorization", f"Bearer {tokens.access_token}"),)


async def test_a_journey_balanced_round_robin_over_three_replicas_lands_each_step_elsewhere_and_works(
    replicas: list[GatewayProcess], devstack: DevStack, aws: AwsClients, table: str
) -> None:
    prop = await create_property(aws.dynamodb, table, name=f"Loft l{uuid.uuid4().hex[:8]}")
    stay = f"{days_ahead(45).isoformat()} to {days_ahead(48).isoformat()}"
    async with aio.insecure_channel(round_robin_target(replicas), options=ROUND_ROBIN) as channel:
        await balanced(channel, replicas)
        journey = Journey(channel, replicas)
        tokens = await journey.sign_in(devstack, new_email("scaleout"))
        bearer = bearer_of(tokens)
        asked = await journey.chat(f"what's available {stay}?", "", bearer)
        held = await journey.chat(f"book the {prop.name} for 2 guests", asked.session_id, bearer)
        booked = await journey.decide(held, bearer)
        mine = await journey.chat("what are my reservations?", asked.session_id, bearer)
        await journey.auth.SignOut(
            auth_pb2.SignOutRequest(refresh_token=tokens.refresh_token),
            metadata=(*bearer, journey.tag("SignOut")),
            timeout=30,
        )
        served = await journey.served()

    print("\n" + "\n".join(f"  replica {n}: {step}" for step, n in served))
    # Each step on another replica than the step before, and every replica served a part of the journey...
    assert all(a != b for (_, a), (_, b) in itertools.pairwise(served)), served
    assert {n for _, n in served} == set(range(REPLICAS))
    # ... and the journey worked: one conversation across replicas, a booking held on one replica and approved
    # on another, the bearer's own list.
    assert [(t.name, t.ok) for t in asked.tools] == [("check_availability", True)]
    assert [(t.name, t.ok) for t in booked.tools] == [("create_reservation", True)]
    reservation_id = booked.tools[0].summary.split()[1].rstrip(":")
    assert reservation_id.startswith("RES-")
    assert reservation_id in mine.text
    assert booked.started.resumed
    assert mine.started.resumed
    assert asked.session_id == booked.session_id == mine.session_id
    assert held.complete.stop_reason == chat_pb2.STOP_REASON_AWAITING_APPROVAL
    assert held.sequences[0] == asked.sequences[-1] + 1
    assert booked.sequences[0] == held.sequences[-1] + 1
    assert mine.sequences[0] == booked.sequences[-1] + 1
    assert mine.started.guest_id == tokens.guest_id


async def test_a_sign_out_on_one_replica_is_honoured_by_the_others_within_their_poll_interval(
    replicas: list[GatewayProcess], devstack: DevStack
) -> None:
    channels = [aio.insecure_channel(replica.target) for replica in replicas]
    try:
        async with aio.insecure_channel(round_robin_target(replicas), options=ROUND_ROBIN) as balanced_channel:
            tokens = await Journey(balanced_channel, replicas).sign_in(devstack, new_email("signout"))
        bearer = bearer_of(tokens)
        listings = [reservations_pb2_grpc.ReservationServiceStub(channel) for channel in channels]
        # Every replica verifies the token and keeps the verified claims in its cache.
        for listing in listings:
            await listing.ListReservations(reservations_pb2.ListReservationsRequest(), metadata=bearer, timeout=30)

        await auth_pb2_grpc.AuthServiceStub(channels[0]).SignOut(auth_pb2.SignOutRequest(), metadata=bearer, timeout=30)
        signed_out = time.perf_counter()

        async def refused(n: int) -> tuple[float, tuple[grpc.StatusCode, str]]:
            """Seconds until replica `n` refuses the token, and how it refuses it."""

            async def refusal() -> tuple[grpc.StatusCode, str] | None:
                try:
                    await listings[n].ListReservations(
                        reservations_pb2.ListReservationsRequest(), metadata=bearer, timeout=30
                    )
                except aio.AioRpcError as error:
                    return reason_of(error)
                return None

            how = await eventually(refusal, timeout_seconds=REVOCATION_WAIT_SECONDS, interval_seconds=0.1)
            return time.perf_counter() - signed_out, how

        outcomes = await asyncio.gather(*(refused(n) for n in range(REPLICAS)))
    finally:
        for channel in channels:
            await channel.close()
    print(
        "\nsigned out on replica 0; the token refused after: "
        + ", ".join(f"replica {n} {seconds:.2f} s" for n, (seconds, _) in enumerate(outcomes))
        + f" (poll interval {REVOCATION_POLL_SECONDS} s)"
    )
    assert [refusal for _, refusal in outcomes] == [(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")] * REPLICAS
