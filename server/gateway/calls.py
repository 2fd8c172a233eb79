"""What a handler knows of the call it serves, whichever face the call came through; the current call's contextvar.

A leaf module: it knows no transport library, so handlers, logging and the pipeline can all read it.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Callable, Sequence

from gateway.domain import Principal
from gateway.errors import TokenMissingError

Metadata = Sequence[tuple[str, str | bytes]]

_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_request_id(offered: str | None) -> str:
    """Keep a caller's request id if it is short and plain; otherwise make a new one."""
    if offered and _REQUEST_ID_PATTERN.fullmatch(offered):
        return offered
    return os.urandom(16).hex()


def _never() -> bool:
    return False


class Call:
    """One call as its handler sees it: who calls (principal), from where (peer), with which metadata, by when
    (time remaining) and whether the caller is still there. No grpc or Connect type appears here.

    Each face fills it in from its own wire; the call pipeline owns it (`transport.pipeline.CallScope` is one).
    """

    __slots__ = (
        "_cancelled_source",
        "_peer_source",
        "_request_id",
        "_time_remaining_source",
        "face",
        "metadata",
        "method",
        "principal",
    )

    def __init__(
        self,
        method: str,
        metadata: Metadata,
        face: str,
        *,
        peer: Callable[[], str] | None = None,
        time_remaining: Callable[[], float | None] | None = None,
        cancelled: Callable[[], bool] = _never,
    ) -> None:
        self.method = method
        self.metadata = metadata
        self.face = face
        self.principal: Principal | None = None
        # Made when first asked for (a failed call, a log line, a span): most calls never need one.
        self._request_id: str | None = None
        # Looked up only when something asks (rate limits, deadlines), not on every call.
        self._peer_source = peer
        self._time_remaining_source = time_remaining
        self._cancelled_source = cancelled

    @property
    def request_id(self) -> str:
        """The caller's `x-request-id` when it is short and plain, otherwise a new random one; fixed once read."""
        request_id = self._request_id
        if request_id is None:
            offered = None
            for key, value in self.metadata:
                if key == "x-request-id" and isinstance(value, str):
                    offered = value
                    break
            request_id = self._request_id = new_request_id(offered)
        return request_id

    @property
    def caller(self) -> Principal:
        """The verified caller. The pipeline lets no call reach a REQUIRED RPC's handler without one, so this
        raises (TokenMissingError) only when an RPC that is not REQUIRED asks for it."""
        principal = self.principal
        if principal is None:
            raise TokenMissingError('this call needs "authorization: Bearer <access token>" metadata')
        return principal

    @property
    def peer(self) -> str:
        """The transport's address of the caller in grpc's spelling, like "ipv4:127.0.0.1:53422" ("" if unknown)."""
        source = self._peer_source
        return source() if source is not None else ""

    def time_remaining(self) -> float | None:
        """Seconds until the call's deadline, or None when it has none."""
        source = self._time_remaining_source
        return source() if source is not None else None

    def cancelled(self) -> bool:
        """True once the caller has gone away (the handler's task is cancelled as well)."""
        return self._cancelled_source()


call_var: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def current_call() -> Call | None:
    """The call the current task serves, or None outside a call."""
    return call_var.get()


def current_request_id() -> str:
    """The current call's request id ("-" outside a call)."""
    call = call_var.get()
    return call.request_id if call is not None else "-"
