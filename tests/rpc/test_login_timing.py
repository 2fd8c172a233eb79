"""InitiateLogin tells nobody whether an address has an account: not by its answer, not by its latency.

A new address costs the gateway one more Cognito call (AdminCreateUser) than a known one; the login service holds
the "get or create the user" step of a known address for a duration drawn from recent creations
(`services.login.EvenTiming`).

The emulator creates a user in about 5 ms, little next to the noise of a machine that runs other tests at the same
time (a run under load once measured a median gap of 2.2 ms with the stand-in in place). So the gateway here calls
Cognito through a proxy that makes AdminCreateUser 40 ms slower, as a distant provider would be: without the
stand-in a new address would answer 40 ms or more later than a known one, and the test allows a median gap of a
quarter of that, far above the noise, far below the signal. Measured in one run, 150 pairs of one new and one
known address, one call at a time: median gap within a pair -0.6 ms with the stand-in (-0.8 and -1.5 ms with
heavy tests running beside it), 48.5 ms without.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
import time
import uuid

from booking.v1 import auth_pb2
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from tests.support.auth import gateway_with, initiate
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway

TRIES = 150
WARM_UP = 12
CREATION_LATENCY_SECONDS = 0.040
MAX_MEDIAN_GAP_SECONDS = CREATION_LATENCY_SECONDS / 4


def address(kind: str) -> str:
    """Addresses of the same shape for both kinds, so that their masked destinations are alike too."""
    return f"t{kind}-{uuid.uuid4().hex[:12]}@example.com"


def shape(answer: auth_pb2.InitiateLoginResponse) -> bytes:
    """The answer without what differs on every call (the random login id, the moment of the call)."""
    blank = auth_pb2.InitiateLoginResponse()
    blank.CopyFrom(answer)
    blank.login_id = "x" * len(answer.login_id)
    blank.ClearField("expires_at")
    blank.ClearField("resend_allowed_at")
    return blank.SerializeToString(deterministic=True)


async def timed(gateway: RunningGateway, email: str) -> tuple[float, auth_pb2.InitiateLoginResponse]:
    started = time.perf_counter()
    answer = await initiate(gateway, email)
    return time.perf_counter() - started, answer


async def create_users(aws: AwsClients, pool: str, emails: list[str]) -> None:
    async def create(email: str) -> None:
        await aws.cognito.admin_create_user(
            UserPoolId=pool,
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            MessageAction="SUPPRESS",
        )

    for start in range(0, len(emails), 16):
        await asyncio.gather(*(create(email) for email in emails[start : start + 16]))


async def test_initiate_login_answers_a_new_and_a_known_address_alike_in_bytes_and_in_time(
    gateway: RunningGateway, settings: Settings, aws: AwsClients, small_table: str
) -> None:
    known = [address("k") for _ in range(TRIES + WARM_UP)]
    await create_users(aws, gateway.devstack.endpoints.user_pool_id, known)
    seconds: dict[str, list[float]] = {"new": [], "known": []}
    gaps: list[float] = []
    shapes: set[bytes] = set()
    windows: set[float] = set()
    warm_up = [("known", email) for email in known[:WARM_UP]] + [("new", address("n")) for _ in range(WARM_UP)]
    random.shuffle(warm_up)
    target = gateway.devstack.endpoints.target
    # A gateway of its own on a small table of its own (a run of 300 logins fills it), calling Cognito through a
    # proxy that makes creating a user slow.
    async with (
        FaultyDynamo(target.cognito_endpoint_url or target.endpoint_url or "") as proxy,
        gateway_with(
            gateway,
            settings.replace(table_name=small_table),
            target=dataclasses.replace(target, cognito_endpoint_url=proxy.url),
        ) as own,
    ):
        proxy.slow("AdminCreateUser", CREATION_LATENCY_SECONDS)
        for _, email in warm_up:
            await timed(own, email)
        # One call at a time (calls side by side would share the emulator, in this process, unevenly), in pairs of
        # one new and one known address in random order: latency drifts during a run (other work on the machine, the
        # emulator's table filling), and a pair's two calls see the same moment, so the gap within pairs measures
        # the gateway, not the moment.
        for email in known[WARM_UP:]:
            pair = [("known", email), ("new", address("n"))]
            random.shuffle(pair)
            elapsed: dict[str, float] = {}
            for kind, each in pair:
                elapsed[kind], answer = await timed(own, each)
                seconds[kind].append(elapsed[kind])
                shapes.add(shape(answer))
                windows.add(answer.expires_at.ToSeconds() - answer.resend_allowed_at.ToSeconds())
            gaps.append(elapsed["new"] - elapsed["known"])

    new, old, gap = (statistics.median(values) for values in (seconds["new"], seconds["known"], gaps))
    print(
        f"InitiateLogin medians: new {new * 1000:.2f} ms, known {old * 1000:.2f} ms ({len(gaps)} pairs);"
        f" median gap within a pair {gap * 1000:.2f} ms"
    )
    assert len(seconds["new"]) == len(seconds["known"]) == TRIES
    assert len(shapes) == 1
    assert len(windows) <= 2  # whole seconds: a call may straddle a second boundary
    assert abs(gap) < MAX_MEDIAN_GAP_SECONDS
