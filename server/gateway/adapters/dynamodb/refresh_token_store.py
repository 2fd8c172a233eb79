"""Refresh tokens the gateway delivered, recognised by a keyed digest: whose sign-in each one belongs to.

The item is keyed by HMAC-SHA-256 of the token under a 256-bit key the replicas share; the token itself is never
stored. The key is created once, by whichever replica needs it first (a conditional put), and kept in the table:
a refresh token is long random ciphertext, so the digest would not reveal it even to someone who reads both
key and digest; the key makes digests useless outside this deployment and cheap to invalidate (delete the key
item, and every delivered token becomes "not the caller's", which only makes SignOut refuse more).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
from typing import TYPE_CHECKING, Any

from gateway.adapters._upstream import translated
from gateway.adapters.dynamodb import keys
from gateway.ports import RefreshTokenOwner

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SERVICE = "dynamodb"
DIGEST_KEY_NAME = "refresh-token-digest"


class DynamoRefreshTokenStore:
    """`RefreshTokenStore` on the single table (see `keys` for the item layout)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name
        self._key: bytes | None = None
        self._key_lock = asyncio.Lock()

    async def remember(self, refresh_token: str, owner: RefreshTokenOwner, expires_at: float) -> None:
        """Write the token's digest item with its owner; DynamoDB's TTL removes it when the token has expired."""
        item: dict[str, Any] = {
            **keys.refresh_token_key(await self._digest(refresh_token)),
            "sub": {"S": owner.sub},
            "token_family": {"S": owner.token_family},
            keys.TTL_ATTRIBUTE: {"N": str(math.ceil(expires_at))},
        }
        with translated(SERVICE, "PutItem"):
            await self._client.put_item(TableName=self._table, Item=item)

    async def owner_of(self, refresh_token: str) -> RefreshTokenOwner | None:
        """Read the token's digest item (consistently); None when there is none or it has expired."""
        key = keys.refresh_token_key(await self._digest(refresh_token))
        with translated(SERVICE, "GetItem"):
            found = await self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)
        item = found.get("Item")
        if item is None:
            return None
        # DynamoDB deletes expired items some time after their TTL; until then they must not count.
        if float(item[keys.TTL_ATTRIBUTE]["N"]) <= time.time():
            return None
        return RefreshTokenOwner(sub=item["sub"]["S"], token_family=item["token_family"]["S"])

    async def _digest(self, refresh_token: str) -> str:
        key = await self._digest_key()
        return hmac.new(key, refresh_token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    async def _digest_key(self) -> bytes:
        if self._key is not None:
            return self._key
        async with self._key_lock:
            if self._key is None:
                self._key = await self._load_or_create_key()
        return self._key

    async def _load_or_create_key(self) -> bytes:
        key = keys.secret_key(DIGEST_KEY_NAME)
        with translated(SERVICE, "GetItem"):
            found = await self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)
        if "Item" in found:
            return bytes(found["Item"]["key"]["B"])
        fresh = secrets.token_bytes(32)
        with translated(SERVICE, "PutItem"):
            try:
                await self._client.put_item(
                    TableName=self._table,
                    Item={**key, "key": {"B": fresh}},
                    ConditionExpression=f"attribute_not_exists({keys.PK})",
                )
            except self._client.exceptions.ConditionalCheckFailedException:
                # Another replica created it a moment ago: theirs is the key.
                with translated(SERVICE, "GetItem"):
                    found = await self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)
                return bytes(found["Item"]["key"]["B"])
        return fresh
