"""A status message says the reason and when to retry, for people reading any tool (buf curl prints the
ErrorInfo and RetryInfo details as base64); the Python client hands the plain message on, those are its fields."""

from __future__ import annotations

import json
import math
import re

import grpc
import pytest
from grpc import aio

from booking_client import MemorySessionStore, RateLimited, connect
from tests.support.auth import initiate
from tests.support.buf import buf_curl, url
from tests.support.gateway import RunningGateway
from tests.support.identity import unique_email
from tests.support.status import error_info, retry_delay_seconds

RATE_LIMITED = re.compile(r"^too many requests; retry later \[RATE_LIMITED, retry in (\d+) s\]$")


async def test_a_rate_limited_call_says_the_reason_and_the_delay_in_its_message(gateway: RunningGateway) -> None:
    email = unique_email("soon")
    await initiate(gateway, email)
    with pytest.raises(aio.AioRpcError) as caught:
        await initiate(gateway, email)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    said = RATE_LIMITED.match(caught.value.details() or "")
    assert said is not None, caught.value.details()
    delay = retry_delay_seconds(caught.value)
    assert delay is not None
    assert int(said.group(1)) == math.ceil(delay)  # the same delay as RetryInfo, in whole seconds
    assert error_info(caught.value).reason == "RATE_LIMITED"


async def test_buf_curl_shows_the_reason_and_the_delay(gateway: RunningGateway) -> None:
    email = unique_email("buf")
    await initiate(gateway, email)
    code, _, err = await buf_curl(
        gateway.target, url(gateway.target, "booking.v1.AuthService/InitiateLogin"), data={"email": email}
    )
    assert code != 0
    refused = json.loads(err)
    assert refused["code"] == "resource_exhausted"
    assert RATE_LIMITED.match(refused["message"]), refused["message"]


async def test_an_error_without_a_retry_delay_says_its_reason(gateway: RunningGateway) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await initiate(gateway, "not an address")
    reason = error_info(caught.value).reason
    assert (caught.value.details() or "").endswith(f" [{reason}]")
    assert "retry in" not in (caught.value.details() or "")


async def test_the_python_client_keeps_the_plain_message(gateway: RunningGateway) -> None:
    email = unique_email("plain")
    async with connect(gateway.target, tls=False, session_store=MemorySessionStore()) as client:
        await client.initiate_login(email)
        with pytest.raises(RateLimited) as caught:
            await client.initiate_login(email)
    assert caught.value.message == "too many requests; retry later"
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.retry_after_seconds is not None
