"""Guest profiles in DynamoDB, keyed by the Cognito subject, with unique guest ids.

A new profile and the item reserving its guest id are written in one transaction, each only if absent: two
replicas creating the same person's profile end with one, and two people never share a guest id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.adapters._upstream import translated
from gateway.adapters.dynamodb import keys
from gateway.domain import GuestId, GuestProfile, Sub, new_guest_id
from gateway.errors import UpstreamUnavailableError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

SERVICE = "dynamodb"
# Guest ids have 30 random bits per year; a few collisions in a row would mean a broken generator.
MAX_ID_TRIES = 5


class DynamoGuestStore:
    """`GuestStore` on the single table (see `keys` for the item layout)."""

    def __init__(
        self, client: DynamoDBClient, table_name: str, *, new_id: Callable[[datetime], GuestId] = new_guest_id
    ) -> None:
        self._client = client
        self._table = table_name
        self._new_id = new_id

    async def get_or_create(self, sub: Sub, email: str, name: str, now: datetime) -> GuestProfile:
        """Read the profile; create it when absent (conditionally, with a freshly reserved guest id)."""
        existing = await self._get(sub)
        if existing is not None:
            return existing
        for _ in range(MAX_ID_TRIES):
            guest_id = self._new_id(now)
            profile = GuestProfile(guest_id=guest_id, sub=sub, email=email, name=name, created_at=now)
            with translated(SERVICE, "TransactWriteItems"):
                try:
                    await self._client.transact_write_items(
                        TransactItems=[
                            {
                                "Put": {
                                    "TableName": self._table,
                                    "Item": _item(profile),
                                    "ConditionExpression": f"attribute_not_exists({keys.PK})",
                                }
                            },
                            {
                                "Put": {
                                    "TableName": self._table,
                                    "Item": {**keys.guest_id_key(guest_id), "sub": {"S": sub}},
                                    "ConditionExpression": f"attribute_not_exists({keys.PK})",
                                }
                            },
                        ]
                    )
                except self._client.exceptions.TransactionCanceledException as exc:
                    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                    if reasons and reasons[0] == "ConditionalCheckFailed":
                        # Created concurrently by another call: theirs is the profile.
                        concurrent = await self._get(sub)
                        if concurrent is not None:
                            return concurrent
                    continue  # the guest id is taken: draw another
            log.info("created guest profile", extra={"guest_id": guest_id})
            return profile
        raise UpstreamUnavailableError("the guest profile could not be created; retry shortly", retry_after_seconds=1)

    async def get(self, sub: Sub) -> GuestProfile | None:
        """The profile of `sub`, or None."""
        return await self._get(sub)

    async def _get(self, sub: Sub) -> GuestProfile | None:
        with translated(SERVICE, "GetItem"):
            found = await self._client.get_item(TableName=self._table, Key=keys.guest_key(sub), ConsistentRead=True)
        item = found.get("Item")
        if item is None:
            return None
        return GuestProfile(
            guest_id=GuestId(item["guest_id"]["S"]),
            sub=Sub(item["sub"]["S"]),
            email=item["email"]["S"],
            name=item.get("name", {}).get("S", ""),
            created_at=datetime.fromisoformat(item["created_at"]["S"]),
        )


def _item(profile: GuestProfile) -> dict[str, Any]:
    return {
        **keys.guest_key(profile.sub),
        "guest_id": {"S": profile.guest_id},
        "sub": {"S": profile.sub},
        "email": {"S": profile.email},
        "name": {"S": profile.name},
        "created_at": {"S": profile.created_at.isoformat()},
    }
