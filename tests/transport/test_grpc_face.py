"""The grpc.aio face of the pipeline on a real server with a probe service mounted from a handler table: error
mapping, auth policy from the descriptor, concurrency limit, unknown methods, grpc's own servicers beside it;
and the table's start-up checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.protobuf.descriptor import FileDescriptor
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from booking.v1 import options_pb2
from gateway import errors
from gateway.calls import Call
from gateway.testing import service_file
from gateway.transport.auth import Authenticator
from gateway.transport.grpc_face import GrpcFace
from gateway.transport.pipeline import ConcurrencyLimiter, Pipeline
from gateway.transport.server import server_options
from gateway.transport.table import HandlerTable, HandlerTableError
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

PROBE_FILE = "tests/transport/probe.proto"
# Method name -> (declared policy or None, server streaming).
PROBE_METHODS: dict[str, tuple[int | None, bool]] = {
    "Fail": (options_pb2.AUTH_POLICY_PUBLIC, False),
    "Stream": (options_pb2.AUTH_POLICY_PUBLIC, True),
    "Slow": (options_pb2.AUTH_POLICY_PUBLIC, False),
    "Optional": (options_pb2.AUTH_POLICY_OPTIONAL, False),
    "Private": (None, False),  # declares nothing: REQUIRED by default
}


def probe_file() -> FileDescriptor:
    """`test.Probe`, a service declared like the contract's (BytesValue in and out)."""
    return service_file(PROBE_FILE, "test.Probe", PROBE_METHODS)


def body(value: bytes) -> bytes:
    return wrappers_pb2.BytesValue(value=value).SerializeToString()


def value_of(encoded: bytes) -> bytes:
    return wrappers_pb2.BytesValue.FromString(encoded).value


class Probe:
    """Handlers of the test service `test.Probe`, written as the gateway's handlers are: (request, call)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.all_in = asyncio.Event()
        self.calls: list[tuple[Call, str, float | None]] = []

    async def Fail(self, request: wrappers_pb2.BytesValue, call: Call) -> wrappers_pb2.BytesValue:
        # The peer and deadline as the handler sees them during the call.
        self.calls.append((call, call.peer, call.time_remaining()))
        if request.value == b"boom":
            raise ValueError("secret internals")
        if request.value in ERRORS:
            raise ERRORS[request.value]
        return wrappers_pb2.BytesValue(value=b"ok:" + request.value)

    Private = Fail
    Optional = Fail

    async def Stream(self, request: wrappers_pb2.BytesValue, call: Call) -> AsyncGenerator[wrappers_pb2.BytesValue]:
        yield wrappers_pb2.BytesValue(value=b"one")
        yield wrappers_pb2.BytesValue(value=b"two")
        if request.value in ERRORS:
            raise ERRORS[request.value]

    async def Slow(self, request: wrappers_pb2.BytesValue, call: Call) -> wrappers_pb2.BytesValue:
        self.entered += 1
        if self.entered >= 2:
            self.all_in.set()
        await self.release.wait()
        return wrappers_pb2.BytesValue(value=b"done")


@pytest.fixture(params=["generic", "registered"])
async def probe_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[aio.Channel, Probe]]:
    """The probe table on a grpc.aio server, health registered beside it as a generic or pre-registered servicer."""
    probe = Probe()
    table = HandlerTable.build([probe_file()], {"test.Probe": probe})
    pipeline = Pipeline(Authenticator(None), ConcurrencyLimiter(2))
    server = GrpcFace(pipeline, table).server(aio.server(options=server_options()))
    health = HealthServicer()
    if request.param == "generic":
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "Check": grpc.unary_unary_rpc_method_handler(
                health.Check,
                request_deserializer=health_pb2.HealthCheckRequest.FromString,
                response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health", handlers),))
    else:
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, probe
    finally:
        probe.release.set()
        await server.stop(0)


async def call(channel: aio.Channel, method: str, value: bytes, metadata: Any = None) -> bytes:
    return value_of(await raw_unary(channel, f"/test.Probe/{method}", body(value), metadata=metadata))


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
        await raw_stream(channel, "/test.Probe/Stream", body(b"taken"), received=received)
    assert [value_of(message) for message in received] == [b"one", b"two"]
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
        probe.all_in.clear()
        await asyncio.wait_for(probe.all_in.wait(), 10)
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
            await raw_unary(channel, method, body(b"x"))
        assert reason_of(caught.value) == (grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_FOUND"), method
    assert await call(channel, "Fail", b"still") == b"ok:still"


async def test_a_handler_gets_the_call_with_its_principal_peer_request_id_and_deadline(
    probe_server: tuple[aio.Channel, Probe],
) -> None:
    channel, probe = probe_server
    probe.calls.clear()
    assert await call(channel, "Optional", b"who", metadata=(("x-request-id", "req-abc"),)) == b"ok:who"
    ((seen, peer, remaining),) = probe.calls
    assert seen.principal is None
    assert seen.request_id == "req-abc"
    assert peer.startswith("ipv4:127.0.0.1:")
    assert seen.method == "/test.Probe/Optional"
    assert seen.face == "grpc"
    assert remaining is not None
    assert 0 < remaining < 11  # grpc rounds the deadline it sends up a little
    # Kept past its end, the call answers as one that is over (grpc has freed what it was read from).
    assert seen.peer == ""
    assert seen.cancelled()
    assert seen.time_remaining() == 0.0


async def test_a_servicer_that_ends_its_call_itself_keeps_its_status(probe_server: tuple[aio.Channel, Probe]) -> None:
    channel, _ = probe_server
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    # grpc's health servicer aborts with NOT_FOUND for a service it does not know; not INTERNAL.
    with pytest.raises(aio.AioRpcError) as caught:
        await check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


class MissingSlow(Probe):
    Slow = None  # type: ignore[assignment]


class StreamAsCoroutine(Probe):
    async def Stream(self, request: wrappers_pb2.BytesValue, call: Call) -> wrappers_pb2.BytesValue:  # type: ignore[override]
        return request


def test_a_method_without_a_handler_fails_when_the_table_is_built() -> None:
    with pytest.raises(HandlerTableError, match=r"/test.Probe/Slow has no handler: add `async def Slow"):
        HandlerTable.build([probe_file()], {"test.Probe": MissingSlow()})


def test_a_handler_of_the_wrong_kind_fails_when_the_table_is_built() -> None:
    with pytest.raises(HandlerTableError, match=r"/test.Probe/Stream: StreamAsCoroutine.Stream must be an async gen"):
        HandlerTable.build([probe_file()], {"test.Probe": StreamAsCoroutine()})


def test_handlers_for_a_service_outside_the_contract_or_none_for_one_in_it_fail() -> None:
    with pytest.raises(HandlerTableError, match=r"not in the contract: other\.Service"):
        HandlerTable.build([probe_file()], {"test.Probe": Probe(), "other.Service": Probe()})
    with pytest.raises(HandlerTableError, match=r"no handlers given for test\.Probe"):
        HandlerTable.build([probe_file()], {})


def test_the_policy_of_each_method_comes_from_its_descriptor() -> None:
    table = HandlerTable.build([probe_file()], {"test.Probe": Probe()})
    policies = {method.name: method.policy.value for method in table}
    assert policies == {
        "Fail": "PUBLIC",
        "Stream": "PUBLIC",
        "Slow": "PUBLIC",
        "Optional": "OPTIONAL",
        "Private": "REQUIRED",
    }
