"""Test data for reservations: a fresh property per test, dates relative to today, and reads of the raw table."""

from __future__ import annotations

import datetime
import uuid
from typing import TYPE_CHECKING, Any

from gateway.adapters.dynamodb import keys
from gateway.domain import Property, Stay, Sub

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


def today() -> datetime.date:
    """Today in UTC, the calendar the test gateway judges dates by (its `--chat-time-zone` is the default, UTC)."""
    return datetime.datetime.now(datetime.UTC).date()


def days_ahead(days: int) -> datetime.date:
    """Today (UTC) plus `days`."""
    return today() + datetime.timedelta(days=days)


def new_sub() -> Sub:
    """A fresh Cognito-like subject id."""
    return Sub(str(uuid.uuid4()))


def new_request_id() -> str:
    """A fresh booking request id."""
    return f"req-{uuid.uuid4().hex}"


def stay(prop: Property, first: int, nights: int, guests: int = 1) -> Stay:
    """A stay at `prop` starting `first` days from today, `nights` long."""
    return Stay(prop.property_id, days_ahead(first), days_ahead(first + nights), guests)


async def create_property(
    dynamodb: DynamoDBClient,
    table: str,
    *,
    capacity: int = 4,
    nightly_rate_cents: int = 12_500,
    name: str | None = None,
    description: str = "A property made by a test.",
) -> Property:
    """Put a property with a unique id straight into the table, so a test has a calendar of its own."""
    property_id = f"test-{uuid.uuid4().hex[:12]}"
    prop = Property(
        property_id=property_id,
        name=name or f"Test {property_id}",
        description=description,
        capacity=capacity,
        nightly_rate_cents=nightly_rate_cents,
        currency="USD",
    )
    await dynamodb.put_item(
        TableName=table,
        Item={
            **keys.property_key(property_id),
            "property_id": {"S": prop.property_id},
            "name": {"S": prop.name},
            "description": {"S": prop.description},
            "capacity": {"N": str(prop.capacity)},
            "nightly_rate_cents": {"N": str(prop.nightly_rate_cents)},
            "currency": {"S": prop.currency},
        },
    )
    return prop


async def partition_items(dynamodb: DynamoDBClient, table: str, pk: str) -> list[dict[str, Any]]:
    """Every item of one partition (consistent read), in sort key order."""
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
        page = await dynamodb.query(
            TableName=table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
            **extra,
        )
        items.extend(page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


async def night_locks(dynamodb: DynamoDBClient, table: str, property_id: str) -> dict[datetime.date, str]:
    """The property's lock items as {night: reservation id}."""
    items = await partition_items(dynamodb, table, keys.night_partition(property_id))
    return {datetime.date.fromisoformat(item["night"]["S"]): item["reservation_id"]["S"] for item in items}


async def guest_items(dynamodb: DynamoDBClient, table: str, sub: str) -> list[dict[str, Any]]:
    """Everything stored under a guest's partition (reservations and request ids)."""
    return await partition_items(dynamodb, table, keys.guest_partition(sub))
