"""Read the rich error details (google.rpc.Status) of a failed call."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from tests.support.calls import trailers

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status carried in the trailers; fails the test if there is none."""
    for key, value in trailers(error):
        if key == STATUS_DETAILS_KEY:
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no {STATUS_DETAILS_KEY} in the trailers of {error.code()}: {error.details()}")


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo detail."""
    for detail in rich_status(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo detail")


def retry_delay_seconds(error: grpc.aio.AioRpcError) -> float | None:
    """The RetryInfo delay, or None when there is none."""
    for detail in rich_status(error).details:
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return float(retry.retry_delay.ToNanoseconds()) / 1e9
    return None


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """BadRequest field violations as {field: description}."""
    for detail in rich_status(error).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return {v.field: v.description for v in bad.field_violations}
    return {}


def reason_of(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    """(status code, ErrorInfo.reason) — what most assertions compare."""
    return error.code(), error_info(error).reason
