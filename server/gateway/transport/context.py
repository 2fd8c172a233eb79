"""Per-call context carried in contextvars, written once per call by the interceptor and read anywhere.

Transport-neutral: both faces (grpc.aio and the web face) set the same variables.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Callable, Sequence

from gateway.domain import Principal

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CallContext:
    """What the current call's code may ask about it; the call pipeline's scope is one.

    One contextvar holds it for the call's task (and the tasks it starts), set once per call: six
    separate contextvars cost measurably on every call.
    """

    __slots__ = ()

    principal: Principal | None
    metadata: Sequence[tuple[str, str | bytes]]
    # Looked up only when something asks (rate limits, deadlines), not on every call.
    peer_source: Callable[[], str] | None
    time_remaining_source: Callable[[], float | None] | None

    @property
    def request_id(self) -> str:
        """The call's request id: the caller's `x-request-id` if it is short and plain, else a new one."""
        raise NotImplementedError


call_var: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("call", default=None)


def new_request_id(offered: str | None) -> str:
    """Keep a caller's request id if it is short and plain; otherwise make a new one."""
    if offered and _REQUEST_ID_PATTERN.match(offered):
        return offered
    return os.urandom(16).hex()


def current_principal() -> Principal | None:
    """The verified caller of the current call, or None when anonymous."""
    call = call_var.get()
    return call.principal if call is not None else None


def current_peer() -> str:
    """The transport's address of the current caller ("" outside a call), like "ipv4:127.0.0.1:53422"."""
    call = call_var.get()
    source = call.peer_source if call is not None else None
    return source() if source is not None else ""


def current_metadata() -> Sequence[tuple[str, str | bytes]]:
    """The current call's metadata (request headers on the web face); empty outside a call."""
    call = call_var.get()
    return call.metadata if call is not None else ()


def current_time_remaining() -> float | None:
    """Seconds until the current call's deadline, or None when it has none (or outside a call)."""
    call = call_var.get()
    source = call.time_remaining_source if call is not None else None
    return source() if source is not None else None


def current_request_id() -> str:
    """The current call's request id ("-" outside a call)."""
    call = call_var.get()
    return call.request_id if call is not None else "-"
