"""InitiateLogin tells nobody whether an address has an account: not by its answer, not by its latency.

A new address costs the gateway one more Cognito call (AdminCreateUser) than a known one; the login service holds
every answer until the creating case's usual duration (`services.login.EvenTiming`). Measured here in one run,
one call at a time in random order, over the wire against the emulator (without the padding: new 86 ms, known
79 ms; with it 94.4 and 94.2 ms).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid

from booking.v1 import auth_pb2
from gateway.adapters.aws import AwsClients
from gateway.config import Settings
from tests.support.auth import gateway_with, initiate
from tests.support.gateway import RunningGateway

TRIES = 200
WARM_UP = 12
MAX_MEDIAN_GAP_SECONDS = 0.002


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
    shapes: set[bytes] = set()
    windows: set[float] = set()
    warm_up = [("known", email) for email in known[:WARM_UP]] + [("new", address("n")) for _ in range(WARM_UP)]
    measured = [("known", email) for email in known[WARM_UP:]] + [("new", address("n")) for _ in range(TRIES)]
    random.shuffle(warm_up)
    random.shuffle(measured)
    # A gateway of its own on a small table: moto copies the whole table on every TransactWriteItems.
    async with gateway_with(gateway, settings.replace(table_name=small_table)) as own:
        # One call at a time, the kinds in random order: calls side by side would share the emulator (in this
        # process) unevenly, and a kind measured at quieter moments would look faster.
        for index, (kind, email) in enumerate(warm_up + measured):
            elapsed, answer = await timed(own, email)
            if index >= len(warm_up):
                seconds[kind].append(elapsed)
                shapes.add(shape(answer))
                windows.add(answer.expires_at.ToSeconds() - answer.resend_allowed_at.ToSeconds())

    new, old = statistics.median(seconds["new"]), statistics.median(seconds["known"])
    print(f"InitiateLogin medians: new {new * 1000:.2f} ms ({len(seconds['new'])} calls), known {old * 1000:.2f} ms")
    assert len(seconds["new"]) == len(seconds["known"]) == TRIES
    assert len(shapes) == 1
    assert len(windows) <= 2  # whole seconds: a call may straddle a second boundary
    assert abs(new - old) < MAX_MEDIAN_GAP_SECONDS
