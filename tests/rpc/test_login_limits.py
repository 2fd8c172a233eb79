"""Sign-in rate limits and upstream failures over the wire, on gateways built with their own settings."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from booking.v1 import auth_pb2, reservations_pb2, reservations_pb2_grpc
from gateway.adapters.dynamodb import keys
from gateway.adapters.dynamodb.guest_store import MAX_ID_TRIES
from gateway.config import Settings
from tests.support.auth import auth_stub, gateway_with, initiate, mailed_code, new_email, sign_in, verify
from tests.support.faults import FaultyDynamo
from tests.support.gateway import RunningGateway
from tests.support.ports import refusing_port
from tests.support.status import reason_of, retry_delay_seconds


def forwarded_for(address: str) -> tuple[tuple[str, str], ...]:
    return (("x-forwarded-for", address),)


def unique_client() -> str:
    """An address from the benchmarking range (198.18.0.0/15) no other test uses."""
    n = uuid.uuid4().int
    return f"198.18.{n % 256}.{(n >> 8) % 254 + 1}"


@pytest.fixture(scope="module")
async def behind_proxy(gateway: RunningGateway, settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway that believes x-forwarded-for from loopback, with small per-address limits."""
    async with gateway_with(
        gateway,
        settings,
        trusted_proxies=("127.0.0.1",),
        login_per_peer_limit=2,
        verify_per_peer_limit=2,
        login_resend_cooldown_seconds=0.001,
        login_per_email_limit=2,
    ) as gw:
        yield gw


def assert_rate_limited(error: aio.AioRpcError, *, longest: float) -> float:
    assert reason_of(error) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    delay = retry_delay_seconds(error)
    assert delay is not None
    assert 0 < delay <= longest
    return delay


async def test_initiate_login_again_within_the_resend_cooldown_is_rate_limited_with_retry_info(
    gateway: RunningGateway,
) -> None:
    email = new_email()
    await initiate(gateway, email)
    with pytest.raises(aio.AioRpcError) as caught:
        await initiate(gateway, email)
    assert_rate_limited(caught.value, longest=60)
    assert len(gateway.devstack.mailbox.messages(email)) == 1  # the refused call sent nothing


async def test_more_initiate_logins_per_email_than_allowed_per_hour_are_rate_limited(
    behind_proxy: RunningGateway,
) -> None:
    email = new_email()
    for _ in range(2):
        await initiate(behind_proxy, email, metadata=forwarded_for(unique_client()))
    with pytest.raises(aio.AioRpcError) as caught:
        await initiate(behind_proxy, email, metadata=forwarded_for(unique_client()))
    delay = assert_rate_limited(caught.value, longest=3600)
    assert delay > 60  # the hourly window, not the cooldown


async def test_more_initiate_logins_per_client_address_than_allowed_are_rate_limited_and_others_are_not(
    behind_proxy: RunningGateway,
) -> None:
    client = unique_client()
    for _ in range(2):
        await initiate(behind_proxy, new_email(), metadata=forwarded_for(client))
    with pytest.raises(aio.AioRpcError) as caught:
        await initiate(behind_proxy, new_email(), metadata=forwarded_for(client))
    assert_rate_limited(caught.value, longest=3600)
    # Another client behind the same proxy is counted on its own; the proxy's own hop is skipped.
    await initiate(behind_proxy, new_email(), metadata=forwarded_for(f"{unique_client()}, 127.0.0.1"))


async def test_ipv6_clients_are_counted_per_64_network(behind_proxy: RunningGateway) -> None:
    network = f"2001:db8:{uuid.uuid4().int % 65536:x}:1"
    for host in ("::1", "::2"):
        await initiate(behind_proxy, new_email(), metadata=forwarded_for(f"{network}{host}"))
    with pytest.raises(aio.AioRpcError) as caught:
        await initiate(behind_proxy, new_email(), metadata=forwarded_for(f"{network}::3"))
    assert_rate_limited(caught.value, longest=3600)


async def test_more_verify_otp_calls_per_client_address_than_allowed_are_rate_limited(
    behind_proxy: RunningGateway,
) -> None:
    client = unique_client()
    email = new_email()
    started = await initiate(behind_proxy, email, metadata=forwarded_for(unique_client()))
    for _ in range(2):
        with pytest.raises(aio.AioRpcError) as caught:
            await verify(behind_proxy, "unknown-login-id-0123456789", "12345678", metadata=forwarded_for(client))
        assert reason_of(caught.value)[1] == "LOGIN_NOT_FOUND"
    with pytest.raises(aio.AioRpcError) as caught:
        await verify(behind_proxy, started.login_id, mailed_code(behind_proxy, email), metadata=forwarded_for(client))
    assert_rate_limited(caught.value, longest=300)
    # The refused call was not an attempt: the code still works from elsewhere.
    answer = await verify(
        behind_proxy, started.login_id, mailed_code(behind_proxy, email), metadata=forwarded_for(unique_client())
    )
    assert answer.token_delivery.email == email


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(gateway: RunningGateway, settings: Settings) -> None:
    # Without trusted proxies the limit counts the loopback peer, whatever the header claims.
    async with gateway_with(gateway, settings, login_per_peer_limit=1) as strict:
        outcomes = []
        for _ in range(2):
            try:
                await initiate(strict, new_email(), metadata=forwarded_for(unique_client()))
                outcomes.append("served")
            except aio.AioRpcError as exc:
                outcomes.append(reason_of(exc)[1])
    assert "RATE_LIMITED" in outcomes


async def test_cognito_unreachable_is_unavailable_with_retry_info_and_leaves_nothing_behind(
    gateway: RunningGateway, settings: Settings
) -> None:
    email = new_email()
    with refusing_port() as port:
        broken = dataclasses.replace(gateway.devstack.endpoints.target, cognito_endpoint_url=f"http://127.0.0.1:{port}")
        async with gateway_with(gateway, settings, target=broken) as cut_off:
            with pytest.raises(aio.AioRpcError) as caught:
                await initiate(cut_off, email)
            assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
            assert (retry_delay_seconds(caught.value) or 0) > 0

            found = await gateway.app.clients.dynamodb.get_item(
                TableName=settings.aws.table_name,
                Key=keys.login_email_key(keys.email_digest(email)),
                ConsistentRead=True,
            )
            assert "Item" not in found  # no login state pointing at a session that never existed
            # The outage did not cost the person their resend cooldown or hourly budget.
            started = await initiate(gateway, email)
            code = mailed_code(gateway, email)

            with pytest.raises(aio.AioRpcError) as caught:
                await verify(cut_off, started.login_id, code)
            assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
            assert (retry_delay_seconds(caught.value) or 0) > 0
            # The code still works once Cognito is back.
            delivery = (await verify(gateway, started.login_id, code)).token_delivery

            with pytest.raises(aio.AioRpcError) as caught:
                await auth_stub(cut_off).RefreshSession(
                    auth_pb2.RefreshSessionRequest(refresh_token=delivery.refresh_token), timeout=10
                )
            assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")


async def test_dynamodb_unreachable_is_unavailable_with_retry_info(gateway: RunningGateway, settings: Settings) -> None:
    with refusing_port() as port:
        nowhere = dataclasses.replace(gateway.devstack.endpoints.target, endpoint_url=f"http://127.0.0.1:{port}")
        async with gateway_with(gateway, settings, target=nowhere) as cut_off:
            with pytest.raises(aio.AioRpcError) as caught:
                await initiate(cut_off, new_email())
            assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
            assert (retry_delay_seconds(caught.value) or 0) > 0
    # The real gateway is unaffected.
    assert (await sign_in(gateway, new_email())).access_token


async def test_writes_contended_by_a_transaction_are_unavailable_with_retry_info_and_cost_nothing(
    gateway: RunningGateway, settings: Settings
) -> None:
    """DynamoDB refuses a write whose item another transaction holds (TransactionConflictException), and cancels a
    transaction whose item another write holds (TransactionCanceledException, reason TransactionConflict): both
    happen when somebody starts a sign-in for an address while its owner verifies a code. Nothing was applied, so
    the caller is told to retry (UNAVAILABLE with a delay, never INTERNAL) and the retry works: the sign-in's
    limits were given back and the code was not spent."""
    target = gateway.devstack.endpoints.target
    email = new_email()
    async with (
        FaultyDynamo(target.endpoint_url or "") as proxy,
        gateway_with(gateway, settings, target=dataclasses.replace(target, endpoint_url=proxy.url)) as contended,
    ):
        proxy.inject("TransactWriteItems", "cancel_conflict")  # InitiateLogin saves the login in one transaction
        with pytest.raises(aio.AioRpcError) as caught:
            await initiate(contended, email)
        assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
        assert (retry_delay_seconds(caught.value) or 0) > 0
        assert proxy.pending("TransactWriteItems") == 0
        started = await initiate(contended, email)  # not held back by the resend cooldown: it was given back
        code = mailed_code(gateway, email)

        proxy.inject("UpdateItem", "conflict")  # VerifyOtp's first single-item write
        with pytest.raises(aio.AioRpcError) as caught:
            await verify(contended, started.login_id, code)
        assert reason_of(caught.value) == (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE")
        assert (retry_delay_seconds(caught.value) or 0) > 0
        assert proxy.pending("UpdateItem") == 0
        assert (await verify(contended, started.login_id, code)).token_delivery.access_token


@pytest.mark.parametrize("failed_tries", [1, 3], ids=["once", "every-time"])
async def test_a_guest_profile_the_table_cannot_create_at_sign_in_does_not_cost_the_sign_in(
    gateway: RunningGateway, settings: Settings, failed_tries: int
) -> None:
    """VerifyOtp after Cognito accepted the code, so the code is spent: creating the new person's guest profile
    fails (each try's transactions cancelled by contention, as many times as the store draws guest ids).

    Once: the gateway asks again and the sign-in has its guest id. Every time (three tries): the tokens are
    delivered anyway, without a guest id, and they work; the next sign-in creates the profile. Before, the
    caller was told to retry shortly, with a code that no longer existed."""
    target = gateway.devstack.endpoints.target
    email = new_email()
    async with (
        FaultyDynamo(target.endpoint_url or "") as proxy,
        gateway_with(
            gateway,
            settings.replace(login_resend_cooldown_seconds=0.001),
            target=dataclasses.replace(target, endpoint_url=proxy.url),
        ) as flaky,
    ):
        started = await initiate(flaky, email)
        proxy.inject("TransactWriteItems", *["cancel_conflict"] * (MAX_ID_TRIES * failed_tries))
        delivery = (await verify(flaky, started.login_id, mailed_code(gateway, email))).token_delivery
        assert proxy.pending("TransactWriteItems") == 0
        again = None if failed_tries == 1 else await sign_in(flaky, email)

    assert delivery.access_token
    listing = reservations_pb2_grpc.ReservationServiceStub(gateway.channel)
    bearer = (("authorization", f"Bearer {delivery.access_token}"),)
    await listing.ListReservations(reservations_pb2.ListReservationsRequest(), metadata=bearer, timeout=10)
    if failed_tries == 1:
        assert delivery.guest_id.startswith("GST-")
    else:
        assert delivery.guest_id == ""
        assert again is not None
        assert again.guest_id.startswith("GST-")
