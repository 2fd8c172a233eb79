"""The grpc.aio face of the pipeline on a real server with probe RPCs: error mapping, auth policy, concurrency limit,
unknown methods; with the probe service registered as a generic handler and as pre-registered methods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from gateway import errors
from gateway.transport.auth import Authenticator
from gateway.transport.handlers import GrpcFace
from gateway.transport.pipeline import ConcurrencyLimiter, Pipeline
from gateway.transport.policy import AuthPolicy, PolicyTable
from gateway.transport.server import server_options
from tests.support.calls import SERVING, health_status, raw_stream, raw_unary
from tests.support.status import error_info, field_violations, reason_of, retry_delay_seconds

ERRORS: dict[bytes, errors.GatewayError] = {
    b"invalid": errors.InvalidArgumentError.for_field("check_in", "must be a date like 2026-03-15"),
    b"rate": errors.RateLimitedError("slow down", retry_after_seconds=42.0),
    b"taken": errors.NightsTakenError("taken", metadata={"nights": "2026-03-15"}),
    b"notimpl": errors.NotImplementedYetError("not yet"),
    b"unavailable": errors.UpstreamUnavailableError("down", retry_after_seconds=1.0),
    b"owned": errors.SessionNotOwnedError("not yours"),
}


class Probe:
    """Handlers of the test service `test.Probe`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.arrived = asyncio.Event()  # set by each call to Slow

    async def fail(self, request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        if request == b"boom":
            raise ValueError("secret internals")
        if request in ERRORS:
            raise ERRORS[request]
        return b"ok:" + request

    async def stream(self, request: bytes, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        yield b"one"
        yield b"two"
        if request in ERRORS:
            raise ERRORS[request]

    async def slow(self, request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        self.entered += 1
        self.arrived.set()
        await self.release.wait()
        return b"done"


@pytest.fixture(params=["generic", "registered"])
async def probe_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[aio.Channel, Probe]]:
    probe = Probe()
    policies = PolicyTable(
        {
            "/test.Probe/Fail": AuthPolicy.PUBLIC,
            "/test.Probe/Stream": AuthPolicy.PUBLIC,
            "/test.Probe/Slow": AuthPolicy.PUBLIC,
            "/test.Probe/Optional": AuthPolicy.OPTIONAL,
            # "/test.Probe/Private" declares nothing: REQUIRED by default.
        }
    )
    server = GrpcFace(Pipeline(policies, Authenticator(None), ConcurrencyLimiter(2))).registrar(
        aio.server(options=server_options())
    )
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Fail": grpc.unary_unary_rpc_method_handler(probe.fail),
        "Private": grpc.unary_unary_rpc_method_handler(probe.fail),
        "Optional": grpc.unary_unary_rpc_method_handler(probe.fail),
        "Stream": grpc.unary_stream_rpc_method_handler(probe.stream),
        "Slow": grpc.unary_unary_rpc_method_handler(probe.slow),
    }
    if request.param == "generic":
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Probe", handlers),))
    else:
        # grpc's pre-registered fast path only: no generic handler knows these methods.
        server.add_registered_method_handlers("test.Probe", handlers)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, probe
    finally:
        probe.release.set()
        await server.stop(0)


async def call(channel: aio.Channel, method: str, body: bytes, metadata: Any = None) -> bytes:
    return await raw_unary(channel, f"/test.Probe/{method}", body, metadata=metadata)


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (b"invalid", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (b"rate", grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
        (b"taken", grpc.StatusCode.FAILED_PRECONDITION, "NIGHTS_TAKEN"),
        (b"notimpl", grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED"),
        (b"unavailable", grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE"),
        (b"owned", grpc.StatusCode.PERMISSION_DENIED, "SESSION_NOT_OWNED"),
    ],
)
async def test_domain_errors_become_their_status_and_reason(
    probe_server: tuple[aio.Channel, Probe], body: bytes, code: grpc.StatusCode, reason: str
) -> None:
    channel, _ = probe_server
    with pytest.raises(aio.AioRpcError) as caught:
        await call(channel, "Fail", body)
    assert reason_of(caught.value) == (code, reason)
    assert error_info(caught.value).domain == "booking.v1"


async def test_error_details_carry_retry_info_bad_request_and_metadata(
    probe_server: tuple[aio.Channel, Probe],
) -> None:
    channel, _ = probe_server
    with pytest.raises(aio.AioRpcError) as rate:
        await call(channel, "Fail", b"rate")
    assert retry_delay_seconds(rate.value) == pytest.approx(42.0)
    with pytest.raises(aio.AioRpcError) as invalid:
        await call(channel, "Fail", b"invalid")
    assert field_violations(invalid.value) == {"check_in": "must be a date like 2026-03-15"}
    with pytest.raises(aio.AioRpcError) as taken:
        await call(channel, "Fail", b"taken")
    assert dict(error_info(taken.value).metadata) == {"nights": "2026-03-15"}


async def test_an_error_inside_a_stream_after_messages_is_mapped_too(probe_server: tuple[aio.Channel, Probe]) -> None:
    channel, _ = probe_server
    received: list[bytes] = []
    with pytest.raises(aio.AioRpcError) as caught:
        await raw_stream(channel, "/test.Probe/Stream", b"taken", received=received)
    assert received == [b"one", b"two"]
    assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION, "NIGHTS_TAKEN")


async def test_an_unexpected_exception_is_internal_with_a_request_id_and_no_internals(
    probe_server: tuple[aio.Channel, Probe],
) -> None:
    channel, _ = probe_server
    with pytest.raises(aio.AioRpcError) as caught:
        await call(channel, "Fail", b"boom", metadata=(("x-request-id", "req-12345"),))
    assert reason_of(caught.value) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "req-12345" in (caught.value.details() or "")
    assert "secret internals" not in (caught.value.details() or "")
    assert await call(channel, "Fail", b"fine") == b"ok:fine"


async def test_a_required_rpc_without_a_bearer_is_token_missing(probe_server: tuple[aio.Channel, Probe]) -> None:
    channel, _ = probe_server
    with pytest.raises(aio.AioRpcError) as caught:
        await call(channel, "Private", b"x")
    assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


@pytest.mark.parametrize(
    "metadata",
    [
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer"),),
        (("authorization", "Bearer a b"),),
        (("authorization", "Bearer one"), ("authorization", "Bearer two")),
        (("authorization", "Bearer " + "x" * 65_536),),
    ],
    ids=["basic", "empty", "spaces", "two-headers", "64KiB"],
)
async def test_malformed_authorization_is_token_malformed_even_on_optional_rpcs(
    probe_server: tuple[aio.Channel, Probe], metadata: Any
) -> None:
    channel, _ = probe_server
    for method in ("Private", "Optional"):
        with pytest.raises(aio.AioRpcError) as caught:
            await call(channel, method, b"x", metadata=metadata)
        assert reason_of(caught.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MALFORMED")


async def test_optional_rpc_without_a_bearer_runs_anonymously(probe_server: tuple[aio.Channel, Probe]) -> None:
    channel, _ = probe_server
    assert await call(channel, "Optional", b"anon") == b"ok:anon"


async def test_past_the_concurrency_limit_calls_are_refused_at_once_in_every_wave(
    probe_server: tuple[aio.Channel, Probe],
) -> None:
    channel, probe = probe_server
    for wave in range(3):
        probe.release.clear()
        probe.entered = 0
        in_flight = [asyncio.create_task(call(channel, "Slow", b"")) for _ in range(2)]
        async with asyncio.timeout(10):
            while probe.entered < 2:
                probe.arrived.clear()
                await probe.arrived.wait()
        with pytest.raises(aio.AioRpcError) as caught:
            await call(channel, "Fail", b"x")
        assert reason_of(caught.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED"), wave
        assert retry_delay_seconds(caught.value) is not None
        # Health probes are exempt, so an overloaded gateway still answers its load balancer.
        assert await health_status(channel) == SERVING
        probe.release.set()
        assert await asyncio.gather(*in_flight) == [b"done", b"done"]
        assert await call(channel, "Fail", b"after") == b"ok:after"


async def test_an_unknown_method_is_unimplemented_with_reason_method_not_found(
    probe_server: tuple[aio.Channel, Probe],
) -> None:
    channel, _ = probe_server
    for method in ("/test.Probe/Nope", "/other.Service/Fail"):
        with pytest.raises(aio.AioRpcError) as caught:
            await raw_unary(channel, method, b"x")
        assert reason_of(caught.value) == (grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_FOUND"), method
    assert await call(channel, "Fail", b"still") == b"ok:still"
