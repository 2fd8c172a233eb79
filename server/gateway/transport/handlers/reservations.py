"""ReservationService: availability for anyone; a signed-in guest's own reservations."""

from __future__ import annotations

from booking.v1 import reservations_pb2 as pb
from gateway.calls import Call
from gateway.services.reservations import ReservationService
from gateway.transport import convert


class ReservationHandlers:
    """Availability for anyone; a signed-in guest's own reservations, scoped to the caller's `sub`."""

    def __init__(self, reservations: ReservationService) -> None:
        self._reservations = reservations

    async def ListProperties(self, request: pb.ListPropertiesRequest, call: Call) -> pb.ListPropertiesResponse:
        properties = await self._reservations.list_properties()
        return pb.ListPropertiesResponse(properties=[convert.property_to_pb(p) for p in properties])

    async def CheckAvailability(self, request: pb.CheckAvailabilityRequest, call: Call) -> pb.CheckAvailabilityResponse:
        stay = convert.stay_from_pb(request, zero_guests_means_one=True)
        return convert.availability_to_pb(await self._reservations.check_availability(stay))

    async def CreateReservation(self, request: pb.CreateReservationRequest, call: Call) -> pb.CreateReservationResponse:
        owner = call.caller
        stay = convert.stay_from_pb(request)
        reservation = await self._reservations.create_reservation(owner, stay, request_id=request.request_id)
        return pb.CreateReservationResponse(reservation=convert.reservation_to_pb(reservation))

    async def ListReservations(self, request: pb.ListReservationsRequest, call: Call) -> pb.ListReservationsResponse:
        page = await self._reservations.list_reservations(
            call.caller, page_size=request.page_size, page_token=request.page_token
        )
        return convert.reservation_page_to_pb(page)

    async def GetReservation(self, request: pb.GetReservationRequest, call: Call) -> pb.GetReservationResponse:
        reservation = await self._reservations.get_reservation(call.caller, request.reservation_id)
        return pb.GetReservationResponse(reservation=convert.reservation_to_pb(reservation))

    async def CancelReservation(self, request: pb.CancelReservationRequest, call: Call) -> pb.CancelReservationResponse:
        reservation = await self._reservations.cancel_reservation(call.caller, request.reservation_id)
        return pb.CancelReservationResponse(reservation=convert.reservation_to_pb(reservation))
