"""ReservationService over gRPC."""

from __future__ import annotations

from typing import Any

from grpc import aio

from booking.v1 import reservations_pb2 as pb
from booking.v1 import reservations_pb2_grpc
from gateway.errors import NotImplementedYetError

Context = aio.ServicerContext[Any, Any]
_MESSAGE = "reservations are not available in this build yet"


class ReservationServicer(reservations_pb2_grpc.ReservationServiceServicer):
    """Availability and bookings. Not served by this build yet: every RPC answers UNIMPLEMENTED."""

    async def ListProperties(self, request: pb.ListPropertiesRequest, context: Context) -> pb.ListPropertiesResponse:
        raise NotImplementedYetError(_MESSAGE)

    async def CheckAvailability(
        self, request: pb.CheckAvailabilityRequest, context: Context
    ) -> pb.CheckAvailabilityResponse:
        raise NotImplementedYetError(_MESSAGE)

    async def CreateReservation(
        self, request: pb.CreateReservationRequest, context: Context
    ) -> pb.CreateReservationResponse:
        raise NotImplementedYetError(_MESSAGE)

    async def ListReservations(
        self, request: pb.ListReservationsRequest, context: Context
    ) -> pb.ListReservationsResponse:
        raise NotImplementedYetError(_MESSAGE)

    async def GetReservation(self, request: pb.GetReservationRequest, context: Context) -> pb.GetReservationResponse:
        raise NotImplementedYetError(_MESSAGE)

    async def CancelReservation(
        self, request: pb.CancelReservationRequest, context: Context
    ) -> pb.CancelReservationResponse:
        raise NotImplementedYetError(_MESSAGE)
