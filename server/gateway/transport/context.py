"""Per-call context carried in contextvars, written once per call by the interceptor and read anywhere.

Transport-neutral: both faces (grpc.aio and the web face) set the same variables.
"""

from __future__ import annotations

import contextvars
import re
import uuid

from gateway.domain import Principal

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)
peer_var: contextvars.ContextVar[str] = contextvars.ContextVar("peer", default="")


def new_request_id(offered: str | None) -> str:
    """Keep a caller's request id if it is short and plain; otherwise make a new one."""
    if offered and _REQUEST_ID_PATTERN.match(offered):
        return offered
    return uuid.uuid4().hex


def current_principal() -> Principal | None:
    """The verified caller of the current call, or None when anonymous."""
    return principal_var.get()


def current_request_id() -> str:
    """The current call's request id ("-" outside a call)."""
    return request_id_var.get()
