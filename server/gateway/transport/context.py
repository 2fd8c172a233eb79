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

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)
# The peer is looked up only when something asks (rate limits), not on every call.
peer_source_var: contextvars.ContextVar[Callable[[], str] | None] = contextvars.ContextVar("peer", default=None)
# The call's metadata: gRPC metadata, or the HTTP request headers on the web face (keys lower-cased).
metadata_var: contextvars.ContextVar[Sequence[tuple[str, str | bytes]]] = contextvars.ContextVar("metadata", default=())
# Seconds left before the call's deadline (None: no deadline), asked when something needs it.
time_remaining_source_var: contextvars.ContextVar[Callable[[], float | None] | None] = contextvars.ContextVar(
    "time_remaining", default=None
)


def new_request_id(offered: str | None) -> str:
    """Keep a caller's request id if it is short and plain; otherwise make a new one."""
    if offered and _REQUEST_ID_PATTERN.match(offered):
        return offered
    return os.urandom(16).hex()


def current_principal() -> Principal | None:
    """The verified caller of the current call, or None when anonymous."""
    return principal_var.get()


def current_peer() -> str:
    """The transport's address of the current caller ("" outside a call), like "ipv4:127.0.0.1:53422"."""
    source = peer_source_var.get()
    return source() if source is not None else ""


def current_metadata() -> Sequence[tuple[str, str | bytes]]:
    """The current call's metadata (request headers on the web face); empty outside a call."""
    return metadata_var.get()


def current_time_remaining() -> float | None:
    """Seconds until the current call's deadline, or None when it has none (or outside a call)."""
    source = time_remaining_source_var.get()
    return source() if source is not None else None


def current_request_id() -> str:
    """The current call's request id ("-" outside a call)."""
    return request_id_var.get()
