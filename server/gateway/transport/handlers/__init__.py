"""The RPCs' own code: one async function of `(request, call)` per RPC, grouped by service; no grpc, no boto.

Each handler converts the request (`transport/convert.py`), asks a service, and converts the answer back. Domain
errors propagate to the call pipeline, which maps them to statuses (`transport/errors.py`). `HandlerTable.build`
finds each RPC's handler by its name on the service's object.
"""

from gateway.transport.handlers.auth import AuthHandlers
from gateway.transport.handlers.chat import ChatHandlers
from gateway.transport.handlers.reservations import ReservationHandlers

__all__ = ["AuthHandlers", "ChatHandlers", "ReservationHandlers"]
