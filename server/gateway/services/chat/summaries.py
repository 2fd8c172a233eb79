"""The line a person reads for a tool that failed for a service's reason: what happened and what they can do.

The model reads the service's own message and details in the tool result; this is only the `summary` of the
`ToolCallFinished` event, so it never tells anybody to call a tool, and every hint is something the person can do
in any client by typing in the chat.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import GatewayError

__all__ = ["attempts_left", "service_summary"]

_NEW_CODE = "send your email again to get a new code"

_BY_REASON = {
    "OTP_ATTEMPTS_EXHAUSTED": f"too many wrong codes: {_NEW_CODE}",
    "OTP_EXPIRED": f"the code has expired: {_NEW_CODE}",
    "LOGIN_NOT_FOUND": "no sign-in code is waiting: send your email to get one",
    "UPSTREAM_UNAVAILABLE": "the service is unavailable right now; please try again shortly",
    "RESERVATION_NOT_FOUND": "no reservation of yours has that id",
    "PROPERTY_NOT_FOUND": "there is no property with that id",
}


def attempts_left(left: int) -> str:
    """ "1 attempt left", "2 attempts left", "no attempts left"."""
    if left <= 0:
        return "no attempts left"
    return f"{left} attempt{'' if left == 1 else 's'} left"


def service_summary(error: GatewayError, details: Mapping[str, str]) -> str:
    """The person's line for a service's refusal (`details`: what the tool result carries besides the message)."""
    reason = error.reason
    if reason == "OTP_INVALID":
        left = details.get("attempts_left", "")
        if left.isdigit() and int(left) == 0:
            return f"wrong code, and no attempts are left: {_NEW_CODE}"
        return f"wrong code, {attempts_left(int(left))}" if left.isdigit() else "wrong code"
    if reason == "RATE_LIMITED" or reason == "TOKEN_BUDGET_EXHAUSTED":
        wait = details.get("retry_after_seconds")
        return f"too many attempts: try again in {wait} seconds" if wait else "too many attempts: try again later"
    if reason == "NIGHTS_TAKEN":
        taken = details.get("taken_nights", "").replace(",", ", ")
        return f"some of those nights are already booked ({taken})" if taken else "some of those nights are booked"
    return _BY_REASON.get(reason, error.message)
