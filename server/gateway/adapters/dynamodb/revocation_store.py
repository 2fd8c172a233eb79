"""Signed-out token families in the single table, queryable by time so replicas can poll what is new."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway.adapters._upstream import translated
from gateway.adapters.dynamodb.keys import (
    PK,
    REVOCATION_PARTITION,
    SK,
    TTL_ATTRIBUTE,
    revocation_key,
    revocation_sort_floor,
)
from gateway.ports import Revocation

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SERVICE = "dynamodb"


class DynamoRevocationStore:
    """Implements the `RevocationStore` port."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    async def add(self, revocation: Revocation) -> None:
        """Record a revocation; the item expires (TTL) when the family's tokens would have."""
        item: dict[str, Any] = {
            **revocation_key(revocation.token_family, revocation.revoked_at),
            "token_family": {"S": revocation.token_family},
            "revoked_at": {"N": repr(revocation.revoked_at)},
            TTL_ATTRIBUTE: {"N": str(int(revocation.expires_at) + 1)},
        }
        with translated(SERVICE, "PutItem"):
            await self._dynamodb.put_item(TableName=self._table, Item=item)

    async def revoked_since(self, since: float) -> list[Revocation]:
        """Every unexpired revocation recorded at or after `since`."""
        now = time.time()
        found: list[Revocation] = []
        start_key: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": f"{PK} = :pk AND {SK} >= :floor",
                "ExpressionAttributeValues": {
                    ":pk": {"S": REVOCATION_PARTITION},
                    ":floor": {"S": revocation_sort_floor(since)},
                },
            }
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            with translated(SERVICE, "Query"):
                page = await self._dynamodb.query(**kwargs)
            for item in page.get("Items", []):
                expires_at = float(item[TTL_ATTRIBUTE]["N"])
                if expires_at > now:
                    found.append(
                        Revocation(
                            token_family=item["token_family"]["S"],
                            revoked_at=float(item["revoked_at"]["N"]),
                            expires_at=expires_at,
                        )
                    )
            start_key = page.get("LastEvaluatedKey")
            if not start_key:
                return found
