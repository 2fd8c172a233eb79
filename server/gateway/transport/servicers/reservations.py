"""ReservationService over gRPC: converts messages, asks `ReservationService`, converts the answer back.

Domain errors propagate to the interceptor, which maps them to status codes (`transport/errors.py`).
"""

from __future__ import annotations

from typing import Any

from grpc import aio

from booking.v1 import reservations_pb2 as pb
from booking.v1 import reservations_pb2_grpc
from gateway.domain import Principal
from gateway.errors import TokenMissingError
from gateway.services.reservations import ReservationService
from gateway.transport import convert
from gateway.transport.context import current_principal

Context = aio.ServicerContext[Any, Any]


def _caller() -> Principal:
    """The verified caller; the interceptor guarantees one for REQUIRED RPCs."""
    principal = current_principal()
    if principal is None:
        raise TokenMissingError('this call needs "authorization: Bearer <access token>" metadata')
    return principal


class ReservationServicer(reservations_pb2_grpc.ReservationServiceServicer):
    """Availability for anyone; a signed-in guest's own reservations."""

    def __init__(self, reservations: ReservationService) -> None:
        self._reservations = reservations

    async def ListProperties(self, request: pb.ListPropertiesRequest, context: Context) -> pb.ListPropertiesResponse:
        properties = await self._reservations.list_properties()
        return pb.ListPropertiesResponse(properties=[convert.property_to_pb(p) for p in properties])

    async def CheckAvailability(
        self, request: pb.CheckAvailabilityRequest, context: Context
    ) -> pb.CheckAvailabilityResponse:
        stay = convert.stay_from_pb(request, zero_guests_means_one=True)
        return convert.availability_to_pb(await self._reservations.check_availability(stay))

    async def CreateReservation(
        self, request: pb.CreateReservationRequest, context: Context
    ) -> pb.CreateReservationResponse:
        caller = _caller()
        stay = convert.stay_from_pb(request)
        reservation = await self._reservations.create_reservation(caller, stay, request_id=request.request_id)
        return pb.CreateReservationResponse(reservation=convert.reservation_to_pb(reservation))

    async def ListReservations(
        self, request: pb.ListReservationsRequest, context: Context
    ) -> pb.ListReservationsResponse:
        page = await self._reservations.list_reservations(
            _caller(), page_size=request.page_size, page_token=request.page_token
        )
        return convert.reservation_page_to_pb(page)

    async def GetReservation(self, request: pb.GetReservationRequest, context: Context) -> pb.GetReservationResponse:
        reservation = await self._reservations.get_reservation(_caller(), request.reservation_id)
        return pb.GetReservationResponse(reservation=convert.reservation_to_pb(reservation))

    async def CancelReservation(
        self, request: pb.CancelReservationRequest, context: Context
    ) -> pb.CancelReservationResponse:
        reservation = await self._reservations.cancel_reservation(_caller(), request.reservation_id)
        return pb.CancelReservationResponse(reservation=convert.reservation_to_pb(reservation))
