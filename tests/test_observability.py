"""Metrics and traces after a real journey: counters move, labels carry no secrets, spans nest."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from grpc import aio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from booking.v1 import auth_pb2, reservations_pb2_grpc
from booking.v1 import reservations_pb2 as pb
from gateway.config import Settings
from tests.support.auth import auth_stub, gateway_with, initiate, mailed_code, new_email, verify, wrong_code
from tests.support.calls import raw_unary
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.reservations import days_ahead, new_request_id


@pytest.fixture(scope="module")
async def observed(gateway: RunningGateway, settings: Settings) -> AsyncIterator[RunningGateway]:
    async with gateway_with(gateway, settings, metrics_listen="127.0.0.1:0") as gw:
        yield gw


async def scrape(gateway: RunningGateway) -> str:
    assert gateway.server.metrics_server is not None
    url = f"http://127.0.0.1:{gateway.server.metrics_server.port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{val}"' in line for key, val in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_journey_moves_the_counters_and_no_secret_reaches_a_label(observed: RunningGateway) -> None:
    email = new_email("metrics")
    started = await initiate(observed, email)
    code = mailed_code(observed, email)
    with pytest.raises(aio.AioRpcError):
        await verify(observed, started.login_id, wrong_code(code))
    delivery = (await verify(observed, started.login_id, code)).token_delivery
    stub = reservations_pb2_grpc.ReservationServiceStub(observed.channel)
    bearer = (("authorization", f"Bearer {delivery.access_token}"),)
    props = (await stub.ListProperties(pb.ListPropertiesRequest(), timeout=10)).properties
    await stub.CreateReservation(
        pb.CreateReservationRequest(
            property_id=props[0].property_id,
            check_in=days_ahead(300).isoformat(),
            check_out=days_ahead(301).isoformat(),
            guests=1,
            request_id=new_request_id(),
        ),
        metadata=bearer,
        timeout=20,
    )
    for _ in range(2):
        await stub.ListReservations(pb.ListReservationsRequest(), metadata=bearer, timeout=10)
    with pytest.raises(aio.AioRpcError):
        await stub.ListReservations(pb.ListReservationsRequest(), metadata=(("authorization", "Bearer x.y"),))
    with pytest.raises(aio.AioRpcError):
        await raw_unary(observed.channel, f"/evil.Service/{new_email()}", b"")
    with pytest.raises(aio.AioRpcError):
        await auth_stub(observed).InitiateLogin(auth_pb2.InitiateLoginRequest(email=email), timeout=10)

    text = await scrape(observed)
    assert value(text, "gateway_calls_total", method="InitiateLogin", code="OK", face="grpc") >= 1
    assert value(text, "gateway_calls_total", method="VerifyOtp", code="OK") >= 1
    assert value(text, "gateway_calls_total", method="CreateReservation", code="OK") >= 1
    assert value(text, "gateway_call_errors_total", method="VerifyOtp", reason="OTP_INVALID") >= 1
    assert value(text, "gateway_call_errors_total", method="ListReservations", reason="TOKEN_MALFORMED") >= 1
    assert value(text, "gateway_rate_limit_rejections_total", method="InitiateLogin") >= 1
    assert value(text, "gateway_calls_total", service="unknown", code="UNIMPLEMENTED") >= 1
    assert value(text, "gateway_call_duration_seconds_count", method="ListProperties") >= 1
    assert value(text, "gateway_calls_in_flight", method="ListProperties") == 0
    assert value(text, "gateway_otp_sends_total") >= 1
    assert value(text, "gateway_otp_failures_total") >= 1
    assert value(text, "gateway_bearer_cache_hits_total") >= 1
    assert value(text, "gateway_bearer_verifications_total") >= 1
    cognito = "cognito-identity-provider"
    assert value(text, "gateway_upstream_duration_seconds_count", service=cognito, operation="AdminInitiateAuth") >= 1
    assert value(text, "gateway_upstream_duration_seconds_count", operation="TransactWriteItems") >= 1
    assert value(text, "gateway_upstream_errors_total", service=cognito, error="CodeMismatchException") >= 1
    # No secret and no address in any label or value.
    for secret in (email, email.split("@")[0], code, delivery.access_token[:40], delivery.refresh_token[:40]):
        assert secret not in text
    assert not re.search(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+", text)


async def test_metrics_are_off_unless_asked(gateway: RunningGateway) -> None:
    assert gateway.server.metrics_server is None


async def test_each_call_is_a_server_span_with_its_request_id_and_aws_calls_nest_under_it(
    gateway: RunningGateway, settings: Settings
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with running_gateway(gateway.devstack, settings, tracer=provider) as traced:
        stub = reservations_pb2_grpc.ReservationServiceStub(traced.channel)
        await stub.ListProperties(pb.ListPropertiesRequest(), metadata=(("x-request-id", "trace-me-1"),), timeout=10)
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetReservation(pb.GetReservationRequest(reservation_id="RES-AAAAAAAA"), timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.name == "booking.v1.ReservationService/ListProperties")
    assert server.attributes is not None
    assert server.attributes["booking.request_id"] == "trace-me-1"
    children = [s for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id]
    assert any(s.name == "dynamodb.Query" for s in children)
    failed = next(s for s in spans if s.name == "booking.v1.ReservationService/GetReservation")
    assert not failed.status.is_ok
    provider.shutdown()
