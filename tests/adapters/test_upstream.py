"""The one translator of AWS failures (`adapters/_upstream.py`): each kind of botocore or aiohttp failure, for a
read and for a write, and what it logs.

The exceptions are the ones botocore and aiobotocore raise (built here as they build them); the fault proxy tests
in tests/adapters/test_reservation_store.py and tests/rpc/test_login.py show the same through real clients.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from gateway.adapters._upstream import RETRY_SECONDS, OutcomeUnknownError, translated
from gateway.errors import OtpInvalidError, UpstreamUnavailableError

ENDPOINT = "http://127.0.0.1:9"
SECRET = "jane.doe@example.com"  # stands for whatever an AWS message may carry


def client_error(code: str, status: int) -> ClientError:
    """A ClientError as botocore parses it from an AWS error answer."""
    response: Any = {
        "Error": {"Code": code, "Message": f"no such user {SECRET}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "AnyOperation")


UNREACHABLE: list[Exception] = [
    EndpointConnectionError(endpoint_url=ENDPOINT),
    ConnectTimeoutError(endpoint_url=ENDPOINT),
    ReadTimeoutError(endpoint_url=ENDPOINT),
    ConnectionClosedError(endpoint_url=ENDPOINT),
    ResponseStreamingError(error="the stream broke"),
    aiohttp.ServerDisconnectedError(),
    aiohttp.ClientPayloadError("Response payload is not completed"),
    aiohttp.ClientOSError(104, "Connection reset by peer"),
    TimeoutError(),
]
THROTTLED: list[Exception] = [
    client_error(code, 400)
    for code in (
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
    )
]
FAILED: list[Exception] = [client_error("InternalServerError", 500), client_error("ServiceUnavailable", 503)]


def raised(exc: Exception, *, write: bool = False, hide_unknown: bool = False) -> Exception:
    """What `translated` turns `exc` into."""
    try:
        with translated("dynamodb", "Query", write=write, hide_unknown=hide_unknown):
            raise exc
    except Exception as translated_error:
        return translated_error
    raise AssertionError("nothing was raised")


@pytest.mark.parametrize("exc", UNREACHABLE + THROTTLED + FAILED, ids=lambda e: type(e).__name__)
def test_unreachable_timing_out_throttling_or_failing_is_upstream_unavailable_with_one_retry_delay(
    exc: Exception,
) -> None:
    error = raised(exc)
    assert isinstance(error, UpstreamUnavailableError)
    assert error.reason == "UPSTREAM_UNAVAILABLE"
    assert error.retry_after_seconds == RETRY_SECONDS == 1.0
    assert error.__cause__ is exc


@pytest.mark.parametrize("exc", UNREACHABLE + FAILED, ids=lambda e: type(e).__name__)
def test_a_write_whose_answer_was_lost_is_outcome_unknown(exc: Exception) -> None:
    error = raised(exc, write=True)
    assert isinstance(error, OutcomeUnknownError)
    assert error.__cause__ is exc


def test_a_write_still_in_progress_is_outcome_unknown_but_a_read_error_of_that_code_is_not() -> None:
    in_progress = client_error("TransactionInProgressException", 400)
    assert isinstance(raised(in_progress, write=True), OutcomeUnknownError)
    assert raised(in_progress) is in_progress


@pytest.mark.parametrize("exc", THROTTLED)
def test_a_throttled_write_is_a_known_outcome_upstream_unavailable(exc: Exception) -> None:
    error = raised(exc, write=True)
    assert isinstance(error, UpstreamUnavailableError)
    assert error.retry_after_seconds == RETRY_SECONDS


def test_a_known_code_becomes_its_domain_error_even_for_a_write() -> None:
    wrong = client_error("CodeMismatchException", 400)
    for write in (False, True):
        with (
            pytest.raises(OtpInvalidError) as caught,
            translated(
                "cognito-idp",
                "AdminRespondToAuthChallenge",
                {"CodeMismatchException": lambda: OtpInvalidError("wrong")},
                write=write,
            ),
        ):
            raise wrong
        assert caught.value.__cause__ is wrong


@pytest.mark.parametrize("write", [False, True])
def test_other_client_errors_propagate_unchanged_as_bugs(write: bool) -> None:
    invalid = client_error("ValidationException", 400)
    assert raised(invalid, write=write) is invalid


def test_other_client_errors_of_a_service_whose_messages_are_personal_are_hidden_as_unavailable() -> None:
    error = raised(client_error("InvalidParameterException", 400), hide_unknown=True)
    assert isinstance(error, UpstreamUnavailableError)
    assert error.retry_after_seconds == RETRY_SECONDS


def test_failures_that_are_no_upstream_trouble_are_left_alone() -> None:
    for exc in (NoCredentialsError(), ValueError("a bug"), KeyError("Item")):
        assert raised(exc) is exc
        assert raised(exc, write=True) is exc


def test_each_failure_is_logged_once_by_service_operation_and_code_never_with_the_aws_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.adapters._upstream")
    cases: list[tuple[Exception, bool, bool, str, str]] = [
        (
            EndpointConnectionError(endpoint_url=ENDPOINT),
            False,
            False,
            "upstream unreachable",
            "EndpointConnectionError",
        ),
        (client_error("ThrottlingException", 400), False, False, "upstream throttling", "ThrottlingException"),
        (client_error("InternalServerError", 500), False, False, "upstream failed", "InternalServerError"),
        (client_error("InternalServerError", 500), True, False, "upstream answer lost", "InternalServerError"),
        (
            client_error("InvalidParameterException", 400),
            False,
            True,
            "unexpected upstream error",
            "InvalidParameterException",
        ),
    ]
    for exc, write, hide_unknown, message, code in cases:
        caplog.clear()
        raised(exc, write=write, hide_unknown=hide_unknown)
        assert [(r.getMessage(), r.service, r.operation, r.error) for r in caplog.records] == [  # type: ignore[attr-defined]
            (message, "dynamodb", "Query", code)
        ]
        assert SECRET not in caplog.text
