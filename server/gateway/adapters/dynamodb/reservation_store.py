"""The DynamoDB side of booking: properties, night locks, reservations and booking request ids (single table).

Item layout: `gateway.adapters.dynamodb.keys`. Why a booking can never double-book, how retries stay idempotent
and how an unknown outcome is resolved: docs/reservations.md.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from gateway.adapters._upstream import (
    RETRY_SECONDS,
    TRANSACTION_CANCELED,
    TRANSIENT_CANCELLATION_CODES,
    OutcomeUnknownError,
    cancellation_codes,
    error_code,
    retry_later,
    translated,
)
from gateway.adapters.dynamodb import keys
from gateway.domain import (
    GuestId,
    Property,
    Reservation,
    ReservationId,
    ReservationPage,
    ReservationStatus,
    Stay,
    Sub,
)
from gateway.errors import InvalidArgumentError, NightsTakenError, UpstreamUnavailableError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

SERVICE = "dynamodb"
CONDITION_FAILED = "ConditionalCheckFailed"

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_PAGE_TOKEN_VERSION = 1


def _s(item: Item, name: str) -> str:
    return item[name]["S"]


def _n(item: Item, name: str) -> int:
    return int(item[name]["N"])


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime(_TIMESTAMP_FORMAT)


def _parse_timestamp(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, _TIMESTAMP_FORMAT).replace(tzinfo=datetime.UTC)


def _property_from_item(item: Item) -> Property:
    return Property(
        property_id=_s(item, "property_id"),
        name=_s(item, "name"),
        description=_s(item, "description") if "description" in item else "",
        capacity=_n(item, "capacity"),
        nightly_rate_cents=_n(item, "nightly_rate_cents"),
        currency=_s(item, "currency"),
    )


def _reservation_item(reservation: Reservation, request_id: str) -> Item:
    stay = reservation.stay
    item: Item = {
        **keys.reservation_key(reservation.owner, reservation.reservation_id),
        **keys.reservation_index_keys(reservation.owner, reservation.created_at, reservation.reservation_id),
        "type": {"S": "RESERVATION"},
        "reservation_id": {"S": reservation.reservation_id},
        "owner": {"S": reservation.owner},
        "property_id": {"S": stay.property_id},
        "property_name": {"S": reservation.property_name},
        "check_in": {"S": stay.check_in.isoformat()},
        "check_out": {"S": stay.check_out.isoformat()},
        "guests": {"N": str(stay.guests)},
        "status": {"S": reservation.status.value},
        "total_cents": {"N": str(reservation.total_cents)},
        "currency": {"S": reservation.currency},
        "created_at": {"S": _timestamp(reservation.created_at)},
        "request_id": {"S": request_id},
    }
    if reservation.guest_id is not None:
        item["guest_id"] = {"S": reservation.guest_id}
    return item


def _reservation_from_item(item: Item) -> Reservation:
    return Reservation(
        reservation_id=ReservationId(_s(item, "reservation_id")),
        owner=Sub(_s(item, "owner")),
        stay=Stay(
            property_id=_s(item, "property_id"),
            check_in=datetime.date.fromisoformat(_s(item, "check_in")),
            check_out=datetime.date.fromisoformat(_s(item, "check_out")),
            guests=_n(item, "guests"),
        ),
        property_name=_s(item, "property_name"),
        status=ReservationStatus(_s(item, "status")),
        total_cents=_n(item, "total_cents"),
        currency=_s(item, "currency"),
        created_at=_parse_timestamp(_s(item, "created_at")),
        guest_id=GuestId(_s(item, "guest_id")) if "guest_id" in item else None,
    )


def _client_request_token(reservation: Reservation, request_id: str) -> str:
    """DynamoDB's idempotency token for one booking attempt (at most 36 characters).

    Derived from everything the transaction writes, so botocore's own retries of this attempt share it (and
    DynamoDB answers a retry of an applied transaction with success), while a new attempt, which has a new
    reservation id, never collides with an old one.
    """
    text = "\n".join((reservation.owner, request_id, reservation.reservation_id, _timestamp(reservation.created_at)))
    return hashlib.sha256(text.encode()).hexdigest()[:36]


def _bad_page_token() -> InvalidArgumentError:
    return InvalidArgumentError.for_field("page_token", "use the next_page_token of your previous page, unchanged")


class DynamoReservationStore:
    """`ReservationStore` on the single DynamoDB table, through an open aioboto3 client."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    # Properties and availability --------------------------------------------------------------------------

    async def list_properties(self) -> list[Property]:
        """Every property item (PK=PROPERTY)."""
        properties: list[Property] = []
        start: dict[str, Any] | None = None
        while True:
            extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
            with translated(SERVICE, "Query"):
                page = await self._db.query(
                    TableName=self._table,
                    KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
                    ExpressionAttributeValues={
                        ":pk": {"S": keys.PROPERTY_PARTITION},
                        ":prefix": {"S": keys.PROPERTY_PREFIX},
                    },
                    **extra,
                )
            properties.extend(_property_from_item(item) for item in page["Items"])
            start = page.get("LastEvaluatedKey")
            if not start:
                return properties

    async def get_property(self, property_id: str) -> Property | None:
        """The property item, or None."""
        with translated(SERVICE, "GetItem"):
            answer = await self._db.get_item(TableName=self._table, Key=keys.property_key(property_id))
        item = answer.get("Item")
        return _property_from_item(item) if item else None

    async def held_nights(self, property_id: str, nights: Sequence[datetime.date]) -> frozenset[datetime.date]:
        """Consistent query of the property's lock items between the first and the last night."""
        if not nights:
            return frozenset()
        wanted = set(nights)
        held: set[datetime.date] = set()
        start: dict[str, Any] | None = None
        while True:
            extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
            with translated(SERVICE, "Query"):
                page = await self._db.query(
                    TableName=self._table,
                    KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
                    ExpressionAttributeValues={
                        ":pk": {"S": keys.night_partition(property_id)},
                        ":first": {"S": keys.night_sort_key(min(nights))},
                        ":last": {"S": keys.night_sort_key(max(nights))},
                    },
                    ProjectionExpression="SK",
                    ConsistentRead=True,
                    **extra,
                )
            for item in page["Items"]:
                night = datetime.date.fromisoformat(_s(item, keys.SK).removeprefix(keys.NIGHT_PREFIX))
                if night in wanted:
                    held.add(night)
            start = page.get("LastEvaluatedKey")
            if not start:
                return frozenset(held)

    # Booking ----------------------------------------------------------------------------------------------

    def _booking_items(self, reservation: Reservation, request_id: str) -> list[TransactWriteItemTypeDef]:
        """The request item, the reservation item, then one lock per night, each only if it does not exist."""
        not_exists = "attribute_not_exists(PK)"
        request_item: Item = {
            **keys.request_key(reservation.owner, request_id),
            "type": {"S": "REQUEST"},
            "request_id": {"S": request_id},
            "reservation_id": {"S": reservation.reservation_id},
            "created_at": {"S": _timestamp(reservation.created_at)},
        }
        items: list[TransactWriteItemTypeDef] = [
            {"Put": {"TableName": self._table, "Item": request_item, "ConditionExpression": not_exists}},
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _reservation_item(reservation, request_id),
                    "ConditionExpression": not_exists,
                }
            },
        ]
        for night in reservation.nights:
            lock: Item = {
                **keys.night_key(reservation.stay.property_id, night),
                "type": {"S": "NIGHT"},
                "reservation_id": {"S": reservation.reservation_id},
                "property_id": {"S": reservation.stay.property_id},
                "night": {"S": night.isoformat()},
            }
            items.append({"Put": {"TableName": self._table, "Item": lock, "ConditionExpression": not_exists}})
        return items

    async def reserve_nights(self, reservation: Reservation, *, request_id: str) -> Reservation:
        """One TransactWriteItems: request item + reservation item + one lock per night (see the port)."""
        try:
            with translated(SERVICE, "TransactWriteItems", write=True, explains_cancellations=True):
                await self._db.transact_write_items(
                    TransactItems=self._booking_items(reservation, request_id),
                    ClientRequestToken=_client_request_token(reservation, request_id),
                )
        except ClientError as exc:
            if error_code(exc) != TRANSACTION_CANCELED:
                raise
            return await self._after_cancelled_booking(reservation, request_id, exc)
        except OutcomeUnknownError as exc:
            log.warning("booking outcome unknown; reading it back by request id", extra={"error": str(exc)})
            existing = await self._reservation_for_request(reservation.owner, request_id, unknown_outcome=exc)
            if existing is None:
                # Not applied (a transaction is all or nothing, and its request item is not there). A retry with
                # the same request id is safe whatever happens to the lost attempt later.
                raise UpstreamUnavailableError(
                    "the booking did not complete; retry with the same request id",
                    retry_after_seconds=RETRY_SECONDS,
                ) from exc
            return existing
        return reservation

    async def _after_cancelled_booking(
        self, reservation: Reservation, request_id: str, exc: ClientError
    ) -> Reservation:
        """Explain a cancelled booking from its CancellationReasons (aligned with `_booking_items`)."""
        codes = cancellation_codes(exc)
        nights = reservation.nights
        if codes and codes[0] != "None":
            # The request item was refused (this guest already used the request id: their retry, or botocore's
            # re-send of an applied attempt) or contended (the same request is being booked concurrently). The
            # request id says what happened; the nights cannot.
            existing = await self._reservation_for_request(reservation.owner, request_id)
            if existing is not None:
                return existing
            raise UpstreamUnavailableError(
                "the booking request is still settling; retry with the same request id",
                retry_after_seconds=RETRY_SECONDS,
            ) from exc
        refused = {night for night, code in zip(nights, codes[2:], strict=False) if code == CONDITION_FAILED}
        # Read the locks back: the nights to report are those held now, plus those whose condition failed
        # (a night may have been released since).
        taken = sorted(refused | await self.held_nights(reservation.stay.property_id, nights))
        if taken:
            raise NightsTakenError(
                "some nights of this stay are already booked; choose other dates",
                metadata={"nights": ",".join(night.isoformat() for night in taken)},
            ) from exc
        if any(code in TRANSIENT_CANCELLATION_CODES for code in codes) or not codes:
            raise retry_later(SERVICE, "TransactWriteItems", ",".join(codes) or TRANSACTION_CANCELED) from exc
        # The reservation id already exists for this guest (about 1 in 10^12): a retry draws a new one.
        log.warning("booking cancelled without a taken night", extra={"reasons": ",".join(codes)})
        raise UpstreamUnavailableError(
            "the booking could not be completed; retry with the same request id", retry_after_seconds=0.0
        ) from exc

    async def _reservation_for_request(
        self, owner: Sub, request_id: str, *, unknown_outcome: Exception | None = None
    ) -> Reservation | None:
        """The reservation booked under the owner's request id (consistent reads), or None."""
        try:
            with translated(SERVICE, "GetItem"):
                answer = await self._db.get_item(
                    TableName=self._table, Key=keys.request_key(owner, request_id), ConsistentRead=True
                )
        except UpstreamUnavailableError as exc:
            if unknown_outcome is None:
                raise
            raise UpstreamUnavailableError(
                "the booking's outcome could not be confirmed; retry with the same request id",
                retry_after_seconds=RETRY_SECONDS,
            ) from exc
        item = answer.get("Item")
        if item is None:
            return None
        found = await self.get_reservation(owner, ReservationId(_s(item, "reservation_id")))
        if found is None:
            # The request item and its reservation are written together; one without the other is a bug.
            raise RuntimeError("a booking request item has no reservation")
        return found

    # Reading and cancelling -------------------------------------------------------------------------------

    async def get_reservation(self, owner: Sub, reservation_id: ReservationId) -> Reservation | None:
        """Consistent read of the reservation item under the owner's partition."""
        with translated(SERVICE, "GetItem"):
            answer = await self._db.get_item(
                TableName=self._table, Key=keys.reservation_key(owner, reservation_id), ConsistentRead=True
            )
        item = answer.get("Item")
        return _reservation_from_item(item) if item else None

    async def list_reservations(self, owner: Sub, *, page_size: int, page_token: str) -> ReservationPage:
        """Query GSI1 for the owner's reservations, newest first; the token is the last key of the page."""
        partition = keys.guest_partition(owner)
        extra: dict[str, Any] = {}
        if page_token:
            extra["ExclusiveStartKey"] = self._decode_page_token(page_token, partition)
        with translated(SERVICE, "Query"):
            page = await self._db.query(
                TableName=self._table,
                IndexName=keys.GSI1,
                KeyConditionExpression="GSI1PK = :pk AND begins_with(GSI1SK, :prefix)",
                ExpressionAttributeValues={":pk": {"S": partition}, ":prefix": {"S": keys.RESERVATION_PREFIX}},
                ScanIndexForward=False,
                # One more than asked: tells whether another page exists without returning an empty last page.
                Limit=page_size + 1,
                **extra,
            )
        items = page["Items"]
        more = len(items) > page_size or bool(page.get("LastEvaluatedKey"))
        kept = items[:page_size]
        token = self._encode_page_token(kept[-1]) if more and kept else ""
        return ReservationPage(tuple(_reservation_from_item(item) for item in kept), token)

    @staticmethod
    def _encode_page_token(item: Item) -> str:
        last = {name: _s(item, name) for name in (keys.PK, keys.SK, keys.GSI1PK, keys.GSI1SK)}
        data = json.dumps({"v": _PAGE_TOKEN_VERSION, "k": last}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    @staticmethod
    def _decode_page_token(token: str, partition: str) -> dict[str, Any]:
        """The ExclusiveStartKey in `token`, only if it is a reservation key of `partition` (the caller's)."""
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            last = data["k"]
            if data.get("v") != _PAGE_TOKEN_VERSION or not isinstance(last, dict):
                raise _bad_page_token()
            values = {name: last[name] for name in (keys.PK, keys.SK, keys.GSI1PK, keys.GSI1SK)}
        except (ValueError, KeyError, TypeError, binascii.Error, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the decoder goes, as a crafted token can be
            raise _bad_page_token() from exc
        if not all(isinstance(value, str) for value in values.values()):
            raise _bad_page_token()
        reservation_id = values[keys.SK].removeprefix(keys.RESERVATION_PREFIX)
        if (
            values[keys.PK] != partition
            or values[keys.GSI1PK] != partition
            or not values[keys.SK].startswith(keys.RESERVATION_PREFIX)
            or not values[keys.GSI1SK].startswith(keys.RESERVATION_PREFIX)
            or not values[keys.GSI1SK].endswith(f"#{reservation_id}")
        ):
            raise _bad_page_token()
        return {name: {"S": value} for name, value in values.items()}

    async def release_nights(self, reservation: Reservation, *, cancelled_at: datetime.datetime) -> Reservation:
        """One transaction: mark the reservation cancelled (if confirmed) and delete its own night locks."""
        if reservation.status is ReservationStatus.CANCELLED:
            return reservation
        rid = {":rid": {"S": reservation.reservation_id}}
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": keys.reservation_key(reservation.owner, reservation.reservation_id),
                    "UpdateExpression": "SET #status = :cancelled, cancelled_at = :at",
                    "ConditionExpression": "#status = :confirmed",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":cancelled": {"S": ReservationStatus.CANCELLED.value},
                        ":confirmed": {"S": ReservationStatus.CONFIRMED.value},
                        ":at": {"S": _timestamp(cancelled_at)},
                    },
                }
            }
        ]
        for night in reservation.nights:
            items.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": keys.night_key(reservation.stay.property_id, night),
                        # Never release a night someone else holds; a lock already gone is fine.
                        "ConditionExpression": "attribute_not_exists(PK) OR reservation_id = :rid",
                        "ExpressionAttributeValues": rid,
                    }
                }
            )
        try:
            with translated(SERVICE, "TransactWriteItems", write=True, explains_cancellations=True):
                await self._db.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) != TRANSACTION_CANCELED:
                raise
            codes = cancellation_codes(exc)
            if codes and codes[0] == CONDITION_FAILED:
                return await self._reread_cancelled(reservation, cause=exc)
            if any(code in TRANSIENT_CANCELLATION_CODES for code in codes):
                raise retry_later(SERVICE, "TransactWriteItems", ",".join(codes)) from exc
            raise
        except OutcomeUnknownError as exc:
            log.warning("cancellation outcome unknown; reading it back", extra={"error": str(exc)})
            return await self._reread_cancelled(reservation, cause=exc)
        return dataclasses.replace(reservation, status=ReservationStatus.CANCELLED)

    async def _reread_cancelled(self, reservation: Reservation, *, cause: Exception) -> Reservation:
        """After a cancellation whose effect we did not see: the stored reservation if it is cancelled now."""
        current = await self.get_reservation(reservation.owner, reservation.reservation_id)
        if current is not None and current.status is ReservationStatus.CANCELLED:
            return current
        raise UpstreamUnavailableError(
            "the cancellation did not complete; retry", retry_after_seconds=RETRY_SECONDS
        ) from cause
