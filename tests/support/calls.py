"""Typed helpers for calls the generated stubs do not cover: raw bytes and the standard health service."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2

Metadata = Sequence[tuple[str, str | bytes]]


def _identity(data: bytes) -> bytes:
    return data


async def raw_unary(
    channel: aio.Channel, method: str, body: bytes, metadata: Metadata | None = None, timeout: float = 10
) -> bytes:
    """Call `method` sending `body` as the encoded request; return the encoded response."""
    multicallable: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        method, request_serializer=_identity, response_deserializer=_identity
    )
    return await multicallable(body, metadata=metadata, timeout=timeout)


async def raw_stream(
    channel: aio.Channel, method: str, body: bytes, timeout: float = 10, received: list[bytes] | None = None
) -> list[bytes]:
    """Call a server-streaming `method` with `body`; return every encoded response.

    Messages are also appended to `received` as they arrive, so a caller still has them if the stream fails.
    """
    multicallable: aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
        method, request_serializer=_identity, response_deserializer=_identity
    )
    sink = [] if received is None else received
    async for message in multicallable(body, timeout=timeout):
        sink.append(message)
    return sink


def _health_check(
    channel: aio.Channel,
) -> aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    return channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


async def health_status(channel: aio.Channel, service: str = "") -> int:
    """The serving status of `service` ("" = the whole server)."""
    answer = await _health_check(channel)(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return answer.status


def health_watch(
    channel: aio.Channel, service: str = ""
) -> aio.UnaryStreamCall[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """An open Watch stream for `service`."""
    multicallable: aio.UnaryStreamMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
    multicallable = channel.unary_stream(
        "/grpc.health.v1.Health/Watch",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    return multicallable(health_pb2.HealthCheckRequest(service=service))


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def trailers(error: grpc.RpcError) -> list[tuple[str, str | bytes]]:
    """The trailing metadata of a failed call as (key, value) pairs."""
    assert isinstance(error, aio.AioRpcError)
    return [(str(key), value) for key, value in tuple(error.trailing_metadata() or ())]
